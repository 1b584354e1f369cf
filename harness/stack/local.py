"""The local backend: Redis, Postgres, the mock LLM, a Redis fault relay and N LiteLLM proxies as processes.

Everything runs on free loopback ports. Each child (initdb too) is in its own process group and recorded,
with its create time, in `.state/<name>/state.json` together with the stack's facts (ports, versions,
timings, endpoints without the secret); the master key is in `secrets.json` (0600). `down()` stops every
recorded group (and whatever the run tracked, e.g. Locust), waits until they are gone and deletes the state
file and the secrets; `forget()` then removes the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from rich.console import Console

from harness.errors import HarnessError, StackError
from harness.litellm import env as litellm_env
from harness.litellm.health import readiness
from harness.litellm.proxy_config import (
    DEFAULT_BUDGET_ID,
    dump_config,
    generate_master_key,
    proxy_cache_is_redis,
    render_proxy_config,
)
from harness.stack.base import (
    Endpoints,
    StackFacts,
    StackSpec,
    master_key_file,
    remove_target_secrets,
    replica_name,
    state_dir_of,
)
from harness.stack.postgres import PostgresServer, pg_bindir, run_as
from harness.stack.redis_relay import relay_command
from harness.stack.redis_server import RedisServer, redis_binary
from harness.util import ports
from harness.util.fsutil import write_secret
from harness.util.procs import ProcessGroup, http_ok, record_processes, wait_until

SECRETS_FILE = "secrets.json"
PROXY_START_DEADLINE_S = float(os.environ.get("HARNESS_PROXY_START_DEADLINE_S", "300"))
# The servers; everything else recorded (replicas, tracked processes such as Locust) is their client and is
# stopped first, so its shutdown does not log errors about servers that went away before it.
SERVERS = ("postgres", "redis", "redis-relay", "mock")


class LocalStack:
    """A stack of local processes, addressed by name (its state folder is `.state/<name>/`)."""

    backend = "local"

    def __init__(self, name: str = "default", state_dir: Path | None = None, *,
                 http: httpx.Client | None = None) -> None:
        self.name = name
        self._http_client = http
        self.state_dir = state_dir or state_dir_of(name)
        self._group = ProcessGroup(self.state_dir)     # reads the state file; writes nothing yet
        self._endpoints: Endpoints | None = None
        self._console: Console | None = None
        extra = self._group.extra
        self.log_dir = Path(str(extra["log_dir"])) if "log_dir" in extra else self.state_dir / "logs"
        if "endpoints" in extra:
            self._endpoints = Endpoints(**dict(extra["endpoints"]), master_key=self._read_master_key())

    # -- helpers ------------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text, highlight=False)

    def _read_master_key(self) -> str:
        path = self.state_dir / SECRETS_FILE
        if not path.exists():
            return ""
        return str(json.loads(path.read_text())["master_key"])

    def _write_master_key(self, key: str) -> None:
        path = self.state_dir / SECRETS_FILE
        write_secret(path, json.dumps({"master_key": key}))

    def preflight(self, spec: StackSpec) -> None:
        redis_binary()
        pg_bindir()
        run_as()

    def is_running(self) -> bool:
        return any(self._group.alive(name) for name in self._group.records)

    def endpoints(self) -> Endpoints | None:
        return self._endpoints if self.is_running() else None

    # -- up -----------------------------------------------------------------------------------------
    def up(self, spec: StackSpec, console: Console | None = None) -> Endpoints:
        self._console = console
        if self.is_running():
            raise HarnessError(f"stack '{self.name}' is already running",
                               f"run `harness down --name {self.name}` first, or use --reuse")
        self._group.stop_all()  # stale records of a crashed run (verified before any signal)
        env = litellm_env.ensure(spec.candidate or spec.version, console=console)
        started = time.monotonic()
        try:
            endpoints = self._up(spec, env, started)
        except BaseException:
            if self._group.records:
                self._say("[yellow]start-up failed: stopping everything that was started[/]")
            self.down()
            raise
        return endpoints

    def _up(self, spec: StackSpec, env: litellm_env.LiteLLMEnv, started: float) -> Endpoints:
        n = spec.replicas
        port_list = ports.allocate_ports(5 + n, spec.base_port)
        pg_port, redis_port, relay_port, relay_ctl_port, mock_port = port_list[:5]
        proxy_ports = port_list[5:]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o711)   # secrets inside; PostgreSQL (run as its own user) must reach data/
        self.log_dir = spec.run_dir or (self.state_dir / "logs")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        data_dir = self.state_dir / "data"
        if data_dir.exists():
            shutil.rmtree(data_dir)
        master_key = generate_master_key()
        self._write_master_key(master_key)
        timings: dict[str, float] = {}

        # Postgres + the version's migrations
        self._say(f"postgres on 127.0.0.1:{pg_port} …")
        pg = PostgresServer(data_dir / "postgres", pg_port)
        t0 = time.monotonic()
        pg.start(self._group, self.log_dir)
        pg.wait_ready()
        litellm_env.apply_migrations(env, pg.dsn)
        timings["postgres_s"] = time.monotonic() - t0

        # Redis and the fault relay in front of it (the proxies talk to the relay)
        self._say(f"redis on 127.0.0.1:{redis_port} (proxies via relay :{relay_port}) …")
        redis_srv = RedisServer(data_dir / "redis", redis_port, self.log_dir / "redis.log")
        timings["redis_s"] = redis_srv.start(self._group)
        self._group.start("redis-relay", relay_command(relay_port, redis_port, relay_ctl_port),
                         log=self.log_dir / "redis-relay.log", port=relay_port)
        relay_url = f"http://127.0.0.1:{relay_ctl_port}"
        wait_until(lambda: http_ok(f"{relay_url}/health"), deadline_s=20, what="redis relay",
                   still_alive=lambda: self._group.alive("redis-relay"),
                   on_fail=lambda: self._group.log_tail("redis-relay"))

        # the mock LLM, its ledger in the run folder
        from harness.mockllm import mock_command

        self._say(f"mock LLM on 127.0.0.1:{mock_port} …")
        mock_url = f"http://127.0.0.1:{mock_port}"
        self._group.start("mock", mock_command(sys.executable, mock_port, self.log_dir / "ledger.csv",
                                              self.log_dir / "mock-events.csv", spec.seed, spec.mock_config),
                         log=self.log_dir / "mock.log", port=mock_port)
        wait_until(lambda: http_ok(f"{mock_url}/health"), deadline_s=30, what="mock LLM",
                   still_alive=lambda: self._group.alive("mock"), on_fail=lambda: self._group.log_tail("mock"))

        # the proxy config (no secrets in it) and N replicas
        config = render_proxy_config(spec, mock_api_base=f"{mock_url}/v1", redis_host="127.0.0.1",
                                     redis_port=relay_port)
        config_path = self.log_dir / "proxy-config.yaml"
        config_path.write_text(dump_config(config))
        proxy_env = env.proxy_env(pg.dsn)
        proxy_env["LITELLM_MASTER_KEY"] = master_key
        self._group.extra.update({
            "version": spec.version, "litellm_env": env.version, "log_dir": str(self.log_dir),
            "config_path": str(config_path),
            "proxy_ports": proxy_ports, "redis_port": redis_port, "redis_data": str(data_dir / "redis"),
            "pg_port": pg_port, "pg_data": str(data_dir / "postgres"), "spec": _jsonable(spec),
        })
        self._group.save()
        self._say(f"{n} LiteLLM {spec.version} replica(s) on ports {', '.join(map(str, proxy_ports))} …")
        t0 = time.monotonic()
        for i, port in enumerate(proxy_ports):
            self._start_proxy(i, port, env, config_path, proxy_env, spec.proxy_host)
        proxy_urls = [f"http://{spec.proxy_host}:{p}" for p in proxy_ports]
        self._wait_proxies(proxy_urls, master_key, expect_redis=proxy_cache_is_redis(config))
        timings["proxies_s"] = time.monotonic() - t0

        endpoints = Endpoints(
            proxy_urls=proxy_urls, redis_url=f"redis://127.0.0.1:{relay_port}/0", redis_direct_url=redis_srv.url,
            postgres_dsn=pg.dsn, mock_url=mock_url, master_key=master_key, version=spec.version,
            build=env.version, backend=self.backend, redis_fault_url=relay_url,
            budget_id=DEFAULT_BUDGET_ID if spec.default_budget is not None else None,
            redis_namespace=spec.litellm_settings.get("namespace"), counters=spec.counters)
        if spec.default_budget is not None:
            create_default_budget(endpoints, spec.default_budget)
        timings["total_s"] = time.monotonic() - started
        self._group.extra.update({"endpoints": endpoints.public(), "timings": timings,
                                 "redis_version": redis_srv.version(), "postgres_version": postgres_version(pg.dsn)})
        self._group.save()
        self._endpoints = endpoints
        self._say(f"[green]stack '{self.name}' up in {timings['total_s']:.1f} s[/]")
        return endpoints

    def _start_proxy(self, index: int, port: int, env: litellm_env.LiteLLMEnv, config_path: Path,
                     proxy_env: dict[str, str], host: str = "127.0.0.1") -> None:
        cmd = [str(env.litellm_bin), "--config", str(config_path), "--host", host, "--port", str(port),
               "--num_workers", "1", *shlex.split(os.environ.get("HARNESS_PROXY_EXTRA_ARGS", ""))]
        self._group.start(replica_name(index), cmd, log=self.log_dir / f"{replica_name(index)}.log", env=proxy_env,
                         port=port)

    @contextlib.contextmanager
    def _http(self) -> Iterator[httpx.Client]:
        """The client the readiness polls use (injected in tests), else a fresh one with a 2 s timeout."""
        if self._http_client is not None:
            yield self._http_client
        else:
            with httpx.Client(timeout=2) as client:
                yield client

    def _wait_proxies(self, urls: list[str], master_key: str, expect_redis: bool) -> None:
        """Wait until every replica is ready (`harness.litellm.health.readiness`: its database connected and,
        when the config has one, its Redis cache), in THIS thread (not a thread pool: a SIGTERM/Ctrl-C raised
        here must stop the start-up at once, and a pool's shutdown would first wait for its workers' polls)."""
        pending = dict(enumerate(urls))
        last: dict[int, str] = {}

        with self._http() as client:
            def all_ready() -> bool:
                for index, url in list(pending.items()):
                    state = readiness(client.get, url, master_key=master_key, expect_redis=expect_redis)
                    if state.ready:
                        del pending[index]
                    elif not self._group.alive(replica_name(index)):
                        name = replica_name(index)
                        raise StackError(f"replica {index} failed to start: LiteLLM replica {index} ({url}) exited "
                                         f"before it became ready\n--- last lines of "
                                         f"{self.log_dir / (name + '.log')} ---\n{self._group.log_tail(name, 25)}",
                                         "see its log above")
                    else:
                        last[index] = state.detail
                return not pending

            def still_starting() -> str:
                first = replica_name(min(pending))
                waiting = ", ".join(f"{i} ({last.get(i, 'not polled')})" for i in sorted(pending))
                return (f"not ready yet: replica(s) {waiting}\n--- last lines of "
                        f"{self.log_dir / (first + '.log')} ---\n{self._group.log_tail(first, 25)}")

            wait_until(all_ready, deadline_s=PROXY_START_DEADLINE_S, interval=0.5, what="LiteLLM replicas",
                       on_fail=still_starting)

    def _wait_proxy(self, index: int, url: str, master_key: str, expect_redis: bool) -> float:
        name = replica_name(index)
        last = ["not polled"]

        with self._http() as client:
            def ready() -> bool:
                state = readiness(client.get, url, master_key=master_key, expect_redis=expect_redis)
                last[0] = state.detail
                return state.ready

            try:
                return wait_until(ready, deadline_s=PROXY_START_DEADLINE_S,
                                  what=f"LiteLLM replica {index} ({url})", interval=0.5,
                                  still_alive=lambda: self._group.alive(name),
                                  on_fail=lambda: f"not ready: {last[0]}\n--- last lines of "
                                                  f"{self.log_dir / (name + '.log')} ---\n"
                                                  + self._group.log_tail(name, 25))
            except StackError as exc:
                raise StackError(f"replica {index} failed to start: {exc.problem}", exc.fix) from None

    # -- operations used by the nemesis -------------------------------------------------------------
    def _require_up(self) -> Endpoints:
        if self._endpoints is None:
            raise HarnessError(f"stack '{self.name}' is not running", "start it with `harness up`")
        return self._endpoints

    def kill_replica(self, index: int) -> None:
        self._group.kill(replica_name(index))

    def restart_replica(self, index: int) -> float:
        endpoints = self._require_up()
        extra = self._group.extra
        env = litellm_env.reopen(str(extra.get("litellm_env") or extra["version"]))
        proxy_env = env.proxy_env(endpoints.postgres_dsn)
        proxy_env["LITELLM_MASTER_KEY"] = endpoints.master_key
        name = replica_name(index)
        if self._group.alive(name):
            self._group.kill(name)
        self._group.records.pop(name, None)
        port = list(extra["proxy_ports"])[index]
        t0 = time.monotonic()
        host = str((extra.get("spec") or {}).get("proxy_host") or "127.0.0.1")
        self._start_proxy(index, int(port), env, Path(str(extra["config_path"])), proxy_env, host)
        config = yaml.safe_load(Path(str(extra["config_path"])).read_text())
        self._wait_proxy(index, endpoints.proxy_urls[index], endpoints.master_key,
                         expect_redis=proxy_cache_is_redis(config))
        return time.monotonic() - t0

    def redis_fault(self, kind: str, **params: Any) -> None:
        from harness.stack.redis_relay import RelayControl

        endpoints = self._require_up()
        assert endpoints.redis_fault_url is not None
        RelayControl(endpoints.redis_fault_url).set_fault(kind, **params)

    def _redis(self) -> RedisServer:
        extra = self._group.extra
        return RedisServer(Path(str(extra["redis_data"])), int(extra["redis_port"]), self.log_dir / "redis.log")

    def restart_redis(self, flush: bool = False) -> float:
        self._require_up()
        return self._redis().restart(self._group, flush=flush)

    def snapshot_redis(self) -> None:
        self._require_up()
        self._redis().snapshot()

    def flush_redis(self) -> None:
        self._require_up()
        self._redis().flush()

    def postgres_admin_dsn(self) -> str:
        return self._require_up().postgres_dsn      # the stack's own server, its superuser

    def logs(self) -> dict[str, Path]:
        return {name: Path(rec.log) for name, rec in self._group.records.items() if rec.log}

    # -- facts, tracking, status --------------------------------------------------------------------
    def facts(self) -> StackFacts:
        extra = self._group.extra
        return StackFacts(redis_version=extra.get("redis_version"), postgres_version=extra.get("postgres_version"),
                          timings=dict(extra.get("timings") or {}), processes=self._processes())

    def _processes(self) -> list[dict[str, Any]]:
        """Pid, group, port, RSS (with descendants) and liveness of each recorded child."""
        out = []
        for rec in self._group.records.values():
            procs = record_processes(rec)
            rss = 0
            for proc in procs:
                try:
                    rss += proc.memory_info().rss
                except psutil.Error:
                    pass
            out.append({"name": rec.name, "pid": rec.pid, "pgid": rec.pgid, "port": rec.port,
                        "rss_mb": round(rss / 2**20, 1), "alive": self._group.alive(rec.name)})
        return out

    def track(self, name: str, pid: int) -> None:
        """Record a process the run started (Locust) in this stack's state file: `down` stops it first."""
        if name in SERVERS or name.startswith("proxy-"):
            raise HarnessError(f"cannot track '{name}': the stack's own process has that name", "use another name")
        self._group.adopt(name, pid)

    def status(self) -> str:
        if not self._group.records:
            return f"stack '{self.name}' (local): not running"
        lines = [f"stack '{self.name}' (local):"]
        for proc in self._processes():
            lines.append(f"  {proc['name']:<12} pid {proc['pid']:<8} port {proc['port'] or '-':<6} "
                         f"{proc['rss_mb']:>7} MB  {'up' if proc['alive'] else 'DEAD'}")
        if self._endpoints is not None:
            lines.append(self._endpoints.describe())
        return "\n".join(lines)

    # -- down ---------------------------------------------------------------------------------------
    def down(self) -> int:
        running = [n for n in self._group.records if self._group.alive(n)]   # stale records count for nothing
        clients = [n for n in self._group.records if n not in SERVERS]
        self._group.stop_all(only=clients)
        self._group.stop_all()
        leftovers = self._group.leftovers()
        remove_target_secrets(self.name)
        for secret in (self.state_dir / SECRETS_FILE, master_key_file(self.name)):
            secret.unlink(missing_ok=True)
        data_dir = self.state_dir / "data"
        if data_dir.exists():
            shutil.rmtree(data_dir, ignore_errors=True)
        self._endpoints = None
        self._group.extra = {}
        self._group.save()      # nothing left: the state file goes; records of leftovers stay
        if leftovers:
            raise StackError(f"stack '{self.name}': still running after SIGKILL: {', '.join(leftovers)}",
                             f"see `harness status --name {self.name}` and kill them by hand")
        return len(running)

    def forget(self) -> None:
        """Remove the state folder (logs included) of a stack that is down; nothing when processes remain."""
        if not self._group.records and self.state_dir.exists():
            shutil.rmtree(self.state_dir, ignore_errors=True)


def create_default_budget(endpoints: Endpoints, max_budget: float, budget_id: str = DEFAULT_BUDGET_ID) -> None:
    """POST /budget/new (the default end-user budget `max_end_user_budget_id` points at)."""
    headers = {"Authorization": f"Bearer {endpoints.master_key}"}
    url = f"{endpoints.proxy_urls[0]}/budget/new"
    resp = httpx.post(url, json={"budget_id": budget_id, "max_budget": max_budget}, headers=headers, timeout=30)
    if resp.status_code >= 300 and "already exists" not in resp.text and "Unique constraint" not in resp.text:
        raise StackError(f"creating the default end-user budget failed: HTTP {resp.status_code} {resp.text[:300]}",
                         "see proxy-0.log")


def postgres_version(dsn: str) -> str:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"
    except psycopg.Error:
        return "?"


def _jsonable(spec: StackSpec) -> dict[str, Any]:
    data = dict(spec.__dict__)
    data["run_dir"] = str(spec.run_dir) if spec.run_dir else None
    data["candidate"] = spec.candidate.public() if spec.candidate else None
    return data


__all__ = ["LocalStack", "StackSpec", "create_default_budget"]
