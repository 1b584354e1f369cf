"""The runner's skeleton (harness/run/experiment.py) with tests/conftest.py's FakeStack, fake stages and a fake
clock: stage order, stops on every exit path, the stack down last, meta.json, and no run folder on bad input."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness.errors import HarnessError, Interrupted
from harness.run.context import Clock, RunContext
from harness.run.experiment import RunOptions, run_scenario
from harness.run.progress import PlainProgress, progress_line, progress_table
from harness.run.stages import DrainStage, Stage
from harness.scenario.model import load_scenario
from harness.stack.base import Stack
from tests.conftest import FakeCore, FakeStack

SCENARIO = """\
name: unit-run
expect: reproduced
litellm: "1.84.0"
replicas: 2
load:
  users: 2
  spawn_rate: 2
  duration_s: 3
drain_s: 20
seed: 5
"""


class FakeClock(Clock):
    """Time moves only when someone waits: a 20 s drain takes no time."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class Recorder:
    """One ordered log shared by the stages and the stack, so their relative order can be asserted."""

    def __init__(self) -> None:
        self.events: list[str] = []


class RecordingStack(FakeStack):
    def __init__(self, log: Recorder, name: str = "fake") -> None:
        super().__init__(name)
        self.log = log

    def up(self, spec: Any, console: Console | None = None) -> Any:
        self.log.events.append("stack.up")
        return super().up(spec, console)

    def down(self) -> int:
        self.log.events.append("stack.down")
        return super().down()

    def forget(self) -> None:
        self.log.events.append("stack.forget")
        super().forget()


class FakeStage(Stage):
    def __init__(self, name: str, log: Recorder, *, busy_polls: int = 0, fail_start: bool = False,
                 fail_stop: bool = False, interrupt_at_poll: int | None = None, load: bool = False) -> None:
        self.name = name
        self.log = log
        self.busy_polls = busy_polls
        self.fail_start = fail_start
        self.fail_stop = fail_stop
        self.interrupt_at_poll = interrupt_at_poll
        self.load = load
        self.polls = 0
        self.stopped_with: str | None = None

    def start(self, ctx: RunContext) -> None:
        self.log.events.append(f"{self.name}.start")
        if self.load:
            ctx.load_started()
        if self.fail_start:
            raise RuntimeError(f"{self.name} [broke] on start")

    def busy(self, ctx: RunContext) -> bool:
        self.polls += 1
        if self.interrupt_at_poll is not None and self.polls >= self.interrupt_at_poll:
            raise KeyboardInterrupt
        return self.polls <= self.busy_polls

    def progress(self) -> dict[str, Any]:
        return {"requests": 10 * self.polls, "ok": 9 * self.polls} if self.load else {}

    def stop(self, ctx: RunContext) -> None:
        self.log.events.append(f"{self.name}.stop")
        self.stopped_with = ctx.outcome
        if self.load and ctx.t_load_start is not None:
            ctx.t_load_end = ctx.clock.time()
            ctx.meta.update(t_load_end=ctx.t_load_end)
        if self.fail_stop:
            raise RuntimeError(f"{self.name} broke on stop")


class LoggedDrain(DrainStage):
    def __init__(self, log: Recorder) -> None:
        self.log = log

    def stop(self, ctx: RunContext) -> None:
        self.log.events.append("drain.stop")
        super().stop(ctx)


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "unit-run.yaml"
    path.write_text(SCENARIO)
    return path


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    results = tmp_path / "results"
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(results))
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    return results


class Harness:
    """Runs run_scenario with a recorded stack and stages; keeps what a test asserts on."""

    def __init__(self, tmp_path: Path, stack: FakeCore | None = None) -> None:
        self.log = Recorder()
        self.stack: FakeCore = stack if stack is not None else RecordingStack(self.log)
        self.clock = FakeClock()
        self.out = tmp_path / "run"
        self.buffer = io.StringIO()
        self.console = Console(file=self.buffer, width=80)
        self.analyzed: list[Path] = []
        self.factory_calls: list[tuple[str, str]] = []

    def factory(self, backend: str, name: str) -> Stack:
        self.factory_calls.append((backend, name))
        self.stack.name = name
        return self.stack

    def analyzer(self, run_dir: Path, console: Console) -> int:
        self.log.events.append("analyze")
        self.analyzed.append(run_dir)
        return 7

    def run(self, path: Path, stages: Callable[[], list[Stage]], **opts: Any) -> int:
        options = RunOptions(out=opts.pop("out", self.out), **opts)
        return run_scenario(path, options, self.console, stack_factory=self.factory, stages=stages,
                            clock=self.clock, analyzer=self.analyzer)

    def meta(self) -> dict[str, Any]:
        return json.loads((self.out / "meta.json").read_text())


