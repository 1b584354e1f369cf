"""`harness catalog` with a fake runner: planning, catalog.csv, the README table (merge), --reanalyze, and reading
the verdict of a run folder written by an older main."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from harness.analyze.summary import NOT_REPRODUCED, REPRODUCED
from harness.errors import HarnessError
from harness.matrix import catalog
from harness.matrix.catalog import readme, rows
from harness.matrix.execute import UNINSTALLABLE, CellResult, read_run_folder
from harness.run.runfolder import VERDICT_FILE
from harness.scenario.model import load_scenario

OLD_RUN = Path(__file__).resolve().parents[1] / "data" / "runs" / "ca743df-phantom-budget"

SCEN = """# header
name: {name}
issue: "BerriAI/litellm#{issue}"
expect: reproduced
expect_by_version: {{"1.108.7": clean}}
versions: {versions}
"""


def _dir(tmp_path: Path) -> Path:
    d = tmp_path / "scenarios"
    d.mkdir()
    (d / "a.yaml").write_text(SCEN.format(name="alpha", issue=1, versions='["1.84.0", "1.108.7"]'))
    (d / "b.yaml").write_text(SCEN.format(name="beta", issue=2, versions='["1.84.0"]'))
    (d / "README.md").write_text("# Scenarios\n\nhand-written text\n\n<!-- outcomes:start -->\n<!-- outcomes:end -->\n"
                                 "\nmore text\n")
    return d


class FakeRunner:
    """Writes a (schema-1) verdict.json into the cell's folder and reads it back like the real runner;
    1.84.0 reproduces, 1.108.7 is clean."""

    def __init__(self, broken: set[str] = frozenset()) -> None:   # type: ignore[assignment]
        self.calls: list[tuple[str, str]] = []
        self.broken = broken

    def __call__(self, scenario_path: Path, version: str, out_dir: Path) -> CellResult:
        self.calls.append((scenario_path.stem, version))
        if version in self.broken:
            return CellResult(scenario=scenario_path.stem, version=version, status=UNINSTALLABLE,
                              reason="cannot be installed", run_dir=str(out_dir))
        out_dir.mkdir(parents=True)
        bad = version == "1.84.0"
        ev = {"verdict": REPRODUCED if bad else NOT_REPRODUCED,
              "expected": load_scenario(scenario_path).expectation_for(version),
              "requests": {"total": 100},
              "phantom": {"count": 7 if bad else 0, "first": {"t_rel": 3.25} if bad else None},
              "drain": {"ran": True, "leaked_total": 1.5 if bad else 0.0, "undercounted_total": 0.0,
                        "undercounted_users": 0}}
        (out_dir / VERDICT_FILE).write_text(json.dumps(ev))
        return read_run_folder(CellResult(scenario=scenario_path.stem, version=version, run_dir=str(out_dir)),
                               out_dir)


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), width=200)  # noqa: SIM115


def test_plan_follows_versions_and_filters(tmp_path: Path) -> None:
    entries = catalog.discover(_dir(tmp_path))
    assert [(e.name, v) for e, v in catalog.plan(entries)] == [
        ("alpha", "1.84.0"), ("alpha", "1.108.7"), ("beta", "1.84.0")]
    assert [(e.name, v) for e, v in catalog.plan(entries, ["1.108.7"])] == [("alpha", "1.108.7")]
    assert [e.name for e in catalog.discover(tmp_path / "scenarios", ["b", "alpha"])] == ["beta", "alpha"]
    with pytest.raises(HarnessError, match="no catalog scenario named gamma"):
        catalog.discover(tmp_path / "scenarios", ["gamma"])


def test_run_writes_csv_and_readme_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _dir(tmp_path)
    monkeypatch.setattr(catalog, "results_dir", lambda: tmp_path / "results")
    runner = FakeRunner()
    code = catalog.catalog_command(None, None, True, False, None, quiet(), runner=runner, directory=d)
    assert code == 0
    assert runner.calls == [("a", "1.84.0"), ("a", "1.108.7"), ("b", "1.84.0")]   # one at a time, in order
    [out] = list((tmp_path / "results").glob("catalog-*"))
    written = list(csv.DictReader((out / "catalog.csv").open()))
    assert [(r["scenario"], r["version"], r["verdict"], r["match"]) for r in written] == [
        ("alpha", "1.84.0", "REPRODUCED", "yes"), ("alpha", "1.108.7", "NOT REPRODUCED", "yes"),
        ("beta", "1.84.0", "REPRODUCED", "yes")]
    assert written[0]["first_phantom_s"] in ("3.2", "3.3") and written[0]["requests"] == "100"
    assert written[0]["leaked_usd"] == "1.5000" and written[0]["issue"] == "BerriAI/litellm#1"
    text = (d / "README.md").read_text()
    assert text.startswith("# Scenarios\n\nhand-written text") and "more text" in text
    table = rows.parse_table(readme.section(text, "outcomes") or "")
    assert [(r["scenario"], r["version"], r["phantoms"]) for r in table] == [
        ("alpha", "1.84.0", "7"), ("alpha", "1.108.7", "0"), ("beta", "1.84.0", "7")]
    assert "<!-- schema:start -->" in text and "`first_requests`" in text
    assert "| [a.yaml](a.yaml) | alpha |" in text


def test_partial_run_keeps_other_rows_and_mismatch_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _dir(tmp_path)
    monkeypatch.setattr(catalog, "results_dir", lambda: tmp_path / "results")
    catalog.catalog_command(None, None, True, False, None, quiet(), runner=FakeRunner(), directory=d)
    (d / "b.yaml").write_text(SCEN.format(name="beta", issue=2, versions='["1.84.0"]').replace(
        "expect: reproduced", "expect: clean"))
    runner = FakeRunner()
    code = catalog.catalog_command(None, "beta", True, False, None, quiet(), runner=runner, directory=d)
    assert runner.calls == [("b", "1.84.0")]
    table = rows.parse_table(readme.section((d / "README.md").read_text(), "outcomes") or "")
    assert [(r["scenario"], r["version"]) for r in table] == [("alpha", "1.84.0"), ("alpha", "1.108.7"),
                                                              ("beta", "1.84.0")]
    assert table[2]["match"] == "NO" and code == 1


def test_uninstallable_cell_is_not_a_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _dir(tmp_path)
    monkeypatch.setattr(catalog, "results_dir", lambda: tmp_path / "results")
    code = catalog.catalog_command(None, "alpha", False, False, None, quiet(), runner=FakeRunner({"1.108.7"}),
                                   directory=d)
    assert code == 0
    assert "<!-- schema:start -->" not in (d / "README.md").read_text()     # no --update-readme


def test_no_cells_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no \\(scenario, version\\) cell"):
        catalog.catalog_command("9.9.9", None, False, False, None, quiet(), runner=FakeRunner(),
                                directory=_dir(tmp_path))


def test_table_round_trip_escapes_pipes() -> None:
    table = [{c: f"v|{c}" for c, _ in rows.COLUMNS}]
    assert rows.parse_table(rows.render_table(table)) == table


def test_schema_only_refreshes_sections(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    assert catalog.catalog_command(None, None, False, True, None, quiet(), runner=FakeRunner(), directory=d) == 0
    text = (d / "README.md").read_text()
    assert "<!-- catalog:start -->" in text and "<!-- schema:start -->" in text
    assert rows.parse_table(readme.section(text, "outcomes") or "") == []


def test_reanalyze_rebuilds_rows_with_their_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--reanalyze re-runs the analyzer on the linked run folders (an old one included) and keeps their links."""
    import shutil

    d = tmp_path / "scenarios"
    d.mkdir()
    shutil.copy(OLD_RUN / "scenario.yaml", d / "phantom-budget.yaml")
    run = shutil.copytree(OLD_RUN, tmp_path / "results" / "old-run")
    old = rows.outcome_row(catalog.discover(d)[0], read_run_folder(CellResult("phantom-budget", "1.84.0",
                                                                                  run_dir=str(run)), run))
    assert (old["phantoms"], old["leaked_users"], old["leaked_usd"]) == ("230", "96", "2513.4386")
    old["run_dir"] = "results/old-run"               # the table links folders relative to the repository
    gone = dict(old, version="1.83.0", run_dir="results/gone")
    (d / "README.md").write_text(readme.replace_section("# Scenarios\n", "outcomes", rows.render_table([old, gone])))
    from harness.matrix.catalog.evidence import keep_copy

    copy = keep_copy(run, tmp_path / "kept")          # its kept copy still has the schema-1 verdict.json
    assert "summary" not in json.loads((copy / VERDICT_FILE).read_text())
    rebuilt = catalog.reanalyze_rows(d / "README.md", catalog.discover(d), quiet(), root=tmp_path,
                                     kept_root=tmp_path / "kept")
    assert len(rebuilt) == 1                          # the row whose folder is gone is left alone
    new = rebuilt[0]
    assert new["run_dir"] == "results/old-run"       # the row keeps its run folder as the table wrote it
    assert new["verdict"] == REPRODUCED and new["match"] == "yes"
    assert (new["phantoms"], new["leaked_users"], new["first_phantom_s"]) == ("230", "47", "19.8")
    assert json.loads((run / VERDICT_FILE).read_text())["summary"]["phantoms"] == 230    # rewritten, schema 2
    assert json.loads((copy / VERDICT_FILE).read_text())["summary"]["phantoms"] == 230   # and the copy refreshed
    # judged against the scenario's expectation today, not the one the run folder recorded
    (d / "phantom-budget.yaml").write_text((d / "phantom-budget.yaml").read_text().replace(
        "expect: reproduced", "expect: clean"))
    [again] = catalog.reanalyze_rows(d / "README.md", catalog.discover(d), quiet(), root=tmp_path,
                                     kept_root=tmp_path / "kept")
    assert (again["expected"], again["verdict"], again["match"]) == ("clean", REPRODUCED, "NO")


