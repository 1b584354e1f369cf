"""Where the load runs (harness/run/stages.py `load_where`, LoadStage): on the host, or inside a stack that has the
LoadRunner capability; `load.where` in the scenario, $HARNESS_LOAD_IN over it; refused before anything starts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness.errors import HarnessError
from harness.load.config import LoadConfig
from harness.run.context import Clock, RunContext
from harness.run.experiment import RunOptions, run_scenario
from harness.run.runfolder import MetaWriter
from harness.run.stages import LOAD_WHERE_VAR, LoadStage, load_where
from harness.scenario.model import parse_scenario
from harness.stack.base import LoadRunner, StackSpec, master_key_file
from tests.conftest import FakeStack


class FakeLoad:
    """What a LoadRunner returns (harness.stack.base.LoadHandle), scripted."""

    name = "locust"
    pid: int | None = None

    def __init__(self) -> None:
        self.returncode: int | None = None
        self.stops: list[float | None] = []

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        assert self.returncode is not None
        return self.returncode

    def stop(self, timeout: float | None = None) -> int | None:
        self.stops.append(timeout)
        self.returncode = 0 if self.returncode is None else self.returncode
        return self.returncode


class LoadRunningStack(FakeStack):
    backend = "fake-compose"

    def __init__(self, name: str = "fake") -> None:
        super().__init__(name)
        self.loads: list[tuple[LoadConfig, Path, int]] = []
        self.handle = FakeLoad()

    def start_load(self, config: LoadConfig, run_dir: Path, workers: int) -> FakeLoad:
        self.loads.append((config, run_dir, workers))
        return self.handle


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv(LOAD_WHERE_VAR, raising=False)


def _ctx(tmp_path: Path, stack: FakeStack, **load: Any) -> RunContext:
    sc = parse_scenario({"name": "where", "expect": "reproduced", "load": {"users": 3, **load}}, tmp_path / "s.yaml")
    endpoints = stack.up(StackSpec.from_scenario(sc))
    run_dir = tmp_path / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunContext(scenario=sc, run_id="r", run_dir=run_dir, stack=stack, endpoints=endpoints,
                      meta=MetaWriter(run_dir / "meta.json", {"status": "stack up"}),
                      console=Console(file=open(os.devnull, "w"), width=80), clock=Clock(),  # noqa: SIM115
                      processes=load.get("processes", 1))


def test_auto_means_the_stacks_own_when_it_has_one() -> None:
    assert isinstance(LoadRunningStack(), LoadRunner) and not isinstance(FakeStack(), LoadRunner)
    assert load_where("auto", LoadRunningStack()) == "stack"
    assert load_where("auto", FakeStack()) == "host"
    assert load_where("host", LoadRunningStack()) == "host"
    assert load_where("stack", LoadRunningStack()) == "stack"


def test_stack_on_a_backend_without_it_is_refused_and_the_variable_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(HarnessError, match=r"load.where=stack, but the fake backend cannot run the load"):
        load_where("stack", FakeStack())
    monkeypatch.setenv(LOAD_WHERE_VAR, "HOST")
    assert load_where("stack", LoadRunningStack()) == "host"
    monkeypatch.setenv(LOAD_WHERE_VAR, "stack")
    with pytest.raises(HarnessError, match=r"\$HARNESS_LOAD_IN=stack"):
        load_where("auto", FakeStack())
    monkeypatch.setenv(LOAD_WHERE_VAR, "cloud")
    with pytest.raises(HarnessError, match="'cloud' is not understood"):
        load_where("auto", LoadRunningStack())


def test_load_stage_in_the_stack_writes_no_key_tracks_nothing_and_stops_the_handle(tmp_path: Path) -> None:
    stack = LoadRunningStack("run-s")
    ctx = _ctx(tmp_path, stack, processes=3)
    stage = LoadStage()
    stage.start(ctx)
    ((config, run_dir, workers),) = stack.loads
    assert (run_dir, workers) == (ctx.run_dir, 3)
    assert config.proxy_urls == ctx.endpoints.proxy_urls and config.master_key_file is None   # the stack adapts
    assert config.users == 3
    assert not master_key_file("run-s").exists() and stack.tracked == {}
    assert ctx.meta.data["load_where"] == "stack" and ctx.t_load_start is not None
    assert stage.busy(ctx)
    stack.handle.returncode = 0                              # Locust ended
    assert not stage.busy(ctx)
    stage.stop(ctx)
    assert stack.handle.stops == [None] and ctx.meta.data["load_exit_code"] == 0
    assert "sk-fake-not-a-secret" not in (ctx.run_dir / "meta.json").read_text()


def test_load_stage_on_the_host_when_asked_even_with_a_load_runner(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.load import launch

    started: list[tuple[LoadConfig, int]] = []

    class HostLocust(FakeLoad):
        pid = os.getpid()

    def fake_run_locust(config: LoadConfig, run_dir: Path, processes: int = 1) -> HostLocust:
        started.append((config, processes))
        return HostLocust()

    monkeypatch.setattr(launch, "run_locust", fake_run_locust)
    monkeypatch.setenv(LOAD_WHERE_VAR, "host")
    stack = LoadRunningStack("run-h")
    ctx = _ctx(tmp_path, stack)
    stage = LoadStage()
    stage.start(ctx)
    assert stack.loads == [] and len(started) == 1
    assert started[0][0].master_key_file == str(master_key_file("run-h"))
    assert stack.tracked == {"locust": os.getpid()} and ctx.meta.data["load_where"] == "host"
    stage.stop(ctx)
    assert not master_key_file("run-h").exists()


def test_run_refuses_load_where_stack_on_a_backend_without_it_before_the_run_folder(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text('name: where\nexpect: reproduced\nlitellm: "1.84.0"\nload:\n  where: stack\n')
    out = tmp_path / "results" / "run"
    with pytest.raises(HarnessError, match="cannot run the load itself"):
        run_scenario(path, RunOptions(out=out), Console(file=open(os.devnull, "w")),  # noqa: SIM115
                     stack_factory=lambda backend, name: FakeStack(name))
    assert not out.exists()