def _stages(log: Recorder, **load: Any) -> list[Stage]:
    return [FakeStage("budgets", log), FakeStage("sampler", log), LoggedDrain(log), FakeStage("cpu", log),
            FakeStage("nemesis", log), FakeStage("load", log, load=True, **load)]


def test_a_normal_run_starts_in_order_stops_in_reverse_then_stack_down_then_analysis(
        scenario_file: Path, tmp_path: Path) -> None:
    h = Harness(tmp_path)
    stages = _stages(h.log, busy_polls=3)
    assert h.run(scenario_file, lambda: stages) == 7
    assert h.log.events == ["stack.up", "budgets.start", "sampler.start", "cpu.start", "nemesis.start",
                            "load.start", "load.stop", "nemesis.stop", "cpu.stop", "drain.stop", "sampler.stop",
                            "budgets.stop", "stack.down", "stack.forget", "analyze"]
    assert h.analyzed == [h.out.resolve()]
    assert all(s.stopped_with == "running" for s in stages if isinstance(s, FakeStage))
    assert h.stack.name.startswith("run-") and h.factory_calls == [("local", h.stack.name)]

    meta = h.meta()
    assert meta["status"] == "done"
    assert [s for _, s in meta["status_history"]] == ["starting", "stack up", "load", "drain", "done"]
    # what the stack knows about itself comes from facts(), whatever the backend
    assert (meta["redis_version"], meta["postgres_version"], meta["timings"]) == ("7.0.15", "15.18", {"up": 0.1})
    assert meta["processes"] == [{"name": "fake", "pid": 1, "port": None, "rss_mb": 0.0, "alive": True}]
    assert "master_key" not in meta["endpoints"] and meta["endpoints"]["version"] == "1.84.0"
    assert (meta["scenario"], meta["litellm_version"], meta["seed"], meta["stack"]) == (
        "unit-run", "1.84.0", 5, h.stack.name)
    # the load ran for 3 polls of 0.5 s, then the drain waited drain_s after the load's end
    assert meta["t_load_end"] - meta["t_load_start"] == pytest.approx(1.5)
    assert meta["t_drain_end"] - meta["t_load_end"] == pytest.approx(20.0)
    assert meta["t_finished"] >= meta["t_drain_end"]
    assert "sk-fake-not-a-secret" not in (h.out / "meta.json").read_text()
    assert (h.out / "scenario.yaml").exists()


def test_a_stage_failing_to_start_stops_what_started_and_the_stack_and_says_what_failed(
        scenario_file: Path, tmp_path: Path) -> None:
    h = Harness(tmp_path)
    stages: list[Stage] = [FakeStage("budgets", h.log), FakeStage("sampler", h.log), LoggedDrain(h.log),
                           FakeStage("cpu", h.log), FakeStage("nemesis", h.log, fail_start=True),
                           FakeStage("load", h.log, load=True, busy_polls=3)]
    with pytest.raises(RuntimeError, match="nemesis"):
        h.run(scenario_file, lambda: stages)
    assert h.log.events == ["stack.up", "budgets.start", "sampler.start", "cpu.start", "nemesis.start",
                            # the failing stage is stopped too (its start may have begun something)
                            "nemesis.stop", "cpu.stop", "drain.stop", "sampler.stop", "budgets.stop", "stack.down",
                            "stack.forget"]
    meta = h.meta()
    assert meta["status"] == "failed" and meta["failed_at"] == "nemesis.start"
    assert meta["error"] == "RuntimeError: nemesis [broke] on start"
    assert "drain" not in [s for _, s in meta["status_history"]]       # no load ran: nothing to drain
    assert "t_drain_end" not in meta and "t_finished" in meta
    assert meta["processes"]            # figures still collected before the stack went down
    assert h.analyzed == []
    assert "nemesis.start failed" in h.buffer.getvalue()


