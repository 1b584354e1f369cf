"""Version matrix, release gate and baseline comparison, driven by a fake runner (no stack)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from harness.analyze.summary import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from harness.errors import HarnessError
from harness.matrix import compare as cmp
from harness.matrix.cells import Cell, group, read_csv
from harness.matrix.execute import (
    ERROR,
    UNINSTALLABLE,
    CellResult,
    RealRunner,
    latency_percentiles,
    read_run_folder,
)
from harness.matrix.matrix import parse_versions, rerender, run_matrix
from tests.conftest import resolver_uv

SEED = Path(__file__).resolve().parents[2] / "scenarios" / "phantom-budget.yaml"
VERSIONS = ["1.83.14", "1.84.0", "1.89.1", "1.90.0", "1.108.7"]
BUGGY = {"1.84.0", "1.89.1", "1.90.0"}


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), width=120)  # noqa: SIM115 - closed with the process


class FakeRunner:
    """Outcome by version; records every call and how many CSV rows existed when it was called."""

    def __init__(self, outcome: Callable[[str, int], CellResult] | None = None) -> None:
        self.calls: list[tuple[str, str, Path]] = []
        self.csv_rows_seen: list[int] = []
        self.outcome = outcome or self.default

    @staticmethod
    def default(version: str, n: int) -> CellResult:
        buggy = version in BUGGY
        return CellResult("ignored", version, verdict=REPRODUCED if buggy else NOT_REPRODUCED,
                          phantoms=480 + n if buggy else 0, leaked_usd=2140.0 + n if buggy else 0.0,
                          max_inflation_usd=2470.0 if buggy else 0.05, req_per_s=30.0, p50_s=1.2, p99_s=4.0,
                          wall_s=140.0)

    def __call__(self, scenario_path: Path, version: str, out_dir: Path) -> CellResult:
        csv_path = out_dir.parents[1] / "matrix.csv"
        self.csv_rows_seen.append(len(read_csv(csv_path)) if csv_path.exists() else 0)
        self.calls.append((scenario_path.name, version, out_dir))
        out_dir.mkdir(parents=True)
        return self.outcome(version, len(self.calls))


def test_every_cell_runs_in_order_and_the_gate_passes(tmp_path: Path) -> None:
    runner = FakeRunner()
    res = run_matrix([SEED], VERSIONS, runner, tmp_path / "m", quiet())
    assert res.exit_code == 0
    assert [v for _, v, _ in runner.calls] == VERSIONS
    # each run folder lives inside the matrix folder
    assert all(out == tmp_path / "m" / "runs" / f"phantom-budget-{v}" for (_, v, out) in runner.calls)
    # matrix.csv is appended as each cell finishes
    assert runner.csv_rows_seen == [0, 1, 2, 3, 4]
    rows = list(csv.DictReader((tmp_path / "m" / "matrix.csv").open()))
    assert [r["version"] for r in rows] == VERSIONS
    assert {r["match"] for r in rows} == {"yes"}
    assert rows[0]["expected"] == "clean" and rows[1]["expected"] == "reproduced"
    assert rows[1]["run_dir"] == "runs/phantom-budget-1.84.0"
    md = (tmp_path / "m" / "matrix.md").read_text()
    assert "**PASS**" in md
    assert "[phantom-budget-1.84.0](runs/phantom-budget-1.84.0/report.md)" in md
    assert "| phantom-budget | 1.84.0 | **REPRODUCED** | reproduced | ✅ yes | 482 |" in md
    png = (tmp_path / "m" / "summary.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert json.loads((tmp_path / "m" / "matrix.json").read_text())["versions"] == VERSIONS


def test_a_contradicting_cell_fails_the_gate(tmp_path: Path) -> None:
    def fixed_too_early(version: str, n: int) -> CellResult:   # 1.90.0 suddenly clean: expected reproduced
        r = FakeRunner.default(version, n)
        if version == "1.90.0":
            r.verdict, r.phantoms, r.leaked_usd = NOT_REPRODUCED, 0, 0.0
        return r

    res = run_matrix([SEED], VERSIONS, FakeRunner(fixed_too_early), tmp_path / "m", quiet())
    assert res.exit_code == 1
    md = (tmp_path / "m" / "matrix.md").read_text()
    assert "**FAIL** (exit 1): 1 cell(s) contradict" in md
    assert "phantom-budget × 1.90.0 (NOT REPRODUCED, expected reproduced)" in md


@pytest.mark.parametrize(("status", "verdict", "exit_code", "match"), [
    (UNINSTALLABLE, None, 0, "n/a"),      # cannot be tested: reported, not a contradiction
    ("ok", INCONCLUSIVE, 1, "no"),       # decided nothing: a gate cannot pass it
    (ERROR, None, 1, "no"),              # the stack did not come up
])
def test_cells_that_decide_nothing(tmp_path: Path, status: str, verdict: str | None, exit_code: int,
                                   match: str) -> None:
    def broken(version: str, n: int) -> CellResult:
        if version == "1.89.1":
            return CellResult("x", version, status=status, verdict=verdict, reason="why: because")
        return FakeRunner.default(version, n)

    runner = FakeRunner(broken)
    res = run_matrix([SEED], VERSIONS, runner, tmp_path / "m", quiet())
    assert res.exit_code == exit_code
    assert len(runner.calls) == 5          # the matrix went on after the broken cell
    row = next(r for r in csv.DictReader((tmp_path / "m" / "matrix.csv").open()) if r["version"] == "1.89.1")
    assert row["match"] == match and row["reason"] == "why: because"
    assert "- phantom-budget × 1.89.1" in (tmp_path / "m" / "matrix.md").read_text()


def test_repeats_show_median_and_range(tmp_path: Path) -> None:
    runner = FakeRunner()
    res = run_matrix([SEED], ["1.84.0", "1.108.7"], runner, tmp_path / "m", quiet(), repeat=3)
    assert [out.name for _, _, out in runner.calls][:3] == [f"phantom-budget-1.84.0-r{k}" for k in (1, 2, 3)]
    cell = res.cells[0]
    assert cell.values("phantoms") == [481.0, 482.0, 483.0]
    assert cell.spread("phantoms") == 2.0
    md = (tmp_path / "m" / "matrix.md").read_text()
    assert "| 482 (481–483) |" in md
    assert "[#1](runs/phantom-budget-1.84.0-r1/report.md) [#2]" in md


def test_two_scenarios_and_an_unsupported_one(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(f"extends: {SEED}\nname: other\nexpect: clean\n")
    runner = FakeRunner()
    res = run_matrix([SEED, other], ["1.84.0", "1.108.7"], runner, tmp_path / "m", quiet())
    assert [(s, v) for s, v, _ in runner.calls] == [("phantom-budget.yaml", "1.84.0"),
                                                   ("phantom-budget.yaml", "1.108.7"),
                                                   ("other.yaml", "1.84.0"), ("other.yaml", "1.108.7")]
    assert res.exit_code == 1           # `other` expects clean everywhere; 1.84.0 reproduces
    assert (tmp_path / "m" / "summary.png").exists()


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not a version"):
        parse_versions("1.84.0,banana")
    assert parse_versions(" 1.84.0, 1.108.7 1.84.0") == ["1.84.0", "1.108.7"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    runner = FakeRunner()
    with pytest.raises(HarnessError):
        run_matrix([bad], ["1.84.0"], runner, tmp_path / "m", quiet())
    assert runner.calls == []          # nothing ran
    with pytest.raises(HarnessError, match="no matrix.csv"):
        run_matrix([SEED], ["1.84.0"], runner, tmp_path / "m2", quiet(), baseline=tmp_path / "nowhere")


# -- baseline comparison ---------------------------------------------------------------------------
def _cell(version: str, verdict: str, phantoms: list[int], leaked: list[float]) -> Cell:
    return Cell("s", version, [CellResult("s", version, verdict=verdict, phantoms=p, leaked_usd=lk, repeat=k)
                               for k, (p, lk) in enumerate(zip(phantoms, leaked, strict=True), 1)])


def test_comparison_noise_band_from_repeats() -> None:
    before = [_cell("1.84.0", REPRODUCED, [400, 500, 450], [2000, 2300, 2100]),
              _cell("1.90.0", REPRODUCED, [300, 310, 305], [1500, 1510, 1505]),
              _cell("1.108.7", NOT_REPRODUCED, [0, 0, 0], [0, 0, 0]),
              _cell("1.89.1", REPRODUCED, [400], [2000])]
    after = [_cell("1.84.0", REPRODUCED, [380, 520, 470], [1950, 2250, 2200]),   # inside the spread: noise
             _cell("1.90.0", REPRODUCED, [100, 110, 105], [500, 520, 510]),      # far outside: changed
             _cell("1.108.7", REPRODUCED, [3, 2, 4], [0.5, 0.4, 0.6]),           # small numbers, but a flip
             _cell("1.95.1", NOT_REPRODUCED, [0], [0])]                          # new
    deltas = {d.version: d for d in cmp.compare(before, after)}
    assert deltas["1.84.0"].kind == cmp.NOISE and not deltas["1.84.0"].is_change
    assert deltas["1.90.0"].kind == cmp.CHANGED
    changed = {d.metric.name for d in deltas["1.90.0"].deltas if d.changed}
    assert changed == {"phantoms", "leaked_usd"}
    assert deltas["1.108.7"].kind == cmp.FLIP
    assert deltas["1.95.1"].kind == cmp.NEW
    assert deltas["1.89.1"].kind == cmp.GONE


def test_comparison_without_repeats_uses_the_relative_floor() -> None:
    before = [_cell("1.84.0", REPRODUCED, [480], [2100.0])]
    assert cmp.compare(before, [_cell("1.84.0", REPRODUCED, [560], [2400.0])])[0].kind == cmp.NOISE  # < 25 %
    assert cmp.compare(before, [_cell("1.84.0", REPRODUCED, [200], [2100.0])])[0].kind == cmp.CHANGED
    clean = [_cell("1.108.7", NOT_REPRODUCED, [0], [0.0])]
    assert cmp.compare(clean, [_cell("1.108.7", NOT_REPRODUCED, [3], [0.4])])[0].kind == cmp.NOISE  # abs floor


def test_baseline_matrix_writes_comparison_md(tmp_path: Path) -> None:
    run_matrix([SEED], VERSIONS, FakeRunner(), tmp_path / "base", quiet(), repeat=2)

    def regressed(version: str, n: int) -> CellResult:
        r = FakeRunner.default(version, n)
        if version == "1.108.7":
            r.verdict, r.phantoms, r.leaked_usd = REPRODUCED, 50, 300.0
        return r

    res = run_matrix([SEED], VERSIONS, FakeRunner(regressed), tmp_path / "now", quiet(), repeat=2,
                     baseline=tmp_path / "base")
    assert res.exit_code == 1
    kinds = {d.version: d.kind for d in res.deltas}
    assert kinds == {"1.83.14": cmp.NOISE, "1.84.0": cmp.NOISE, "1.89.1": cmp.NOISE, "1.90.0": cmp.NOISE,
                     "1.108.7": cmp.FLIP}
    text = (tmp_path / "now" / "comparison.md").read_text()
    assert "1 of 5 cell(s) changed beyond noise" in text
    assert "| phantom-budget | 1.108.7 | **verdict flip** | NOT REPRODUCED → REPRODUCED" in text
    assert "comparison.md" in (tmp_path / "now" / "matrix.md").read_text()


def test_rerender_from_csv(tmp_path: Path) -> None:
    run_matrix([SEED], VERSIONS, FakeRunner(), tmp_path / "m", quiet(), plot=False)
    assert not (tmp_path / "m" / "summary.png").exists()
    assert rerender(tmp_path / "m") == 0
    assert (tmp_path / "m" / "summary.png").exists()
    assert "![summary](summary.png)" in (tmp_path / "m" / "matrix.md").read_text()


def test_csv_round_trip(tmp_path: Path) -> None:
    run_matrix([SEED], ["1.84.0"], FakeRunner(), tmp_path / "m", quiet(), plot=False)
    (back,) = read_csv(tmp_path / "m" / "matrix.csv")
    assert back.phantoms == 481 and back.leaked_usd == 2141.0 and back.p99_s == 4.0
    assert back.matches is True and back.outcome == "reproduced" and back.leaked_users is None
    assert group([back])[0].verdict == REPRODUCED


# -- the real runner's plumbing (no stack) ----------------------------------------------------------
def _run_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    verdict = {"verdict": REPRODUCED, "expected": "reproduced", "reasons": ["485 phantom budget rejection(s)"],
               "time": {"load_s": 50.0}, "requests": {"total": 1500},
               "phantom": {"count": 485, "affected_end_users": 25},
               "inflation": {"total_max_counter_minus_true_high": {"value": 2473.0, "t": 45.0},
                             "user_max_counter_minus_true_high": {"value": 75.7, "t": 21.0, "end_user": "eu-1"}},
               "drain": {"ran": True, "leaked_total": 2142.9, "leaked_users": 97}}
    (path / "verdict.json").write_text(json.dumps(verdict))
    lines = ["t_start,t_end,end_user,replica,stream,disconnect_after,disconnected,chunks,status,error_type,"
             "error_text,latency_s,attempt,request_id"]
    lines += [f"0,1,eu-1,0,1,,0,12,200,,,{i / 100:.2f},0,r{i}" for i in range(1, 101)]
    lines += ["0,1,eu-1,0,1,,0,0,400,http_error,\"Budget has been exceeded!, x\",9.0,0,rb"]
    (path / "requests.csv").write_text("\n".join(lines) + "\n")
    return path


def test_read_run_folder(tmp_path: Path) -> None:
    cell = read_run_folder(CellResult("s", "1.84.0"), _run_folder(tmp_path / "run"))
    assert (cell.verdict, cell.phantoms, cell.phantom_users, cell.leaked_usd, cell.leaked_users) == (
        REPRODUCED, 485, 25, 2142.9, 97)
    assert cell.max_inflation_usd == 2473.0 and cell.user_max_inflation_usd == 75.7
    assert cell.req_per_s == 30.0
    assert cell.p50_s == pytest.approx(0.505) and cell.p99_s == pytest.approx(0.9901)   # the 400 is ignored
    assert latency_percentiles(tmp_path / "missing.csv") == (None, None)


def test_real_runner_marks_a_release_the_index_cannot_install_uninstallable_with_uvs_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No wall before the install: the real ensure() runs uv (a fake here) and its resolver sentence is the reason."""
    from harness.litellm import env as litellm_env

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HARNESS_PRISMA_ENGINE", raising=False)
    fake_uv = resolver_uv(
        tmp_path, "  × No solution found when resolving dependencies:",
        "  ╰─▶ Because there is no version of litellm[proxy]==9.9.9 and you require litellm[proxy]==9.9.9,",
        "      we can conclude that your requirements are unsatisfiable.")
    monkeypatch.setattr(litellm_env._Builder, "_uv", lambda self: str(fake_uv))
    cell = RealRunner(quiet(), retry_errors=0)(SEED, "9.9.9", tmp_path / "run")
    assert cell.status == UNINSTALLABLE and cell.matches is None
    assert cell.reason.startswith("LiteLLM 9.9.9 cannot be installed: uv found no solution: Because there is no "
                                  "version of litellm[proxy]==9.9.9")
    assert "\n" not in cell.reason


