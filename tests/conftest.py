"""Shared fakes for unit tests of the harness's own code (never the system under test of a repro).

`FakeStack` implements the whole stack contract of harness/stack/base.py: the `Stack` core and every optional
capability (ReplicaControl, RedisControl, RedisFaults, LogSource). `FakeStack.core_only()` gives one with no
capability at all, for tests of capability refusal. Every call is recorded in `calls` with its time.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness.stack.base import Endpoints, StackFacts, StackSpec


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
    def up(self, spec: StackSpec, console: Console | None = None) -> Endpoints:
        self._call("up", spec.version, spec.replicas)
        if self.up_error is not None:
            raise self.up_error
        self.spec = spec
        self._endpoints = fake_endpoints(spec.version, spec.replicas)
        return self._endpoints

    def down(self) -> int:
        self._call("down")
        stopped = (self.spec.replicas + 3 if self.spec else 0) + len(self.tracked)
        self._endpoints = None
        self.tracked.clear()
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