def test_ctrl_c_mid_load_stops_everything_still_drains_and_analyses(scenario_file: Path, tmp_path: Path) -> None:
    h = Harness(tmp_path)
    stages = _stages(h.log, busy_polls=100, interrupt_at_poll=3)
    assert h.run(scenario_file, lambda: stages) == 130        # not the analysis' 7: the run did not finish
    assert h.analyzed == [h.out]                                 # but its report was written
    stops = [e for e in h.log.events if e.endswith(".stop")]
    assert stops == ["load.stop", "nemesis.stop", "cpu.stop", "drain.stop", "sampler.stop", "budgets.stop"]
    assert h.log.events[-3:] == ["stack.down", "stack.forget", "analyze"]
    meta = h.meta()
    assert meta["status"] == "interrupted"
    assert [s for _, s in meta["status_history"]] == ["starting", "stack up", "load", "interrupted", "drain",
                                                       "interrupted"]
    assert meta["t_drain_end"] - meta["t_load_end"] == pytest.approx(20.0)    # the drain still ran in full
    assert all(s.stopped_with == "interrupted" for s in stages if isinstance(s, FakeStage))


def test_ctrl_c_before_the_load_stops_the_stack_and_is_raised(scenario_file: Path, tmp_path: Path) -> None:
    h = Harness(tmp_path)

    class Interrupting(FakeStage):
        def start(self, ctx: RunContext) -> None:
            super().start(ctx)
            raise Interrupted("signal 15")

    stages: list[Stage] = [FakeStage("budgets", h.log), Interrupting("sampler", h.log), LoggedDrain(h.log)]
    with pytest.raises(Interrupted):
        h.run(scenario_file, lambda: stages)
    assert h.log.events == ["stack.up", "budgets.start", "sampler.start", "sampler.stop", "budgets.stop",
                            "stack.down", "stack.forget"]
    assert h.meta()["status"] == "interrupted" and h.analyzed == []


def test_a_failing_stop_does_not_skip_the_other_stops_and_fails_the_run(scenario_file: Path, tmp_path: Path) -> None:
    h = Harness(tmp_path)
    stages: list[Stage] = [FakeStage("sampler", h.log), FakeStage("nemesis", h.log, fail_stop=True),
                           FakeStage("load", h.log, load=True, busy_polls=1)]
    with pytest.raises(RuntimeError, match="nemesis broke on stop"):
        h.run(scenario_file, lambda: stages)
    assert [e for e in h.log.events if e.endswith(".stop")] == ["load.stop", "nemesis.stop", "sampler.stop"]
    assert h.log.events[-2:] == ["stack.down", "stack.forget"]
    meta = h.meta()
    assert (meta["status"], meta["failed_at"]) == ("failed", "nemesis.stop")
    assert meta["stop_errors"] == ["nemesis.stop: RuntimeError: nemesis broke on stop"]


def test_stack_up_failing_takes_the_stack_down_and_says_so(scenario_file: Path, tmp_path: Path) -> None:
    log = Recorder()
    stack = RecordingStack(log)
    stack.up_error = HarnessError("replica 0 exited during start-up", "see proxy-0.log")
    h = Harness(tmp_path, stack)
    h.log = log
    with pytest.raises(HarnessError, match="replica 0 exited"):
        h.run(scenario_file, lambda: _stages(log))
    assert log.events == ["stack.up", "stack.down", "stack.forget"]
    meta = h.meta()
    assert (meta["status"], meta["failed_at"]) == ("failed", "stack.up")
    assert "replica 0 exited during start-up" in meta["error"]


