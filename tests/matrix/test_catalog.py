"""`harness catalog` with a fake runner: planning, catalog.csv, the README table (merge), --reanalyze, and reading
the verdict of a run folder written by an older main."""

from __future__ import annotations

import csv
import json
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
    rebuilt = catalog.reanalyze_rows(d / "README.md", catalog.discover(d), quiet(), root=tmp_path)
    assert len(rebuilt) == 1                          # the row whose folder is gone is left alone
    new = rebuilt[0]
    assert new["run_dir"] == str(run) and new["verdict"] == REPRODUCED and new["match"] == "yes"
    assert (new["phantoms"], new["leaked_users"], new["first_phantom_s"]) == ("230", "47", "19.8")
    assert json.loads((run / VERDICT_FILE).read_text())["summary"]["phantoms"] == 230    # rewritten, schema 2