def test_real_runner_uninstallable_unsupported_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.litellm import env as litellm_env
    from harness.run import experiment as harness_runner

    def no_build(version: str, console: object = None) -> None:
        raise HarnessError(f"LiteLLM {version}: uv could not resolve litellm[proxy]=={version}")

    def no_stack(path: Path, opts: object, console: object) -> int:
        raise HarnessError("replica 0 exited during start-up", "see proxy-0.log")

    def ok_run(path: Path, opts: object, console: object) -> int:
        _run_folder(opts.out)  # type: ignore[attr-defined]
        return 0

    real = RealRunner(quiet(), retry_errors=0)
    cell = real(SEED, "1.50.0", tmp_path / "a")           # resolve() rejects it: no build attempted
    assert cell.status == UNINSTALLABLE and "older than" in cell.reason
    off = tmp_path / "off.yaml"
    off.write_text(f"extends: {SEED}\nname: switched-off\nexpect: clean\nlitellm_settings: "
                   "{disable_budget_reservation: true}\n")
    assert real(off, "1.84.0", tmp_path / "b").status == "unsupported"
    monkeypatch.setattr(litellm_env, "ensure", no_build)
    cell = real(SEED, "1.95.0", tmp_path / "c")
    assert cell.status == UNINSTALLABLE and "could not resolve" in cell.reason and cell.matches is None
    monkeypatch.setattr(litellm_env, "ensure", lambda version, console=None: None)
    monkeypatch.setattr(harness_runner, "run_scenario", no_stack)
    cell = real(SEED, "1.84.0", tmp_path / "d")
    assert cell.status == ERROR and "replica 0 exited" in cell.reason and cell.matches is False
    monkeypatch.setattr(harness_runner, "run_scenario", ok_run)
    cell = real(SEED, "1.84.0", tmp_path / "e")
    assert cell.status == "ok" and cell.matches is True and cell.phantoms == 485 and cell.wall_s is not None