def _row(scenario: str, version: str, run_dir: str, verdict: str = REPRODUCED,
         leaked: str = "1.5000") -> dict[str, str]:
    return {"scenario": scenario, "issue": "", "version": version, "expected": "reproduced", "verdict": verdict,
            "match": "yes", "phantoms": "0", "leaked_usd": leaked, "deflated_usd": "", "first_phantom_s": "",
            "run_dir": run_dir}


def test_a_later_run_of_a_cell_moves_the_older_row_to_the_earlier_runs(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    entries = catalog.discover(d)
    old = _row("alpha", "1.84.0", "results/20261129-140024-alpha-1.84.0")
    new = _row("alpha", "1.84.0", "results/20261130-035526-alpha-1.84.0", leaked="2.0000")
    readme.update_readme(d / "README.md", [old], entries)
    readme.update_readme(d / "README.md", [new], entries)
    readme.update_readme(d / "README.md", [new], entries)     # again (the catalog refreshes after every cell)
    text = (d / "README.md").read_text()
    assert [r["run_dir"] for r in readme.outcome_rows(d / "README.md")] == [new["run_dir"]]
    assert [r["run_dir"] for r in readme.outcome_rows(d / "README.md", "earlier")] == [old["run_dir"]]
    assert text.index("<!-- outcomes:end -->") < text.index("<!-- earlier:start -->") < text.index("more text")
    # anchors: the cell's and the run's on the current row, only the run's on an earlier one
    assert '<a id="alpha-1.84.0"></a><a id="20261130-035526-alpha-1.84.0"></a>1.84.0' in text
    assert '<a id="20261129-140024-alpha-1.84.0"></a>1.84.0' in text and text.count('id="alpha-1.84.0"') == 1
    # an older run added afterwards does not displace the newer one
    readme.update_readme(d / "README.md", [dict(old, leaked_usd="9.0000")], entries)
    assert readme.outcome_rows(d / "README.md")[0]["leaked_usd"] == "2.0000"
    assert readme.outcome_rows(d / "README.md", "earlier")[0]["leaked_usd"] == "9.0000"


def test_a_run_folder_with_a_kept_copy_links_it(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    kept = tmp_path / "docs" / "runs" / "20261130-035526-alpha-1.84.0"
    kept.mkdir(parents=True)
    (kept / VERDICT_FILE).write_text("{}")
    rows_in = [_row("alpha", "1.84.0", "results/20261130-035526-alpha-1.84.0"),
               _row("alpha", "1.108.7", "results/20261130-040000-alpha-1.108.7")]
    readme.update_readme(d / "README.md", rows_in, catalog.discover(d), kept_root=tmp_path / "docs" / "runs")
    text = (d / "README.md").read_text()
    assert ("| [results/20261130-035526-alpha-1.84.0](../docs/runs/20261130-035526-alpha-1.84.0/) |" in text)
    assert "| results/20261130-040000-alpha-1.108.7 |" in text
    assert [r["run_dir"] for r in readme.outcome_rows(d / "README.md")] == [r["run_dir"] for r in rows_in]


def test_add_runs_reads_finished_run_folders_into_the_table(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    run = tmp_path / "results" / "20261130-035526-beta-1.84.0"
    run.mkdir(parents=True)
    (run / VERDICT_FILE).write_text(json.dumps({
        "verdict": NOT_REPRODUCED, "expected": "clean", "scenario": "beta", "litellm_version": "1.84.0",
        "phantom": {"count": 0}, "drain": {"ran": True, "leaked_total": 0.0}}))
    code = catalog.catalog_command(None, None, False, False, None, quiet(), directory=d, add_runs=[run])
    [row] = readme.outcome_rows(d / "README.md")
    # judged against the scenario's expectation today (beta: reproduced), not the one the run folder recorded
    assert (row["scenario"], row["version"], row["expected"], row["match"]) == ("beta", "1.84.0", "reproduced", "NO")
    assert code == 1
    (run / VERDICT_FILE).write_text(json.dumps({"verdict": NOT_REPRODUCED, "scenario": "gamma",
                                                "litellm_version": "1.84.0"}))
    with pytest.raises(HarnessError, match="scenario gamma is not a catalog scenario"):
        catalog.catalog_command(None, None, False, False, None, quiet(), directory=d, add_runs=[run])
    with pytest.raises(HarnessError, match="no verdict.json naming its scenario"):
        catalog.catalog_command(None, None, False, False, None, quiet(), directory=d, add_runs=[tmp_path])


def test_reanalyze_keeps_rows_whose_folders_are_gone_as_they_are(tmp_path: Path) -> None:
    """The rows of runs no longer on this machine: their run folder, numbers and anchors stay byte for byte."""
    d = _dir(tmp_path)
    entries = catalog.discover(d)
    gone = [_row("alpha", "1.84.0", "results/20261129-140024-alpha-1.84.0"),
            _row("alpha", "1.108.7", "results/20261129-140311-alpha-1.108.7", NOT_REPRODUCED, "0.0000")]
    readme.update_readme(d / "README.md", gone, entries)
    readme.update_readme(d / "README.md", [dict(gone[0], run_dir="results/20261130-000000-alpha-1.84.0")], entries)
    before = (d / "README.md").read_text()
    assert catalog.catalog_command(None, None, False, False, None, quiet(), directory=d, reanalyze=True) == 0
    after = (d / "README.md").read_text()
    for which in ("outcomes", "earlier"):
        assert readme.section(after, which) == readme.section(before, which)


def test_repeat_judges_each_cell_by_its_quiet_repeats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _dir(tmp_path)
    monkeypatch.setattr(catalog, "results_dir", lambda: tmp_path / "results")
    base = FakeRunner()

    def flaky(starved: bool) -> Callable[[Path, str, Path], CellResult]:
        n = {"alpha-1.108.7": 0}

        def runner(scenario_path: Path, version: str, out_dir: Path) -> CellResult:
            cell = base(scenario_path, version, out_dir)
            if scenario_path.stem == "a" and version == "1.108.7":
                n["alpha-1.108.7"] += 1
                if n["alpha-1.108.7"] == 2:         # the second repeat: a false alarm
                    cell.verdict, cell.starved = REPRODUCED, starved
            return cell
        return runner

    code = catalog.catalog_command(None, "alpha", False, False, None, quiet(), runner=flaky(True), directory=d,
                                   repeat=2)
    assert code == 0          # the starved repeat is set aside: the quiet one decides
    [out] = list((tmp_path / "results").glob("catalog-*"))
    assert len(list(csv.DictReader((out / "catalog.csv").open()))) == 4
    md = (out / "cells.md").read_text()
    assert "1 starved repeat(s) set aside: REPRODUCED" in md
    code = catalog.catalog_command(None, "alpha", False, False, None, quiet(), runner=flaky(False), directory=d,
                                   repeat=2)
    assert code == 1          # two quiet repeats that disagree: MIXED, no match
    with pytest.raises(HarnessError, match="--repeat must be at least 1"):
        catalog.catalog_command(None, "alpha", False, False, None, quiet(), runner=base, directory=d, repeat=0)