def test_keep_leaves_the_stack_running(scenario_file: Path, tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.run(scenario_file, lambda: _stages(h.log, busy_polls=1), keep=True, stack_name="kept")
    assert "stack.down" not in h.log.events and h.stack.is_running()
    assert "left running" in h.buffer.getvalue() and h.meta()["status"] == "done"


def test_reuse_runs_on_the_running_stack_and_leaves_it_up(scenario_file: Path, tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.stack.up(load_spec(scenario_file))
    h.log.events.clear()
    h.run(scenario_file, lambda: _stages(h.log, busy_polls=1), reuse=True)
    assert h.factory_calls == [("local", "default")]
    assert "stack.up" not in h.log.events and "stack.down" not in h.log.events and h.stack.is_running()
    meta = h.meta()
    assert meta["status"] == "done" and meta["redis_version"] == "7.0.15" and "t_stack_up" not in meta


def load_spec(path: Path) -> Any:
    from harness.stack.base import StackSpec

    return StackSpec.from_scenario(load_scenario(path))


# -- bad input: HarnessError, nothing started, NO run folder ------------------------------------------------
def _nothing_created(h: Harness, results: Path) -> None:
    assert not h.out.exists()
    assert not results.exists() or not any(results.iterdir())
    assert "stack.up" not in h.log.events and h.log.events == []


def test_reuse_without_a_running_stack_creates_no_run_folder(scenario_file: Path, tmp_path: Path,
                                                             isolated_dirs: Path) -> None:
    h = Harness(tmp_path)
    with pytest.raises(HarnessError, match="--reuse: no running fake stack named 'default'"):
        h.run(scenario_file, lambda: _stages(h.log), reuse=True, out=None)
    _nothing_created(h, isolated_dirs)
    assert h.stack.names() == []           # not even forget(): the named stack is not ours


def test_reuse_of_a_stack_on_another_version_creates_no_run_folder(scenario_file: Path, tmp_path: Path,
                                                                   isolated_dirs: Path) -> None:
    h = Harness(tmp_path)
    spec = load_spec(scenario_file)
    spec.version = "1.108.7"
    h.stack.up(spec)
    h.log.events.clear()
    with pytest.raises(HarnessError, match="running stack is LiteLLM 1.108.7"):
        h.run(scenario_file, lambda: _stages(h.log), reuse=True, out=None)
    _nothing_created(h, isolated_dirs)


def test_a_fault_the_backend_cannot_do_creates_no_run_folder(tmp_path: Path, isolated_dirs: Path) -> None:
    path = tmp_path / "kill.yaml"
    path.write_text(SCENARIO + "faults:\n  - {kind: kill_replica, target: 1, at_s: 1, duration_s: 1}\n")
    core = FakeStack.core_only()
    h = Harness(tmp_path, core)
    with pytest.raises(HarnessError, match=r"faults\.0.*kill_replica.*ReplicaControl") as info:
        h.run(path, lambda: _stages(h.log), out=None)
    assert info.value.fix
    _nothing_created(h, isolated_dirs)
    assert core.names() == [("forget", ())]     # the unstarted stack's state (if any) is cleaned up


def test_a_backend_that_cannot_start_here_creates_no_run_folder(scenario_file: Path, tmp_path: Path,
                                                                isolated_dirs: Path) -> None:
    h = Harness(tmp_path)
    h.stack.preflight_error = HarnessError("no Docker engine answers at unix:///x.sock", "start Docker")
    with pytest.raises(HarnessError, match="no Docker engine"):
        h.run(scenario_file, lambda: _stages(h.log), out=None)
    assert not h.out.exists() and (not isolated_dirs.exists() or not any(isolated_dirs.iterdir()))
    assert [n for n, _ in h.stack.names()] == ["preflight", "forget"]    # never up, no stage started


def test_compose_with_no_docker_engine_exits_2_in_one_line_before_the_run_folder_exists(
        scenario_file: Path, tmp_path: Path, isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The real ComposeStack whose Docker SDK client cannot be made (what docker.from_env raises on a machine with
    no engine becomes no_engine_error()), through `harness run … --backend compose` in this process."""
    from harness import cli
    from harness.stack import backends
    from harness.stack.compose import ComposeStack
    from harness.stack.compose.stack import no_engine_error

    made: list[ComposeStack] = []

    def no_engine() -> Any:
        raise no_engine_error()

    def compose(name: str) -> Stack:
        made.append(ComposeStack(name, client_factory=no_engine, runner=lambda cmd: pytest.fail(f"ran {cmd}")))
        return made[-1]

    monkeypatch.setitem(backends.BACKENDS, "compose", backends.Backend("compose", compose,
                                                                       backends.BACKENDS["compose"].state_files))
    monkeypatch.setattr(cli.signal, "signal", lambda *args: None)     # main() would install a SIGTERM handler
    monkeypatch.setattr("sys.argv", ["harness", "run", str(scenario_file), "--backend", "compose"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no Docker engine answers at "), err
    assert len(made) == 1 and made[0].name.startswith("run-")
    assert not isolated_dirs.exists()                                 # results/: no run folder at all
    state = tmp_path / "state"
    assert not state.exists() or not any(state.iterdir())             # nor a state folder for the stack


@pytest.mark.parametrize(("override", "message"), [
    ({"backend": "external"}, "--backend external needs a target file"),
    ({"backend": "kubernetes"}, "backend"),
    ({"litellm": "1.2.3"}, "older than the harness can drive"),
])
def test_bad_backend_or_version_creates_no_run_folder(scenario_file: Path, tmp_path: Path, isolated_dirs: Path,
                                                      override: dict[str, str], message: str) -> None:
    from harness.stack.backends import make_stack

    h = Harness(tmp_path)
    opts = RunOptions(out=None, **override)   # type: ignore[arg-type]
    with pytest.raises(HarnessError, match=message):
        run_scenario(scenario_file, opts, h.console, stack_factory=make_stack, stages=lambda: _stages(h.log),
                     clock=h.clock, analyzer=h.analyzer)
    _nothing_created(h, isolated_dirs)
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())


def test_a_bad_scenario_file_creates_no_run_folder(tmp_path: Path, isolated_dirs: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(SCENARIO + "drian_s: 5\n")
    h = Harness(tmp_path)
    with pytest.raises(HarnessError, match="drian_s"):
        h.run(path, lambda: _stages(h.log), out=None)
    _nothing_created(h, isolated_dirs)
    assert h.factory_calls == []


def test_a_non_empty_out_folder_is_refused_before_anything_starts(scenario_file: Path, tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.out.mkdir()
    (h.out / "old.txt").write_text("x")
    with pytest.raises(HarnessError, match="exists and is not empty"):
        h.run(scenario_file, lambda: _stages(h.log))
    assert sorted(p.name for p in h.out.iterdir()) == ["old.txt"] and h.log.events == []


# -- the live table at 80 columns in a non-terminal ----------------------------------------------------------
def _render(width: int, name: str = "phantom-budget", **stats: Any) -> list[str]:
    scenario = load_scenario(Path(__file__).parents[2] / "scenarios" / "phantom-budget.yaml")
    scenario.name = name
    buf = io.StringIO()
    Console(file=buf, width=width).print(progress_table(scenario, "load", 12.4, 60, stats))
    return buf.getvalue().splitlines()


def test_the_live_table_fits_80_columns_without_wrapping() -> None:
    lines = _render(80, requests=1_234_567, ok=1_200_000, budget_rejections=34_000, errors=567,
                    max_counter_minus_db=1234.5678)
    assert len(lines) == 4                                   # one line per fact: nothing wrapped
    assert all(len(line.rstrip()) <= 80 for line in lines)
    assert lines[0].split() == ["run", "phantom-budget", "·", "LiteLLM", "1.84.0", "×", "4"]
    assert lines[1].split() == ["load", "12", "s", "of", "60", "s"]
    assert lines[2].split() == ["requests", "1,234,567", "·", "ok", "1,200,000", "·", "budget", "rejections",
                                "34,000", "·", "errors", "567"]
    assert lines[3].startswith("gap      $1,234.5678 largest Redis counter − DB spend")


def test_a_line_too_long_for_the_console_is_cut_never_wrapped_mid_word() -> None:
    lines = _render(60, name="a-very-long-scenario-name-that-goes-on-and-on-and-on-and-on")
    assert len(lines) == 4 and all(len(line.rstrip()) <= 60 for line in lines)
    assert lines[0].rstrip().endswith("…")


def _progress_lines(out: list[str], phase: str) -> list[tuple[float, float, int | None]]:
    """(elapsed, planned, requests) of each plain progress line of `phase` in a log."""
    found = []
    for line in out:
        m = re.fullmatch(rf"\[unit-run · LiteLLM 1\.84\.0 × 2\] {phase} (\d+) s of (\d+) s(?: · requests (\d+) · ok "
                         r"\d+ · budget rejections \d+ · errors \d+)?", line)
        if m:
            found.append((float(m.group(1)), float(m.group(2)), None if m.group(3) is None else int(m.group(3))))
    return found


def test_in_a_log_the_run_prints_a_plain_progress_line_every_few_seconds(scenario_file: Path,
                                                                          tmp_path: Path) -> None:
    h = Harness(tmp_path)             # a StringIO console: not a terminal, as in CI
    assert not h.console.is_terminal
    h.run(scenario_file, lambda: _stages(h.log, busy_polls=25))      # 26 polls of 0.5 s on the fake clock
    out = h.buffer.getvalue().splitlines()
    # at the start, every 5 s of (fake) time while the load runs, and the final figures when it ends
    assert _progress_lines(out, "load") == [(0, 3, 0), (5, 3, 110), (10, 3, 210)]
    assert _progress_lines(out, "load ended") == [(12, 3, 260)]
    # the drain says so every 5 s too (not at its start: "draining for …" just said it)
    assert _progress_lines(out, "drain") == [(5, 20, None), (10, 20, None), (15, 20, None)]
    drain_at = out.index("draining for 20 s (sampling continues) …")
    assert out.index(next(line for line in out if " load ended " in line)) < drain_at
    assert not any("\x1b[" in line for line in out)                 # no escape codes in a log
    assert not any(re.match(r"gap\s|run\s+unit-run", line) for line in out)   # and no table at the end


def test_in_a_terminal_the_live_table_is_drawn_not_plain_lines(scenario_file: Path, tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.console = Console(file=h.buffer, width=80, force_terminal=True)
    h.run(scenario_file, lambda: _stages(h.log, busy_polls=25))
    text = h.buffer.getvalue()
    assert "budget rejections" in text and "\x1b[" in text             # the table, redrawn in place
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).splitlines()
    assert not _progress_lines(plain, "load") and not _progress_lines(plain, "drain")


def test_plain_progress_prints_at_most_once_per_interval_on_the_fake_clock() -> None:
    clock = FakeClock()
    buf = io.StringIO()
    progress = PlainProgress(Console(file=buf, width=40), clock, every_s=5.0)
    printed = []
    for i in range(40):                                  # 20 s in steps of 0.5 s
        printed.append(progress.tick(lambda i=i: f"tick {i} " + "x" * 60))
        clock.sleep(0.5)
    assert [i for i, p in enumerate(printed) if p] == [0, 10, 20, 30]
    assert progress.tick(lambda: "final", force=True)
    lines = buf.getvalue().splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["tick", "0"], ["tick", "10"], ["tick", "20"], ["tick", "30"]]
    assert lines[-1] == "final" and all(len(line) > 40 for line in lines[:-1])     # never wrapped at 40 columns
    quiet = PlainProgress(Console(file=io.StringIO()), clock, every_s=5.0, quiet_first=True)
    assert not quiet.tick(lambda: "now") and (clock.sleep(5.0) or quiet.tick(lambda: "later"))


def test_the_plain_line_names_phase_clock_requests_and_rejections() -> None:
    scenario = load_scenario(Path(__file__).parents[2] / "scenarios" / "phantom-budget.yaml")
    line = progress_line(scenario, "load", 12.4, 45, {"requests": 1234, "ok": 1000, "budget_rejections": 200,
                                                      "errors": 34, "max_counter_minus_db": 1234.5})
    assert line == ("[phantom-budget · LiteLLM 1.84.0 × 4] load 12 s of 45 s · requests 1,234 · ok 1,000 · budget "
                    "rejections 200 · errors 34 · largest counter − DB $1,234.50")
    assert progress_line(scenario, "drain", 3, 25) == "[phantom-budget · LiteLLM 1.84.0 × 4] drain 3 s of 25 s"


# -- the command line: exit 2, one line, nothing left behind --------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--backend", "external"], "error: --backend external needs a target file — pass --target target.yaml"),
    (["--reuse", "--name", "nothing-here"], "error: --reuse: no running local stack named 'nothing-here'"),
    (["--backend", "compose"], "error: no Docker engine answers at unix:///nonexistent/docker.sock"),
])
def test_harness_run_refuses_bad_input_with_one_line_and_no_run_folder(scenario_file: Path, tmp_path: Path,
                                                                       args: list[str], message: str) -> None:
    import subprocess
    import sys

    env = {**os.environ, "HARNESS_RESULTS_DIR": str(tmp_path / "results"), "HARNESS_STATE_DIR": str(tmp_path / "st"),
           "COLUMNS": "80", "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(scenario_file), *args], env=env,
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "st").exists() or not any((tmp_path / "st").iterdir())
