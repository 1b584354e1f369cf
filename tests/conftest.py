"""Shared fakes for unit tests of the harness's own code (never the system under test of a repro).

`FakeStack` implements the whole stack contract of harness/stack/base.py: the `Stack` core and every optional
capability (ReplicaControl, RedisControl, RedisFaults, LogSource). `FakeStack.core_only()` gives one with no
capability at all, for tests of capability refusal. Every call is recorded in `calls` with its time.

The Compose backend's boundaries without an engine: `FakeDocker` (the Docker SDK client), `FakeRunner`
(`docker compose …`), `FakeHTTP` (proxies' health, /budget/new, Toxiproxy's API); `compose_rig()` wires a
ComposeStack to all three.
"""

from __future__ import annotations

import json
import stat
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml
from rich.console import Console

from harness.stack.base import Endpoints, StackFacts, StackSpec, master_key_file


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
    def __init__(self, service: str, project: str) -> None:
        self.name = f"{project}-{service}-1"
        self.labels = {"com.docker.compose.project": project, "com.docker.compose.service": service,
                       "com.docker.compose.container-number": "1"}
        self.status = "running"
        self.calls: list[tuple[Any, ...]] = []
        self.image = SimpleNamespace(tags=[f"{service}:test"])

    def kill(self, signal: str = "SIGKILL") -> None:
        self.calls.append(("kill", signal))
        self.status = "exited"

    def start(self) -> None:
        self.calls.append(("start",))
        self.status = "running"

    def restart(self, timeout: int = 10) -> None:
        self.calls.append(("restart", timeout))

    def wait(self, timeout: int | None = None) -> dict[str, int]:
        return {"StatusCode": 137}

    def reload(self) -> None:
        pass

    def logs(self, **kwargs: Any) -> bytes:
        return f"log of {self.name}\n".encode()

    def exec_run(self, cmd: list[str]) -> SimpleNamespace:
        self.calls.append(("exec", tuple(cmd)))
        replies = {"ping": b"PONG\n", "server": b"# Server\r\nredis_version:7.4.1\r\nredis_mode:standalone\r\n",
                   "SHOW server_version": b"17.2 (Debian 17.2-1.pgdg120+1)\n"}
        return SimpleNamespace(exit_code=0, output=replies.get(cmd[-1], b"OK\n"))

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.calls.append(("remove",))


class FakeDocker:
    """The Docker SDK boundary: ping, containers.list(filters=label), volumes, networks."""

    def __init__(self, engine: bool = True) -> None:
        self.engine = engine
        self.by_service: dict[str, FakeContainer] = {}
        self.containers = SimpleNamespace(list=self._list)
        self.volumes = SimpleNamespace(list=lambda filters=None: [])
        self.networks = SimpleNamespace(list=lambda filters=None: [])

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
    """`docker compose …` calls: `up` makes the containers appear, `down` removes them."""

    def __init__(self, docker: FakeDocker, up_rc: int = 0, up_stderr: str = "") -> None:
        self.docker = docker
        self.calls: list[list[str]] = []
        self.up_rc = up_rc
        self.up_stderr = up_stderr
        self.env_mode_at_up: int | None = None

    def __call__(self, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        cmd = list(cmd)
        self.calls.append(cmd)
        if cmd[-2:] == ["version", "--short"]:
            return subprocess.CompletedProcess(cmd, 0, "2.40.3\n", "")
        project = cmd[cmd.index("-p") + 1]
        env_file = Path(cmd[cmd.index("--env-file") + 1])
        if "up" in cmd:
            self.env_mode_at_up = stat.S_IMODE(env_file.stat().st_mode)
            if self.up_rc:
                return subprocess.CompletedProcess(cmd, self.up_rc, "", self.up_stderr)
            override = yaml.safe_load(Path(cmd[cmd.index("-f", cmd.index("-f") + 1) + 1]).read_text())
            services = ["postgres", "redis", "toxiproxy", "mock", "migrate", "proxy-0", *override["services"]]
            self.docker.add(project, services)
        if "down" in cmd:
            self.docker.by_service.clear()
        return subprocess.CompletedProcess(cmd, 0, "", "")


class FakeHTTP:
    """The proxies' health and /budget/new, and Toxiproxy's API."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.toxics: dict[str, dict[str, Any]] = {}
        self.proxy_enabled = True
        self.healthy = True

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/health/liveliness":
            return httpx.Response(200 if self.healthy else 503, json="I'm alive!")
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


def compose_rig(tmp_path: Path, name: str = "t1") -> SimpleNamespace:
    """A ComposeStack on the fakes (state in tmp_path/state) and a 3-replica spec with its run folder."""
    from harness.stack.compose import ComposeStack

    docker = FakeDocker()
    runner = FakeRunner(docker)
    http = FakeHTTP()
    stack = ComposeStack(name, state_dir=tmp_path / "state", client_factory=lambda: docker, runner=runner,
                         http=http.client(), poll_interval=0.0)
    spec = StackSpec(version="1.84.0", replicas=3, default_budget=2.0, run_dir=tmp_path / "run", seed=7)
    return SimpleNamespace(docker=docker, runner=runner, http=http, stack=stack, spec=spec, tmp=tmp_path)
