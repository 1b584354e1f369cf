"""The local backend: Redis, Postgres, the mock LLM, a Redis fault relay and N LiteLLM proxies as processes.

Everything runs on free loopback ports. Each child is in its own process group and recorded in
`.state/<name>/state.json`, so `harness down` (or the `finally` of `up`) stops everything.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from harness.errors import HarnessError, StackError
from harness.litellm import env as litellm_env
from harness.litellm.proxy_config import DEFAULT_BUDGET_ID, dump_config, generate_master_key, render_proxy_config
from harness.paths import state_root
from harness.stack.base import Endpoints, StackSpec, replica_name
from harness.stack.postgres import PostgresServer
from harness.stack.redis_relay import relay_command
from harness.stack.redis_server import RedisServer
from harness.util import ports
from harness.util.fsutil import write_secret
from harness.util.procs import ProcessGroup, http_ok, tail, wait_until

SECRETS_FILE = "secrets.json"
PROXY_START_DEADLINE_S = float(os.environ.get("HARNESS_PROXY_START_DEADLINE_S", "300"))


class LocalStack:
    """A stack of local processes, addressed by name (its state folder is `.state/<name>/`)."""

    backend = "local"

    def __init__(self, name: str = "default", state_dir: Path | None = None) -> None:
        self.name = name
        self.state_dir = state_dir or state_root() / name
        self.group = ProcessGroup(self.state_dir)
        self.endpoints: Endpoints | None = None
        self._console: Console | None = None
        extra = self.group.extra
        self.log_dir = Path(str(extra["log_dir"])) if "log_dir" in extra else self.state_dir / "logs"
        if "endpoints" in extra:
            self.endpoints = Endpoints(**dict(extra["endpoints"]), master_key=self._read_master_key())  # type: ignore[arg-type]

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

    def is_running(self) -> bool:
        return any(self.group.alive(name) for name in self.group.records)

    # -- up -----------------------------------------------------------------------------------------
    def up(self, spec: StackSpec, console: Console | None = None) -> Endpoints:
        self._console = console
        if self.is_running():
            raise HarnessError(f"stack '{self.name}' is already running",
                               f"run `harness down --name {self.name}` first, or use --reuse")
        self.group.stop_all()  # forget stale records of a crashed run
        env = litellm_env.ensure(spec.version, console=console)
        started = time.monotonic()
        try:
            endpoints = self._up(spec, env, started)
        except BaseException:
            if self.group.records:
                self._say("[yellow]start-up failed: stopping everything that was started[/]")
            self.down()
            raise
        return endpoints

    def _up(self, spec: StackSpec, env: litellm_env.LiteLLMEnv, started: float) -> Endpoints:
        n = spec.replicas
        port_list = ports.allocate_ports(5 + n, spec.base_port)
        pg_port, redis_port, relay_port, relay_ctl_port, mock_port = port_list[:5]
        proxy_ports = port_list[5:]
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
        pg.start(self.group, self.log_dir)
        pg.wait_ready()
        litellm_env.apply_migrations(env, pg.dsn)
        timings["postgres_s"] = time.monotonic() - t0

        # Redis and the fault relay in front of it (the proxies talk to the relay)
        self._say(f"redis on 127.0.0.1:{redis_port} (proxies via relay :{relay_port}) …")
        redis_srv = RedisServer(data_dir / "redis", redis_port, self.log_dir / "redis.log")
        timings["redis_s"] = redis_srv.start(self.group)
        self.group.start("redis-relay", relay_command(relay_port, redis_port, relay_ctl_port),
                         log=self.log_dir / "redis-relay.log", port=relay_port)
        relay_url = f"http://127.0.0.1:{relay_ctl_port}"
        wait_until(lambda: http_ok(f"{relay_url}/health"), deadline_s=20, what="redis relay",
                   still_alive=lambda: self.group.alive("redis-relay"),
                   on_fail=lambda: self.group.log_tail("redis-relay"))

        # the mock LLM, its ledger in the run folder
        from harness.mockllm import mock_command

        self._say(f"mock LLM on 127.0.0.1:{mock_port} …")
        mock_url = f"http://127.0.0.1:{mock_port}"
        self.group.start("mock", mock_command(sys.executable, mock_port, self.log_dir / "ledger.csv",
                                              self.log_dir / "mock-events.csv", spec.seed, spec.mock_config),
                         log=self.log_dir / "mock.log", port=mock_port)
        wait_until(lambda: http_ok(f"{mock_url}/health"), deadline_s=30, what="mock LLM",
                   still_alive=lambda: self.group.alive("mock"), on_fail=lambda: self.group.log_tail("mock"))

        # the proxy config (no secrets in it) and N replicas
        config = render_proxy_config(spec, mock_api_base=f"{mock_url}/v1", redis_host="127.0.0.1",
                                     redis_port=relay_port)
        config_path = self.log_dir / "proxy-config.yaml"
        config_path.write_text(dump_config(config))
        proxy_env = env.proxy_env(pg.dsn)
        proxy_env["LITELLM_MASTER_KEY"] = master_key
        self.group.extra.update({
            "version": spec.version, "log_dir": str(self.log_dir), "config_path": str(config_path),
            "proxy_ports": proxy_ports, "redis_port": redis_port, "redis_data": str(data_dir / "redis"),
            "pg_port": pg_port, "pg_data": str(data_dir / "postgres"), "spec": _jsonable(spec),
        })
        self.group.save()
        self._say(f"{n} LiteLLM {spec.version} replica(s) on ports {', '.join(map(str, proxy_ports))} …")
        t0 = time.monotonic()
        for i, port in enumerate(proxy_ports):
            self._start_proxy(i, port, env, config_path, proxy_env)
        proxy_urls = [f"http://127.0.0.1:{p}" for p in proxy_ports]
        with ThreadPoolExecutor(max_workers=n) as pool:
            list(pool.map(lambda i: self._wait_proxy(i, proxy_urls[i]), range(n)))
        timings["proxies_s"] = time.monotonic() - t0

        endpoints = Endpoints(
            proxy_urls=proxy_urls, redis_url=f"redis://127.0.0.1:{relay_port}/0", redis_direct_url=redis_srv.url,
            postgres_dsn=pg.dsn, mock_url=mock_url, master_key=master_key, version=spec.version,
            backend=self.backend, redis_fault_url=relay_url,
            budget_id=DEFAULT_BUDGET_ID if spec.default_budget is not None else None,
            redis_namespace=spec.litellm_settings.get("namespace"))
        if spec.default_budget is not None:
            create_default_budget(endpoints, spec.default_budget)
        timings["total_s"] = time.monotonic() - started
        self.group.extra.update({"endpoints": endpoints.public(), "timings": timings,
                                 "redis_version": redis_srv.version(), "postgres_version": postgres_version(pg.dsn)})
        self.group.save()
        self.endpoints = endpoints
        self._say(f"[green]stack '{self.name}' up in {timings['total_s']:.1f} s[/]")
        return endpoints

    def _start_proxy(self, index: int, port: int, env: litellm_env.LiteLLMEnv, config_path: Path,
                     proxy_env: dict[str, str]) -> None:
        cmd = [str(env.litellm_bin), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port),
               "--num_workers", "1", *shlex.split(os.environ.get("HARNESS_PROXY_EXTRA_ARGS", ""))]
        self.group.start(replica_name(index), cmd, log=self.log_dir / f"{replica_name(index)}.log", env=proxy_env,
                         port=port)

    def _wait_proxy(self, index: int, url: str) -> float:
        name = replica_name(index)
        try:
            return wait_until(lambda: http_ok(f"{url}/health/liveliness", timeout=2), deadline_s=PROXY_START_DEADLINE_S,
                              what=f"LiteLLM replica {index} ({url})", interval=0.5,
                              still_alive=lambda: self.group.alive(name),
                              on_fail=lambda: f"--- last lines of {self.log_dir / (name + '.log')} ---\n"
                                              + self.group.log_tail(name, 25))
        except StackError as exc:
            raise StackError(f"replica {index} failed to start: {exc.problem}", exc.fix) from None

    # -- operations used by the nemesis -------------------------------------------------------------
    def _require_up(self) -> Endpoints:
        if self.endpoints is None:
            raise HarnessError(f"stack '{self.name}' is not running", "start it with `harness up`")
        return self.endpoints

    def kill_replica(self, index: int) -> None:
        self.group.kill(replica_name(index))

    def restart_replica(self, index: int) -> float:
        endpoints = self._require_up()
        extra = self.group.extra
        env = litellm_env.ensure(str(extra["version"]))
        proxy_env = env.proxy_env(endpoints.postgres_dsn)
        proxy_env["LITELLM_MASTER_KEY"] = endpoints.master_key
        name = replica_name(index)
        if self.group.alive(name):
            self.group.kill(name)
        self.group.records.pop(name, None)
        port = list(extra["proxy_ports"])[index]  # type: ignore[call-overload]
        t0 = time.monotonic()
        self._start_proxy(index, int(port), env, Path(str(extra["config_path"])), proxy_env)
        self._wait_proxy(index, endpoints.proxy_urls[index])
        return time.monotonic() - t0

    def redis_fault(self, kind: str, **params: Any) -> None:
        from harness.stack.redis_relay import RelayControl

        endpoints = self._require_up()
        assert endpoints.redis_fault_url is not None
        RelayControl(endpoints.redis_fault_url).set_fault(kind, **params)

    def _redis(self) -> RedisServer:
        extra = self.group.extra
        return RedisServer(Path(str(extra["redis_data"])), int(extra["redis_port"]),  # type: ignore[call-overload]
                           self.log_dir / "redis.log")

    def restart_redis(self, flush: bool = False) -> float:
        self._require_up()
        return self._redis().restart(self.group, flush=flush)

    def snapshot_redis(self) -> None:
        self._require_up()
        self._redis().snapshot()

    def flush_redis(self) -> None:
        self._require_up()
        self._redis().flush()

    def logs(self) -> dict[str, Path]:
        return {name: Path(rec.log) for name, rec in self.group.records.items()}

    def processes(self) -> list[dict[str, Any]]:
        """Pid, port and RSS of each child (for meta.json and figures)."""
        import psutil

        out = []
        for rec in self.group.records.values():
            rss = 0
            try:
                parent = psutil.Process(rec.pid)
                rss = parent.memory_info().rss + sum(c.memory_info().rss for c in parent.children(recursive=True))
            except psutil.Error:
                pass
            out.append({"name": rec.name, "pid": rec.pid, "port": rec.port, "rss_mb": round(rss / 2**20, 1)})
        return out

    # -- down ---------------------------------------------------------------------------------------
    def down(self) -> int:
        # clients of Redis and Postgres first (Locust, the proxies), so their shutdown does not log errors
        # of servers that went away before them; then everything else
        first = [n for n in list(self.group.records) if n.startswith(("proxy-", "locust"))]
        names = self.group.stop_all(only=first) + self.group.stop_all()
        leftovers = [rec for rec in self.group.records.values()]
        (self.state_dir / SECRETS_FILE).unlink(missing_ok=True)
        data_dir = self.state_dir / "data"
        if data_dir.exists():
            shutil.rmtree(data_dir, ignore_errors=True)
        self.group.extra = {}
        self.group.save()
        self.endpoints = None
        if leftovers:
            raise StackError(f"could not stop: {', '.join(r.name for r in leftovers)}", "kill them by hand")
        return len(names)


    def forget(self) -> None:
        """Remove the state folder of a stack that is down (ephemeral stacks of `harness run`)."""
        if not self.group.records and self.state_dir.exists():
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
    return data


# -- CLI helpers --------------------------------------------------------------------------------------
def down_named(name: str, console: Console | None = None) -> int:
    state_dir = state_root() / name
    if not state_dir.exists():
        if console:
            console.print(f"no stack named '{name}' ({state_dir} does not exist)")
        return 0
    return LocalStack(name).down()


def down_all(console: Console | None = None) -> int:
    root = state_root()
    if not root.exists():
        return 0
    return sum(down_named(p.name, console) for p in sorted(root.iterdir()) if p.is_dir())


def status(name: str) -> str:
    stack = LocalStack(name)
    if not stack.group.records:
        return f"stack '{name}': not running"
    lines = [f"stack '{name}':"]
    for proc in stack.processes():
        alive = "up" if stack.group.alive(proc["name"]) else "DEAD"
        lines.append(f"  {proc['name']:<12} pid {proc['pid']:<8} port {proc['port'] or '-':<6} "
                     f"{proc['rss_mb']:>7} MB  {alive}")
    if stack.endpoints is not None:
        lines.append(stack.endpoints.describe())
    return "\n".join(lines)


__all__ = ["LocalStack", "StackSpec", "create_default_budget", "down_all", "down_named", "status", "tail"]
