"""Shared fakes for unit tests of the harness's own code (never the system under test of a repro).

`FakeStack` implements the whole stack contract of harness/stack/base.py: the `Stack` core and every optional
capability (ReplicaControl, RedisControl, RedisFaults, LogSource). `FakeStack.core_only()` gives one with no
capability at all, for tests of capability refusal. Every call is recorded in `calls` with its time.

The Compose backend's boundaries without an engine: `FakeDocker` (the Docker SDK client, images and builds
included), `FakeRunner` (`docker compose …`), `FakeHTTP` (the replicas' readiness as each LiteLLM release
answers it, /budget/new, Toxiproxy's API), `FakeImageBuilder` (images chosen and "built" without Docker);
`compose_rig()` wires a ComposeStack to all four.
"""

from __future__ import annotations

import json
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml
from rich.console import Console

from harness.stack.base import Endpoints, StackFacts, StackSpec, master_key_file
from harness.stack.compose.images import ImageBuilder, ImageChoice, local_choice, official_choice


def fake_endpoints(version: str = "1.84.0", replicas: int = 2) -> Endpoints:
    return Endpoints(proxy_urls=[f"http://127.0.0.1:{4000 + i}" for i in range(replicas)],
                     redis_url="redis://127.0.0.1:6380/0", redis_direct_url="redis://127.0.0.1:6379/0",
                     postgres_dsn="postgresql://litellm@127.0.0.1:5432/litellm", mock_url="http://127.0.0.1:8000",
                     master_key="sk-fake-not-a-secret", version=version, backend="fake")


