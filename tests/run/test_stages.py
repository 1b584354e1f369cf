"""The real stages (harness/run/stages.py) on a FakeStack: what each records, and what each cleans up."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness.load.config import LoadConfig
from harness.run.context import Clock, RunContext
from harness.run.runfolder import FAULTS_FILE, MetaWriter
from harness.run.stages import CpuStage, DrainStage, LoadStage, NemesisStage
from harness.scenario.model import parse_scenario
from harness.stack.base import StackSpec, master_key_file
from tests.conftest import FakeStack


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def _ctx(tmp_path: Path, stack: FakeStack, **scenario: Any) -> RunContext:
    sc = parse_scenario({"name": "stages", "expect": "reproduced", "drain_s": 5, **scenario}, tmp_path / "s.yaml")
    endpoints = stack.up(StackSpec.from_scenario(sc))
    run_dir = tmp_path / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunContext(scenario=sc, run_id="r", run_dir=run_dir, stack=stack, endpoints=endpoints,
                      meta=MetaWriter(run_dir / "meta.json", {"status": "stack up"}),
                      console=Console(file=open(os.devnull, "w"), width=80), clock=Clock())  # noqa: SIM115


def _wait_for(check: Any, what: str, deadline_s: float = 10) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


class FakeLocust:
    """What LoadStage uses of a LocustHandle; a real child process so the pid is real."""

    name = "locust"

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        self.stopped = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> int | None:
        self.stopped = True
        self.proc.kill()
        return self.proc.wait(timeout=10)


def test_load_stage_keeps_the_key_in_the_stacks_state_tracks_locust_and_removes_the_key(
        tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.load import launch

    started: list[FakeLocust] = []
    seen: dict[str, Any] = {}

    def fake_run_locust(config: LoadConfig, run_dir: Path, processes: int = 1) -> FakeLocust:
        key = Path(str(config.master_key_file))
        seen.update(path=key, text=key.read_text(), mode=stat.S_IMODE(key.stat().st_mode), processes=processes)
        started.append(FakeLocust(config))
        return started[0]

    monkeypatch.setattr(launch, "run_locust", fake_run_locust)
    stack = FakeStack("run-x")
    ctx = _ctx(tmp_path, stack)
    stage = LoadStage()
    stage.start(ctx)
    assert seen["path"] == master_key_file("run-x") and seen["path"].is_relative_to(state / "run-x")
    assert (seen["text"], seen["mode"]) == ("sk-fake-not-a-secret", 0o600)
    assert stack.tracked == {"locust": started[0].pid}          # `harness down` finds Locust through the stack
    assert ctx.t_load_start is not None and ctx.meta.data["status"] == "load"
    assert stage.busy(ctx)
    stage.stop(ctx)
    assert started[0].stopped and not seen["path"].exists()
    assert ctx.t_load_end is not None and ctx.meta.data["load_exit_code"] is not None
    assert "sk-fake-not-a-secret" not in (ctx.run_dir / "meta.json").read_text()


def test_load_stage_removes_the_key_when_locust_fails_to_start(tmp_path: Path, state: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.load import launch

    def broken(config: LoadConfig, run_dir: Path, processes: int = 1) -> Any:
        raise OSError("no locust here")

    monkeypatch.setattr(launch, "run_locust", broken)
    ctx = _ctx(tmp_path, FakeStack("run-y"))
    stage = LoadStage()
    with pytest.raises(OSError):
        stage.start(ctx)
    assert master_key_file("run-y").exists()
    stage.stop(ctx)                 # the runner stops a stage whose start raised
    assert not master_key_file("run-y").exists() and ctx.t_load_end is None


def test_nemesis_stage_runs_windows_on_the_stack_and_records_its_errors(tmp_path: Path) -> None:
    stack = FakeStack()
    ctx = _ctx(tmp_path, stack, faults=[{"kind": "kill_replica", "target": 1, "at_s": 0, "duration_s": 0}])
    stage = NemesisStage()
    stage.start(ctx)
    _wait_for(lambda: ("kill_replica", (1,)) in stack.names(), "the kill")
    stage.stop(ctx)
    assert ("restart_replica", (1,)) in stack.names()
    assert ctx.meta.data["nemesis_errors"] == []
    assert len((ctx.run_dir / FAULTS_FILE).read_text().splitlines()) == 3      # header, start, end

    broken = FakeStack(fail={"kill_replica"})
    ctx = _ctx(tmp_path / "b", broken, faults=[{"kind": "kill_replica", "target": 0, "at_s": 0, "duration_s": 0}])
    stage = NemesisStage()
    stage.start(ctx)
    _wait_for(lambda: ("kill_replica", (0,)) in broken.names(), "the kill")
    stage.stop(ctx)
    errors = ctx.meta.data["nemesis_errors"]
    assert len(errors) == 1 and "kill_replica broke" in json.dumps(errors)
    assert "kill_replica broke" in (ctx.run_dir / "meta.json").read_text()


def test_nemesis_stop_without_start_is_harmless(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, FakeStack())
    NemesisStage().stop(ctx)
    assert "nemesis_errors" not in ctx.meta.data


def test_cpu_stage_measures_the_stacks_processes_from_facts(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, FakeStack())
    stage = CpuStage()
    stage.start(ctx)
    stage.stop(ctx)
    cpu = ctx.meta.data["cpu_during_load"]
    assert "fake" in cpu["processes"] and "locust" in cpu["processes"] and cpu["wall_s"] >= 0


def test_the_drain_waits_only_after_a_load_and_not_after_a_failure(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, FakeStack())
    DrainStage().stop(ctx)                      # no load ran
    assert "t_drain_end" not in ctx.meta.data
    ctx.t_load_end = ctx.clock.time() - 10      # a load ended 10 s ago; the drain is 5 s: nothing left to wait
    ctx.outcome = "failed"
    DrainStage().stop(ctx)
    assert "t_drain_end" not in ctx.meta.data
    ctx.outcome = "interrupted"
    t0 = time.monotonic()
    DrainStage().stop(ctx)
    assert ctx.meta.data["t_drain_end"] >= ctx.t_load_end + 5 and time.monotonic() - t0 < 1
    assert ctx.meta.data["status"] == "drain"
