"""The fault-kind registry: lookup, per-kind metadata, params validation, capability refusal."""

from __future__ import annotations

import time
from pathlib import Path

import pydantic
import pytest

from harness.errors import HarnessError
from harness.nemesis.registry import (
    FaultKindSpec,
    FaultParams,
    FaultRun,
    check_capabilities,
    fault_kind,
    fault_kinds,
    known_kinds,
    required_capabilities,
)
from harness.scenario.model import FaultWindow, parse_scenario
from harness.stack.base import RedisControl, RedisFaults, ReplicaControl
from tests.conftest import FakeCore, FakeStack


def test_unknown_kind_is_none_not_an_error() -> None:
    assert fault_kind("meltdown_from_an_old_run") is None
    assert "meltdown_from_an_old_run" not in known_kinds()


def test_every_kind_is_documented_and_forbids_unknown_params() -> None:
    for spec in fault_kinds():
        assert spec.label and spec.description.startswith(spec.label), spec.name
        assert issubclass(spec.params, FaultParams)
        for name, info in spec.params.model_fields.items():
            assert info.description, f"{spec.name}.{name}: add Field(description=...)"
        with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
            spec.parse({"no_such_param": 1})


def test_one_shot_and_needs_per_kind() -> None:
    assert {s.name for s in fault_kinds() if s.one_shot} == {"restart_redis", "flush_redis", "snapshot_redis"}
    needs = {s.name: s.needs for s in fault_kinds()}
    assert needs["kill_replica"] is ReplicaControl
    assert needs["redis_down"] is RedisFaults and needs["redis_latency"] is RedisFaults
    assert needs["flush_redis"] is RedisControl
    assert all(needs[k] is None for k in known_kinds() if k.startswith("mock_"))


def test_target_column() -> None:
    def target(kind: str, **kw: object) -> str:
        spec = fault_kind(kind)
        assert spec is not None
        return spec.target(FaultWindow.model_validate({"kind": kind, "at_s": 0, **kw}))

    assert target("kill_replica", target=1) == "1"
    assert target("mock_hang") == "mock"
    assert target("redis_down") == "redis" and target("flush_redis") == "redis"


def test_params_are_typed_with_defaults() -> None:
    spec = fault_kind("redis_latency")
    assert spec is not None
    fault = spec.parse({"latency_ms": 100})
    assert fault.model_dump() == {"latency_ms": 100.0, "jitter_ms": 0.0, "direction": "down"}
    with pytest.raises(pydantic.ValidationError, match="direction"):
        spec.parse({"direction": "sideways"})
    with pytest.raises(pydantic.ValidationError, match="latency_ms"):
        spec.parse({"latency_ms": -1})


WINDOWS = [FaultWindow(kind="mock_error", at_s=0), FaultWindow(kind="redis_down", at_s=1, duration_s=2),
           FaultWindow(kind="kill_replica", at_s=2, duration_s=1, target=0)]


def test_required_capabilities_lists_windows_that_need_the_stack() -> None:
    assert [(i, spec.name, needs) for i, spec, needs in required_capabilities(WINDOWS)] == [
        (1, "redis_down", RedisFaults), (2, "kill_replica", ReplicaControl)]


def test_check_capabilities_refuses_what_the_backend_cannot_do() -> None:
    check_capabilities(WINDOWS, FakeStack())                    # every capability: fine
    check_capabilities(WINDOWS[:1], FakeCore())                 # mock faults need no capability
    with pytest.raises(HarnessError) as info:
        check_capabilities(WINDOWS, FakeCore())
    line = info.value.line()
    assert "faults.1" in line and "redis_down" in line and "RedisFaults" in line and "fake backend" in line
    assert "\n" not in line


def test_a_new_kind_is_one_class_and_one_registration_line(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """The extension point: define a kind, register it, and the scenario loader, the docs, the capability check
    and the nemesis all know it."""
    from harness.nemesis import registry
    from harness.nemesis.schedule import Nemesis
    from harness.scenario import docs

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._loaded()))

    class ReplicaPause(FaultParams):
        """A replica stops answering for a while."""

        seconds: float = pydantic.Field(default=1.0, gt=0, description="how long")

        def start(self, run: FaultRun) -> str:
            stack: ReplicaControl = run.stack
            stack.kill_replica(int(str(run.target)))
            return f"paused {self.seconds}"

    registry.register(FaultKindSpec("replica_pause", ReplicaPause, needs=ReplicaControl, on="replica",
                                    one_shot=True))

    scenario = parse_scenario({"name": "x", "expect": "clean", "faults": [
        {"kind": "replica_pause", "at_s": 0, "target": 1, "params": {"seconds": 2}}]}, Path("x.yaml"))
    with pytest.raises(HarnessError, match="faults.0.params.secs: Extra inputs"):
        parse_scenario({"name": "x", "expect": "clean", "faults": [
            {"kind": "replica_pause", "at_s": 0, "target": 1, "params": {"secs": 2}}]}, Path("x.yaml"))
    assert "| `replica_pause` | ReplicaControl | one-shot" in docs.schema_markdown()
    with pytest.raises(HarnessError, match="replica_pause needs the stack capability ReplicaControl"):
        check_capabilities(scenario.faults, FakeCore())
    stack = FakeStack()
    nemesis = Nemesis(scenario.faults, stack, None, tmp_path)
    nemesis.start(time.time())
    deadline = time.monotonic() + 10
    while not (tmp_path / "faults.csv").exists() or "paused 2.0" not in (tmp_path / "faults.csv").read_text():
        assert time.monotonic() < deadline, "the new kind never ran"
        time.sleep(0.02)
    nemesis.stop()
    assert stack.names() == [("kill_replica", (1,))]
