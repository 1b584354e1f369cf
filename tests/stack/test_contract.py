"""The stack contract (harness/stack/base.py), run against every implementation: local, compose (on the fake
Docker client / `docker compose` runner / HTTP of tests/conftest.py) and the shared FakeStack.

Nothing here starts a stack; the local backend's track/down is checked with a real `sleep` child.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.stack.backends import BACKENDS, find_stacks, list_stacks, make_stack
from harness.stack.base import (
    LogSource,
    RedisControl,
    RedisFaults,
    ReplicaControl,
    Stack,
    StackFacts,
    master_key_file,
    state_dir_of,
    write_master_key_file,
)
from harness.stack.local import LocalStack
from tests.conftest import FakeStack, compose_rig

CAPABILITIES = (ReplicaControl, RedisControl, RedisFaults, LogSource)


@pytest.fixture(autouse=True)
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state-root"
    monkeypatch.setenv("HARNESS_STATE_DIR", str(root))
    return root


def _local(tmp_path: Path, name: str) -> Stack:
    return LocalStack(name)


def _compose(tmp_path: Path, name: str) -> Stack:
    # the fakes, with the state folder where the registry looks for it
    stack: Stack = compose_rig(tmp_path, name, state_dir=state_dir_of(name)).stack
    return stack


def _fake(tmp_path: Path, name: str) -> Stack:
    return FakeStack(name)


MAKERS: dict[str, Callable[[Path, str], Stack]] = {"local": _local, "compose": _compose, "fake": _fake}
KINDS = list(MAKERS)
REAL = ["local", "compose"]


@pytest.mark.parametrize("kind", KINDS)
def test_core_and_capabilities(kind: str, tmp_path: Path) -> None:
    stack = MAKERS[kind](tmp_path, "c1")
    assert isinstance(stack, Stack)
    assert stack.name == "c1" and stack.backend == ("fake" if kind == "fake" else kind)
    missing = [cap.__name__ for cap in CAPABILITIES if not isinstance(stack, cap)]
    assert missing == []


def test_a_core_only_stack_has_no_capability() -> None:
    core = FakeStack.core_only()
    assert isinstance(core, Stack)
    assert [cap for cap in CAPABILITIES if isinstance(core, cap)] == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_stack_that_is_not_running(kind: str, tmp_path: Path, state_root: Path) -> None:
    stack = MAKERS[kind](tmp_path, "idle")
    assert stack.is_running() is False
    assert stack.endpoints() is None
    facts = stack.facts()
    assert isinstance(facts, StackFacts)
    assert "not running" in stack.status()
    assert stack.down() == 0
    stack.forget()
    stack.forget()                  # idempotent
    assert not state_root.exists() or list(state_root.iterdir()) == []   # nothing left, nothing made
    if kind != "fake":
        assert facts.processes == [] and facts.timings == {}


@pytest.mark.parametrize("kind", REAL)
def test_down_stops_a_tracked_child_and_deletes_the_key_file(kind: str, tmp_path: Path, state_root: Path) -> None:
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        stack = MAKERS[kind](tmp_path, "tracked")
        stack.track("locust", child.pid)
        key = write_master_key_file("tracked", "sk-not-a-real-key")
        assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.parent == state_dir_of("tracked")
        # a new handle (as `harness down` in another process) finds it from the state folder alone
        again = find_stacks("tracked")
        assert [type(s) for s in again] == [type(stack)]
        assert again[0].is_running()
        assert "locust" in again[0].status()
        assert [p["pid"] for p in again[0].facts().processes if p["name"] == "locust"] == [child.pid]
        assert again[0].down() == 1
        # down returns once the child is gone: it was reaped by nobody yet, so it is a zombie at most
        assert child.wait(timeout=1) == -15
        assert not master_key_file("tracked").exists()
        assert find_stacks("tracked") == []           # no state file left: listings no longer show it
        again[0].forget()
        assert not state_dir_of("tracked").exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_fake_stack_tracks_and_down_counts_them(tmp_path: Path) -> None:
    stack = FakeStack("f")
    stack.track("locust", os.getpid())
    assert stack.down() == 1 and stack.down() == 0


def test_local_refuses_to_track_under_a_name_of_its_own(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="cannot track 'proxy-0'"):
        LocalStack("x").track("proxy-0", os.getpid())


def test_registry_lists_every_stack_of_every_backend(tmp_path: Path, state_root: Path) -> None:
    # a crashed local run (its recorded process is long gone) and a Compose stack that is up
    crashed = state_root / "run-20260101-000000-phantom"
    crashed.mkdir(parents=True)
    (crashed / "state.json").write_text('{"processes": [{"name": "redis", "pid": 999999999, "pgid": 999999999, '
                                        '"cmd": ["redis-server"], "log": "", "create_time": 1.0}], "extra": {}}')
    rig = compose_rig(tmp_path, "dock", state_dir=state_dir_of("dock"))
    composed = rig.stack
    composed.up(rig.spec)
    (state_root / "not-a-stack").mkdir()
    found = {(s.name, s.backend) for s in list_stacks()}
    assert found == {("run-20260101-000000-phantom", "local"), ("dock", "compose")}
    crashed_stack = find_stacks("run-20260101-000000-phantom")[0]
    assert "DEAD" in crashed_stack.status() and not crashed_stack.is_running()
    assert crashed_stack.down() == 0 and not (crashed / "state.json").exists()   # nothing was running
    assert composed.down() == 8
    assert list_stacks() == []


def test_make_stack_names_the_fix_for_unknown_backends() -> None:
    assert set(BACKENDS) == {"local", "compose", "external"}
    # external without its target: only what a run left (status, down); the run needs --target
    external = make_stack("external", "x")
    assert external.backend == "external" and not external.is_running()
    with pytest.raises(HarnessError, match="unknown backend 'k8s'"):
        make_stack("k8s", "x")