class FakeCore:
    """The `Stack` core only: up/down/is_running/endpoints/facts/track/forget/status, all recorded."""

    backend = "fake"

    def __init__(self, name: str = "fake", fail: set[str] | None = None, up_error: Exception | None = None) -> None:
        self.name = name
        self.fail = fail or set()
        self.up_error = up_error
        self.preflight_error: Exception | None = None
        self.calls: list[tuple[float, str, tuple[Any, ...]]] = []
        self.tracked: dict[str, int] = {}
        self.spec: StackSpec | None = None
        self._endpoints: Endpoints | None = None
        self._lock = threading.Lock()

    def _call(self, name: str, *args: Any) -> None:
        with self._lock:
            self.calls.append((time.time(), name, args))
        if name in self.fail:
            raise RuntimeError(f"{name} broke")

    def names(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [(n, a) for _, n, a in self.calls]

    # -- Stack core ---------------------------------------------------------------------------------
    def preflight(self, spec: StackSpec) -> None:
        self._call("preflight", spec.version)
        if self.preflight_error is not None:
            raise self.preflight_error

    def up(self, spec: StackSpec, console: Console | None = None) -> Endpoints:
        self._call("up", spec.version, spec.replicas)
        if self.up_error is not None:
            raise self.up_error
        self.spec = spec
        self._endpoints = fake_endpoints(spec.version, spec.replicas)
        return self._endpoints

    def down(self) -> int:
        self._call("down")
        stopped = (self.spec.replicas + 3 if self.spec and self._endpoints else 0) + len(self.tracked)
        self._endpoints = None
        self.tracked.clear()
        master_key_file(self.name).unlink(missing_ok=True)   # like every backend: the run's key file goes
        return stopped

    def is_running(self) -> bool:
        return self._endpoints is not None

    def endpoints(self) -> Endpoints | None:
        return self._endpoints

    def facts(self) -> StackFacts:
        return StackFacts(redis_version="7.0.15", postgres_version="15.18", timings={"up": 0.1},
                          processes=[{"name": "fake", "pid": 1, "port": None, "rss_mb": 0.0, "alive": True}])

    def track(self, name: str, pid: int) -> None:
        self._call("track", name, pid)
        self.tracked[name] = pid

    def forget(self) -> None:
        self._call("forget")

    def status(self) -> str:
        return f"stack '{self.name}' (fake): " + ("up" if self.is_running() else "not running")


class FakeStack(FakeCore):
    """The core plus every capability."""

    # -- ReplicaControl -----------------------------------------------------------------------------
    def kill_replica(self, index: int) -> None:
        self._call("kill_replica", index)

    def restart_replica(self, index: int) -> float:
        self._call("restart_replica", index)
        return 1.5

    # -- RedisFaults --------------------------------------------------------------------------------
    def redis_fault(self, kind: str, **params: Any) -> None:
        self._call("redis_fault", kind, tuple(sorted(params.items())))

    # -- RedisControl -------------------------------------------------------------------------------
    def restart_redis(self, flush: bool = False) -> float:
        self._call("restart_redis", flush)
        return 0.3

    def flush_redis(self) -> None:
        self._call("flush_redis")

    def snapshot_redis(self) -> None:
        self._call("snapshot_redis")

    # -- LogSource ----------------------------------------------------------------------------------
    def logs(self) -> dict[str, Path]:
        return {}

    @staticmethod
    def core_only(name: str = "fake-core") -> FakeCore:
        return FakeCore(name)


@pytest.fixture
def fake_stack() -> FakeStack:
    return FakeStack()


# -- the Compose backend's boundaries ------------------------------------------------------------------
class FakeContainer:
    """A Docker SDK container: status and exit code as `reload()` would show them, its log, its calls."""

    def __init__(self, service: str, project: str) -> None:
        self.name = f"{project}-{service}-1"
        self.labels = {"com.docker.compose.project": project, "com.docker.compose.service": service,
                       "com.docker.compose.container-number": "1"}
        self.status = "running"
        self.exit_code = 0
        self.log = f"log of {self.name}\n"
        self.calls: list[tuple[Any, ...]] = []
        self.image = SimpleNamespace(tags=[f"{service}:test"])

    @property
    def attrs(self) -> dict[str, Any]:
        return {"Name": f"/{self.name}", "State": {"Status": self.status, "ExitCode": self.exit_code}}

    def kill(self, signal: str = "SIGKILL") -> None:
        self.calls.append(("kill", signal))
        self.status, self.exit_code = "exited", 137

    def start(self) -> None:
        self.calls.append(("start",))
        self.status, self.exit_code = "running", 0

    def restart(self, timeout: int = 10) -> None:
        self.calls.append(("restart", timeout))

    def wait(self, timeout: int | None = None) -> dict[str, int]:
        return {"StatusCode": self.exit_code}

    def reload(self) -> None:
        self.calls.append(("reload",))

    def logs(self, **kwargs: Any) -> bytes:
        return self.log.encode()

    def exec_run(self, cmd: list[str]) -> SimpleNamespace:
        self.calls.append(("exec", tuple(cmd)))
        replies = {"ping": b"PONG\n", "server": b"# Server\r\nredis_version:7.4.1\r\nredis_mode:standalone\r\n",
                   "SHOW server_version": b"17.2 (Debian 17.2-1.pgdg120+1)\n"}
        return SimpleNamespace(exit_code=0, output=replies.get(cmd[-1], b"OK\n"))

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.calls.append(("remove",))


class FakeImages:
    """`client.images`: get (ImageNotFound when absent) and pull (an APIError per `pull_errors`), recorded."""

    def __init__(self) -> None:
        self.present: dict[str, str] = {}          # ref -> image id
        self.pull_errors: dict[str, str] = {}      # ref -> the engine's explanation of a failed pull
        self.got: list[str] = []
        self.pulled: list[str] = []
        self._serial = 0

    def add(self, ref: str) -> str:
        self._serial += 1
        self.present[ref] = f"sha256:{self._serial:04d}" + "ab" * 30
        return self.present[ref]

    def get(self, ref: str) -> SimpleNamespace:
        import docker

        self.got.append(ref)
        if ref not in self.present:
            raise docker.errors.ImageNotFound(f"No such image: {ref}")
        return SimpleNamespace(id=self.present[ref], tags=[ref])

    def pull(self, ref: str, tag: str | None = None, **_: Any) -> SimpleNamespace:
        import docker

        self.pulled.append(ref)
        if ref in self.pull_errors:
            raise docker.errors.APIError("500 Server Error", explanation=self.pull_errors[ref])
        self.add(ref)
        return SimpleNamespace(id=self.present[ref], tags=[ref])


class FakeAPI:
    """`client.api.build` (classic builder, decode=True): the chunks the engine streams; a success tags the image.
    `fail_target`: the stage whose build ends with an error chunk."""

    def __init__(self, images: FakeImages) -> None:
        self.images = images
        self.builds: list[dict[str, Any]] = []
        self.context_files: list[set[str]] = []     # the files of each build's context, seen while it exists
        self.fail_target: str | None = None

    def build(self, **kwargs: Any) -> Any:
        self.builds.append(kwargs)
        context = Path(kwargs["path"])
        self.context_files.append({str(p.relative_to(context)) for p in context.rglob("*")})
        target = kwargs.get("target")
        if target is not None and target == self.fail_target:
            return iter([{"stream": f"Step 1/3 : FROM os AS {target}\n"},
                         {"errorDetail": {"message": "The command '/bin/sh -c apt-get install' returned a non-zero "
                                                     "code: 100"},
                          "error": "The command '/bin/sh -c apt-get install' returned a non-zero code: 100"}])
        image_id = self.images.add(kwargs["tag"])
        return iter([{"stream": f"Step 1/2 : FROM something AS {target}\n"}, {"stream": " ---> Using cache\n"},
                     {"aux": {"ID": image_id}}, {"stream": f"Successfully built {image_id[7:19]}\n"},
                     {"stream": f"Successfully tagged {kwargs['tag']}\n"}])


class FakeDocker:
    """The Docker SDK boundary: ping, containers.list(filters=label), volumes, networks, images, api.build."""

    def __init__(self, engine: bool = True) -> None:
        self.engine = engine
        self.by_service: dict[str, FakeContainer] = {}
        self.containers = SimpleNamespace(list=self._list)
        self.volumes = SimpleNamespace(list=lambda filters=None: [])
        self.networks = SimpleNamespace(list=lambda filters=None: [])
        self.images = FakeImages()
        self.api = FakeAPI(self.images)

    def ping(self) -> bool:
        if not self.engine:
            raise ConnectionError("connection refused")
        return True

    def add(self, project: str, services: Sequence[str]) -> None:
        for service in services:
            self.by_service[service] = FakeContainer(service, project)

    def _list(self, filters: dict[str, list[str]] | None = None, **_: Any) -> list[FakeContainer]:
        wanted = dict(item.split("=", 1) for item in (filters or {}).get("label", []))
        return [c for c in self.by_service.values() if all(c.labels.get(k) == v for k, v in wanted.items())]


class FakeRunner:
    """`docker compose …` calls: `up` makes the containers appear (`migrate` as a one-shot that completed),
    `down` removes them. A failing `up` (`up_rc`) creates them only with `create_on_failure` (as a real `up`
    that got as far as starting `migrate`); `after_up(docker)` changes them before `up` returns."""

    def __init__(self, docker: FakeDocker, up_rc: int = 0, up_stderr: str = "") -> None:
        self.docker = docker
        self.calls: list[list[str]] = []
        self.up_rc = up_rc
        self.up_stderr = up_stderr
        self.create_on_failure = False
        self.after_up: Callable[[FakeDocker], None] | None = None
        self.env_mode_at_up: int | None = None

    def __call__(self, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        cmd = list(cmd)
        self.calls.append(cmd)
        if cmd[-2:] == ["version", "--short"]:
            return subprocess.CompletedProcess(cmd, 0, "2.40.3\n", "")
        if cmd[-1] == "--harness-probe-unknown-flag":     # a real Compose fails on an unknown flag
            return subprocess.CompletedProcess(cmd, 1, "", "unknown flag: --harness-probe-unknown-flag")
        project = cmd[cmd.index("-p") + 1]
        env_file = Path(cmd[cmd.index("--env-file") + 1])
        if "up" in cmd:
            self.env_mode_at_up = stat.S_IMODE(env_file.stat().st_mode)
            if self.up_rc == 0 or self.create_on_failure:
                override = yaml.safe_load(Path(cmd[cmd.index("-f", cmd.index("-f") + 1) + 1]).read_text())
                services = ["postgres", "redis", "toxiproxy", "mock", "migrate", "proxy-0", *override["services"]]
                self.docker.add(project, services)
                self.docker.by_service["migrate"].status = "exited"     # the one-shot ran (exit code 0)
            if self.after_up is not None:
                self.after_up(self.docker)
            if self.up_rc:
                return subprocess.CompletedProcess(cmd, self.up_rc, "", self.up_stderr)
        if "down" in cmd:
            self.docker.by_service.clear()
        return subprocess.CompletedProcess(cmd, 0, "", "")


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one `error: …` line a command that refused its input printed on stderr (asserted to be alone)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def resolver_uv(tmp_path: Path, *resolver_lines: str) -> Path:
    """A fake uv: `uv venv` makes an empty venv; `uv pip install` prints uv's resolver error and exits 1."""
    fake_uv = tmp_path / "uv"
    echoes = "".join(f"echo '{ln}'\n" for ln in resolver_lines)
    fake_uv.write_text(
        "#!/bin/bash\n"
        'if [[ "$1" == venv ]]; then for a; do last="$a"; done; '
        'mkdir -p "$last/bin" "$last/lib/python3.11/site-packages"; touch "$last/bin/python"; exit 0; fi\n'
        + echoes + "exit 1\n")
    fake_uv.chmod(0o755)
    return fake_uv


READINESS_PATH, READINESS_DETAILS_PATH = "/health/readiness", "/health/readiness/details"


def readiness_details(version: str, db: str = "connected", cache: Any = "redis") -> dict[str, Any]:
    """LiteLLM's detailed readiness payload (1.83.14's public /health/readiness; /health/readiness/details of
    1.84.0+), field for field as `_get_health_readiness_details` builds it (see harness/litellm/health.py)."""
    body: dict[str, Any] = {"status": "healthy", "db": db, "cache": cache, "litellm_version": version,
                            "success_callbacks": ["_PROXY_VirtualKeyModelMaxBudgetLimiter", "ServiceLogging"],
                            "use_aiohttp_transport": True, "log_level": "WARNING", "is_detailed_debug": False}
    if version == "1.108.7":
        body.update(show_no_redis_warning=False, show_env_credential_login_warning=False)
    return body


class FakeHTTP:
    """The replicas' readiness routes as LiteLLM `version` answers them, /budget/new, and Toxiproxy's API.

    Readiness (harness/litellm/health.py has the shapes): 1.83.14 answers the detailed payload on the public
    route with HTTP 200 whatever `db` is; 1.84.0 and newer answer `{"status", "db"}` publicly (HTTP 503 while
    the database is `disconnected`) and the detailed payload on /health/readiness/details, only with the master
    key `master_key()` returns (401 otherwise). `db_states`: the `db` of successive public readiness answers
    (the last one sticks); `cache`: what the detailed payload says. No /health/liveliness: nothing may use it.
    """

    def __init__(self, version: str = "1.84.0", master_key: Callable[[], str | None] | None = None) -> None:
        self.version = version
        self.master_key = master_key
        self.db_states: list[str] = ["connected"]
        self.cache: Any = "redis"
        self.requests: list[httpx.Request] = []
        self.toxics: dict[str, dict[str, Any]] = {}
        self.proxy_enabled = True
        self._db = "connected"

    def readiness_requests(self, path: str = READINESS_PATH) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    def _readiness(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == READINESS_PATH:
            self._db = self.db_states.pop(0) if len(self.db_states) > 1 else self.db_states[0]
            if self.version == "1.83.14":
                return httpx.Response(200, json=readiness_details(self.version, self._db, self.cache))
            status = 503 if self._db in ("disconnected", "stalled") else 200
            return httpx.Response(status, json={"status": "healthy", "db": self._db})
        if self.version == "1.83.14":
            return httpx.Response(404, json={"detail": "Not Found"})
        expected = self.master_key() if self.master_key is not None else None
        if not expected or request.headers.get("authorization") != f"Bearer {expected}":
            return httpx.Response(401, json={"error": {"message": "Authentication Error, No api key passed in.",
                                                       "type": "auth_error", "param": "None", "code": "401"}})
        return httpx.Response(200, json=readiness_details(self.version, self._db, self.cache))

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path in (READINESS_PATH, READINESS_DETAILS_PATH) and request.method == "GET":
            return self._readiness(request)
        if path == "/budget/new":
            return httpx.Response(200, json={"budget_id": json.loads(request.content)["budget_id"]})
        if path == "/proxies/redis/toxics" and request.method == "GET":
            return httpx.Response(200, json=list(self.toxics.values()))
        if path == "/proxies/redis/toxics" and request.method == "POST":
            body = json.loads(request.content)
            self.toxics[body["name"]] = body
            return httpx.Response(200, json=body)
        if path.startswith("/proxies/redis/toxics/") and request.method == "DELETE":
            self.toxics.pop(path.rsplit("/", 1)[1])
            return httpx.Response(204)
        if path == "/proxies/redis" and request.method == "POST":
            self.proxy_enabled = bool(json.loads(request.content)["enabled"])
            return httpx.Response(200, json={"name": "redis", "enabled": self.proxy_enabled})
        return httpx.Response(404, text="not found")

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))


class FakeImageBuilder(ImageBuilder):
    """An ImageBuilder that builds nothing: `choose` answers `kind` ("official" or "local", with `reason`),
    `ensure` records fake image ids (or raises `error`). Records the client it was made with and its calls."""

    def __init__(self, client: Any, console: Console | None, log_path: Path, kind: str = "official",
                 reason: str = "", error: Exception | None = None) -> None:
        super().__init__(client, console=console, log_path=log_path)
        self.kind, self.reason, self.error = kind, reason, error
        self.calls: list[tuple[str, str]] = []

    def choose(self, version: str) -> ImageChoice:
        self.calls.append(("choose", version))
        return official_choice(version) if self.kind == "official" else local_choice(version, self.reason)

    def ensure(self, choice: ImageChoice, version: str) -> ImageChoice:
        self.calls.append(("ensure", version))
        if self.error is not None:
            raise self.error
        choice.ids = {ref: f"sha256:{i:02d}" + "cd" * 31 for i, (var, ref) in enumerate(sorted(choice.env.items()))
                      if var.endswith("_IMAGE")}
        return choice


def compose_rig(tmp_path: Path, name: str = "t1", version: str = "1.84.0", replicas: int = 3,
                state_dir: Path | None = None) -> SimpleNamespace:
    """A ComposeStack on the fakes (state in tmp_path/state, or `state_dir`) and a spec with its run folder.

    `rig.builder` is the FakeImageBuilder the stack gets (set `kind`/`reason`/`error` on it before `up`);
    `rig.image_builder` the factory to give another handle on the same stack.
    """
    from harness.stack.compose import ComposeStack

    docker = FakeDocker()
    runner = FakeRunner(docker)
    builder = FakeImageBuilder(docker, None, log_path=tmp_path / "images-build.log")
    made_with: list[Any] = []

    def image_builder(client: Any, console: Console | None) -> ImageBuilder:
        made_with.append(client)
        builder.console = console or builder.console
        return builder

    state = state_dir if state_dir is not None else tmp_path / "state"
    http = FakeHTTP(version, master_key=lambda: _env_file_key(state))
    stack = ComposeStack(name, state_dir=state, client_factory=lambda: docker, runner=runner, http=http.client(),
                         image_builder=image_builder, poll_interval=0.0)
    spec = StackSpec(version=version, replicas=replicas, default_budget=2.0, run_dir=tmp_path / "run", seed=7)
    return SimpleNamespace(docker=docker, runner=runner, http=http, stack=stack, spec=spec, tmp=tmp_path,
                           builder=builder, image_builder=image_builder, builder_made_with=made_with)


def _env_file_key(state_dir: Path) -> str | None:
    """The master key in a Compose stack's compose.env (what the replicas were given)."""
    env_file = state_dir / "compose.env"
    if not env_file.exists():
        return None
    for line in env_file.read_text().splitlines():
        if line.startswith("LITELLM_MASTER_KEY="):
            return line.split("=", 1)[1].strip("'")
    return None
