"""`harness run … --bisect` (harness/matrix/gitbisect.py): git bisect run's exit codes for every verdict and
status, and their wiring through the command line (run_scenario replaced by a fake: no stack, no build)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import cli
from harness.errors import HarnessError, Interrupted, StackError
from harness.matrix import gitbisect
from harness.run.experiment import RunOptions

REPO = Path(__file__).parents[2]


@pytest.mark.parametrize(("verdict", "code"), [
    ("NOT REPRODUCED", 0), ("REPRODUCED", 1), ("INCONCLUSIVE", 125), (None, 125), ("SOMETHING ELSE", 125)])
def test_each_verdict_maps_to_gits_code_whatever_the_expectation(verdict: str | None, code: int) -> None:
    assert gitbisect.outcome_exit(verdict) == code


@pytest.mark.parametrize(("phantoms", "leaked", "code"), [(0, 0.02, 0), (4, 4.99, 0), (5, 0.0, 1), (0, 5.0, 1),
                                                          (None, None, 0)])
def test_thresholds_count_a_weak_reproduced_as_good(phantoms: int | None, leaked: float | None, code: int) -> None:
    assert gitbisect.outcome_exit("REPRODUCED", phantoms, leaked, min_phantoms=5, min_leaked_usd=5.0) == code
    assert gitbisect.outcome_exit("NOT REPRODUCED", 100, 100.0, min_phantoms=5, min_leaked_usd=5.0) == 0
    assert gitbisect.outcome_exit("INCONCLUSIVE", 100, 100.0, min_phantoms=5, min_leaked_usd=5.0) == 125


def write_verdict(run_dir: Path, verdict: str, expected: str = "reproduced", **numbers: Any) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "verdict.json").write_text(json.dumps({"schema": 2, "verdict": verdict, "summary": {
        "verdict": verdict, "expected": expected, **numbers}}))
    return run_dir


@pytest.mark.parametrize(("verdict", "run_code", "code"), [
    ("NOT REPRODUCED", 1, 0),      # the scenario expected the bug: `harness run` says 1, git bisect reads good
    ("NOT REPRODUCED", 0, 0),
    ("REPRODUCED", 0, 1),          # expected, so `harness run` says 0; for git bisect: bad
    ("REPRODUCED", 1, 1),
    ("INCONCLUSIVE", 1, 125),
    ("REPRODUCED", 130, 130),      # interrupted during the load: the verdict says nothing, the user wants out
])
def test_a_finished_run_is_judged_by_its_verdict_not_its_expectation(tmp_path: Path, verdict: str, run_code: int,
                                                                     code: int) -> None:
    assert gitbisect.run_exit(write_verdict(tmp_path / "run", verdict), run_code) == code


def test_a_run_without_a_readable_verdict_is_skipped(tmp_path: Path) -> None:
    assert gitbisect.run_exit(tmp_path / "nothing", 2) == 125
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "verdict.json").write_text("{not json")
    assert gitbisect.run_exit(tmp_path / "broken", 0) == 125
    assert gitbisect.run_exit(None, 0) == 125


@pytest.mark.parametrize(("code", "final"), [(0, 0), (1, 1), (125, 125), (130, 130), (None, 0), (2, 125),
                                             (3, 125), (126, 125), (127, 125), (128, 125), (137, 125), (255, 125)])
def test_the_process_exits_only_with_0_1_125_or_130(code: int | None, final: int) -> None:
    assert gitbisect.cli_exit(code) == final


# -- through `harness run … --bisect` (in this process, run_scenario faked) --------------------------------
def fake_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             behave: Callable[[Path], int]) -> list[RunOptions]:
    seen: list[RunOptions] = []

    def run_scenario(path: Path, opts: RunOptions, console: Any, on_run_dir: Callable[[Path], None]) -> int:
        seen.append(opts)
        run_dir = tmp_path / "results" / "run-1"
        run_dir.mkdir(parents=True, exist_ok=True)
        on_run_dir(run_dir)
        return behave(run_dir)

    monkeypatch.setattr("harness.run.experiment.run_scenario", run_scenario)
    monkeypatch.setattr(cli.signal, "signal", lambda *args: None)
    return seen


def main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr("sys.argv", ["harness", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert isinstance(info.value.code, int)
    return info.value.code


@pytest.mark.parametrize(("verdict", "analyzer_code", "code", "word"), [
    ("NOT REPRODUCED", 1, 0, "good"), ("REPRODUCED", 0, 1, "bad"), ("INCONCLUSIVE", 1, 125, "skip")])
def test_run_bisect_exits_with_gits_code_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], verdict: str,
                                                      analyzer_code: int, code: int, word: str) -> None:
    seen = fake_run(tmp_path, monkeypatch, lambda d: (write_verdict(d, verdict), analyzer_code)[1])
    assert main(monkeypatch, "run", "scenarios/phantom-budget.yaml", "--litellm", str(tmp_path), "--bisect") == code
    assert seen[0].litellm == str(tmp_path)           # the tree goes to the run as given
    assert f"git bisect: {word} (exit {code}) — {verdict}" in capsys.readouterr().err


def test_run_bisect_thresholds_reach_the_judgement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_run(tmp_path, monkeypatch, lambda d: (write_verdict(d, "REPRODUCED", phantoms=0, leaked_usd=0.02), 0)[1])
    args = ("run", "scenarios/phantom-budget.yaml", "--bisect")
    assert main(monkeypatch, *args) == 1
    assert main(monkeypatch, *args, "--min-phantoms", "5", "--min-leaked", "5") == 0


def test_without_bisect_the_exit_code_is_still_the_expectations(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake_run(tmp_path, monkeypatch, lambda d: (write_verdict(d, "NOT REPRODUCED"), 1)[1])
    assert main(monkeypatch, "run", "scenarios/phantom-budget.yaml") == 1


@pytest.mark.parametrize(("error", "code"), [
    (HarnessError("LiteLLM 1.84.0+tree.abc cannot be installed: uv: error: cargo not found", "see the log"), 125),
    (StackError("replica 0 failed to start", "see proxy-0.log"), 125),
    (RuntimeError("a bug in the harness"), 125),
    (KeyboardInterrupt(), 130),
    (Interrupted("signal 15"), 130),
])
def test_run_bisect_maps_every_failure_to_skip_and_an_interrupt_to_130(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        error: BaseException, code: int) -> None:
    def boom(run_dir: Path) -> int:
        raise error

    fake_run(tmp_path, monkeypatch, boom)
    assert main(monkeypatch, "run", "scenarios/phantom-budget.yaml", "--bisect") == code
    err = capsys.readouterr().err
    if code == 125:
        assert "git bisect: skip (exit 125) — this commit could not be tested" in err


def test_run_bisect_interrupted_during_the_load_stays_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_run(tmp_path, monkeypatch, lambda d: (write_verdict(d, "INCONCLUSIVE"), 130)[1])
    assert main(monkeypatch, "run", "scenarios/phantom-budget.yaml", "--bisect") == 130


def test_bisect_options_that_do_not_fit_are_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_run(tmp_path, monkeypatch, lambda d: pytest.fail("ran"))
    assert main(monkeypatch, "run", "scenarios/phantom-budget.yaml", "--min-phantoms", "5") == 2
    assert main(monkeypatch, "run", "scenarios/phantom-budget.yaml", "--bisect", "--repeat", "3") == 125


@pytest.mark.parametrize(("args", "code", "line"), [
    (["--litellm", "/nonexistent/litellm-1.84.0-py3-none-any.whl"], 2,
     "error: LiteLLM build /nonexistent/litellm-1.84.0-py3-none-any.whl: no such file or folder — pass a release"),
    (["--litellm", "/nonexistent/tree", "--bisect"], 125, "error: LiteLLM build /nonexistent/tree: no such file"),
    (["--replicas", "many", "--bisect"], 125, None),             # a usage error is not "bad" either
])
def test_harness_run_bad_input_is_one_line_no_run_folder_and_125_with_bisect(tmp_path: Path, args: list[str],
                                                                             code: int, line: str | None) -> None:
    env = {**os.environ, "HARNESS_RESULTS_DIR": str(tmp_path / "results"), "HARNESS_STATE_DIR": str(tmp_path / "st"),
           "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "scenarios/phantom-budget.yaml", *args], env=env,
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    if line is not None:
        assert lines[0].startswith(line), proc.stderr
        assert len(lines) == (2 if code == 125 else 1), proc.stderr
    if code == 125:
        assert lines[-1] == "git bisect: skip (exit 125) — this commit could not be tested (harness exit 2)"
    assert not (tmp_path / "results").exists() and not (tmp_path / "st").exists()
