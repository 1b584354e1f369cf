"""The repeats' agreement rule and the gate under starvation (harness/matrix/cells.py, compare.py, results_io)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.analyze.summary import NOT_REPRODUCED, REPRODUCED
from harness.matrix import compare as cmp
from harness.matrix.cells import Cell, gate_exit_code, read_csv
from harness.matrix.execute import CellResult
from harness.matrix.matrix import run_matrix
from harness.results_io.models import cells_results
from tests.matrix.test_matrix import SEED, quiet


def _run(verdict: str, starved: bool | None, k: int = 1, expected: str = "clean") -> CellResult:
    return CellResult("s", "1.108.7", verdict=verdict, expected=expected, starved=starved, repeat=k,
                      phantoms=3 if verdict == REPRODUCED else 0, leaked_usd=0.0)


def test_quiet_repeats_decide_and_starved_ones_are_set_aside() -> None:
    cell = Cell("s", "1.108.7", [_run(NOT_REPRODUCED, False, 1), _run(REPRODUCED, True, 2),
                                 _run(NOT_REPRODUCED, None, 3)])    # None: not recorded, counts as quiet
    assert cell.verdict == NOT_REPRODUCED and cell.matches is True and not cell.starved
    assert [r.repeat for r in cell.set_aside] == [2] and "1 starved repeat(s) set aside: REPRODUCED" in cell.note
    assert gate_exit_code([cell]) == 0


def test_quiet_repeats_that_disagree_are_mixed_and_fail() -> None:
    cell = Cell("s", "1.108.7", [_run(NOT_REPRODUCED, False, 1), _run(REPRODUCED, False, 2)])
    assert cell.verdict.startswith("MIXED") and cell.matches is False and cell.fails_gate
    assert gate_exit_code([cell]) == 1


def test_a_contradiction_seen_only_in_starved_runs_is_not_failed_but_said() -> None:
    cell = Cell("s", "1.108.7", [_run(REPRODUCED, True, 1), _run(REPRODUCED, True, 2)])
    assert cell.verdict == REPRODUCED and cell.matches is False and cell.starved
    assert not cell.fails_gate and gate_exit_code([cell]) == 0
    assert "not judged by the gate" in cell.note
    # a matching starved cell is just that
    ok = Cell("s", "1.84.0", [_run(REPRODUCED, True, expected="reproduced")])
    assert ok.matches is True and ok.note == "every run was starved"


def test_baseline_flip_under_starvation_is_not_a_change() -> None:
    before = [Cell("s", "1.108.7", [_run(NOT_REPRODUCED, False)])]
    starved_after = [Cell("s", "1.108.7", [_run(REPRODUCED, True)])]
    quiet_after = [Cell("s", "1.108.7", [_run(REPRODUCED, False)])]
    (d,) = cmp.compare(before, starved_after)
    assert d.kind == cmp.STARVED and not d.is_change
    (d,) = cmp.compare(before, quiet_after)
    assert d.kind == cmp.FLIP and d.is_change


def test_matrix_md_csv_and_json_say_starved(tmp_path: Path) -> None:
    def runner(scenario_path: Path, version: str, out_dir: Path) -> CellResult:
        out_dir.mkdir(parents=True)
        return CellResult("x", version, verdict=REPRODUCED, phantoms=2, leaked_usd=0.01, starved=True,
                          foreign_cpu_share=0.48)

    res = run_matrix([SEED], ["1.108.7"], runner, tmp_path / "m", quiet(), plot=False)
    assert res.exit_code == 0                                       # seen only under starvation
    md = (tmp_path / "m" / "matrix.md").read_text()
    assert "NOT JUDGED" in md and "rerun them on a quiet machine" in md
    (back,) = read_csv(tmp_path / "m" / "matrix.csv")
    assert back.starved is True and back.foreign_cpu_share == 0.48
    doc = json.loads(cells_results("matrix", res.results, res.exit_code, None).model_dump_json())
    assert doc["cells"][0]["gate"] == "skipped" and doc["cells"][0]["starved"] is True


def test_run_repeat_refuses_stack_options(tmp_path: Path) -> None:
    import pytest

    from harness.errors import HarnessError
    from harness.matrix import repeat_command
    from harness.run.experiment import RunOptions

    with pytest.raises(HarnessError, match="--reuse, --keep and --name do not apply"):
        repeat_command(SEED, 3, RunOptions(reuse=True, out=tmp_path / "r"), quiet())
    assert not (tmp_path / "r").exists()


def test_cli_run_repeat_is_a_one_cell_matrix(tmp_path: Path, monkeypatch: object) -> None:
    import pytest

    import harness.matrix as matrix_pkg
    from harness.run.experiment import RunOptions
    from tests.results_io.test_results_io import invoke

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    seen: list[tuple[int, RunOptions]] = []

    def fake_repeat(scenario: Path, repeat: int, options: RunOptions, console: object) -> object:
        seen.append((repeat, options))

        def runner(scenario_path: Path, version: str, out_dir: Path) -> CellResult:
            out_dir.mkdir(parents=True)
            return CellResult("x", version, verdict=REPRODUCED, phantoms=100, leaked_usd=50.0)
        return run_matrix([SEED], ["1.84.0"], runner, tmp_path / "rep", quiet(), repeat=repeat, plot=False)

    monkeypatch.setattr(matrix_pkg, "repeat_command", fake_repeat)
    result = invoke(["run", str(SEED), "--repeat", "3", "--exclusive", "--exclusive-wait", "5", "--json"])
    doc = json.loads(result.stdout)
    assert result.exit_code == doc["exit_code"] == 0 and doc["command"] == "run-repeat"
    assert [c["repeat"] for c in doc["cells"]] == [1, 2, 3]
    assert seen[0][0] == 3 and seen[0][1].exclusive and seen[0][1].exclusive_wait_s == 5