def test_cli_matrix_exit_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.cli import app
    from harness.matrix import execute as mrunner

    def fake_call(self: RealRunner, scenario_path: Path, version: str, out_dir: Path) -> CellResult:
        return CellResult("x", version, verdict=REPRODUCED, phantoms=10, leaked_usd=5.0)  # always reproduces

    monkeypatch.setattr(mrunner.RealRunner, "__call__", fake_call)
    cli = CliRunner()
    ok = cli.invoke(app, ["matrix", "--versions", "1.84.0,1.89.1", "--scenario", str(SEED), "--out",
                          str(tmp_path / "ok")])
    assert ok.exit_code == 0, ok.output
    fail = cli.invoke(app, ["matrix", "--versions", "1.84.0,1.108.7", "--scenario", str(SEED), "--out",
                            str(tmp_path / "fail")])
    assert fail.exit_code == 1, fail.output        # 1.108.7 is expected clean
    assert (tmp_path / "fail" / "matrix.md").exists()


def test_real_runner_retries_a_stack_error_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.litellm import env as litellm_env
    from harness.run import experiment as harness_runner

    folders: list[Path] = []

    def flaky(path: Path, opts: object, console: object) -> int:
        out = opts.out  # type: ignore[attr-defined]
        folders.append(out)
        if len(folders) == 1:
            out.mkdir(parents=True)
            raise HarnessError("replica 1 failed to start: address already in use")
        _run_folder(out)
        return 0

    monkeypatch.setattr(litellm_env, "ensure", lambda version, console=None: None)
    monkeypatch.setattr(harness_runner, "run_scenario", flaky)
    cell = RealRunner(quiet())(SEED, "1.84.0", tmp_path / "runs" / "c")
    assert [f.name for f in folders] == ["c", "c.retry1"]
    assert cell.status == "ok" and cell.verdict == REPRODUCED and cell.run_dir.endswith("c.retry1")
    folders.clear()
    monkeypatch.setattr(harness_runner, "run_scenario", lambda *a, **k: (_ for _ in ()).throw(
        HarnessError("replica 0 exited")))
    cell = RealRunner(quiet(), retry_errors=1)(SEED, "1.84.0", tmp_path / "runs" / "d")
    assert cell.status == ERROR and "replica 0 exited" in cell.reason
