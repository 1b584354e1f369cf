"""--json and --junit (harness/results_io): the committed schema, the JSON documents, the JUnit XML (counts per
gate, failure text = the verdict line), the stdout guard, the up-front --junit check, and the CLI wiring of
run / analyze / matrix / catalog with fakes (no stack)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from harness import cli
from harness.analyze.summary import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from harness.errors import HarnessError
from harness.matrix.execute import ERROR, UNINSTALLABLE, UNSUPPORTED, CellResult
from harness.matrix.matrix import MatrixResult, run_matrix
from harness.results_io import ResultsOutput, check_junit_path, junit, run_results
from harness.results_io.models import RESULTS_SCHEMA, CellEntry, Results, cells_results, schema_text
from tests.matrix.test_catalog import FakeRunner as CatalogRunner
from tests.matrix.test_catalog import _dir as catalog_dir
from tests.matrix.test_matrix import SEED
from tests.matrix.test_matrix import FakeRunner as MatrixRunner

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "runs" / "ca743df-phantom-budget"


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def parse_junit(path: Path) -> tuple[ET.Element, list[ET.Element]]:
    root = ET.parse(path).getroot()
    return root, root.findall("./testsuite/testcase")


def mixed_cells() -> list[CellResult]:
    return [
        CellResult("minimal", "1.84.0", verdict=REPRODUCED, expected="reproduced", wall_s=100.0),
        CellResult("minimal", "1.108.7", verdict=REPRODUCED, expected="clean", reason="230 phantoms", wall_s=90.0),
        CellResult("minimal", "1.90.0", verdict=INCONCLUSIVE, expected="reproduced", reason="interrupted"),
        CellResult("minimal", "1.85.0", status=ERROR, expected="reproduced", reason="stack did not come up"),
        CellResult("minimal", "1.70.0", status=UNINSTALLABLE, reason="no wheel"),
        CellResult("minimal", "1.60.0", status=UNSUPPORTED, reason="needs 1.89.1"),
    ]


# -- the schema ------------------------------------------------------------------------------------
def test_committed_schema_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "results-schema.json").read_text()
    assert committed == schema_text(), ("docs/results-schema.json is stale: "
                                        "`.venv/bin/python -m harness.results_io > docs/results-schema.json`")


def test_schema_names_both_documents_and_the_version_field() -> None:
    doc = json.loads(schema_text())
    assert doc["discriminator"]["propertyName"] == "command"
    assert set(doc["discriminator"]["mapping"]) == {"run", "analyze", "matrix", "catalog", "bisect", "run-repeat"}
    for name in ("RunResults", "CellsResults", "BisectResults"):
        assert "schema" in doc["$defs"][name]["required"]
        assert doc["$defs"][name]["properties"]["schema"]["description"]


def test_a_cell_entry_carries_every_cell_result_field() -> None:
    assert {f.name for f in fields(CellResult)} <= set(CellEntry.model_fields)


# -- JSON and JUnit of cells -----------------------------------------------------------------------
def test_cells_document_gates_and_counts() -> None:
    doc = cells_results("matrix", mixed_cells(), 1, "/m")
    assert [c.gate for c in doc.cells] == ["passed", "failed", "failed", "error", "skipped", "skipped"]
    assert doc.counts.model_dump() == {"passed": 1, "failed": 2, "error": 1, "skipped": 2}
    assert doc.cells[1].verdict_line == "REPRODUCED — expected clean"
    assert doc.cells[4].verdict_line == "uninstallable: no wheel"
    parsed = json.loads(doc.to_json())
    assert parsed["schema"] == RESULTS_SCHEMA and "schema_version" not in parsed
    assert Results.model_validate_json(doc.to_json()).root == doc      # what a reader gets back


def test_junit_has_one_case_per_cell_and_the_verdict_line_as_failure(tmp_path: Path) -> None:
    path = tmp_path / "out.xml"
    junit.write(cells_results("matrix", mixed_cells(), 1, "/m"), path)
    root, cases = parse_junit(path)
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "6", "2", "1", "2")
    assert [(c.get("classname"), c.get("name")) for c in cases][:2] == [("minimal", "1.84.0"), ("minimal", "1.108.7")]
    assert cases[0].find("failure") is None and cases[0].find("error") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == "REPRODUCED — expected clean"
    assert failure.text == "230 phantoms"
    assert [len(c.findall("failure")) for c in cases] == [0, 1, 1, 0, 0, 0]
    error = cases[3].find("error")
    assert error is not None and error.get("message") == "error: stack did not come up"
    assert [c.find("skipped") is not None for c in cases] == [False] * 4 + [True] * 2


def test_junit_stays_parseable_with_control_characters_in_a_reason(tmp_path: Path) -> None:
    cell = CellResult("s", "1.84.0", status=ERROR, reason="proxy said \x1b[31mboom\x00 <&>")
    junit.write(cells_results("matrix", [cell], 1, None), tmp_path / "c.xml")
    _, cases = parse_junit(tmp_path / "c.xml")
    error = cases[0].find("error")
    assert error is not None and "boom" in (error.get("message") or "") and "<&>" in (error.get("message") or "")


def test_junit_names_repeats(tmp_path: Path) -> None:
    cells = [CellResult("s", "1.84.0", verdict=REPRODUCED, expected="reproduced", repeat=k) for k in (1, 2)]
    cells.append(CellResult("s", "1.108.7", verdict=NOT_REPRODUCED, expected="clean"))
    junit.write(cells_results("matrix", cells, 0, None), tmp_path / "r.xml")
    _, cases = parse_junit(tmp_path / "r.xml")
    assert [c.get("name") for c in cases] == ["1.84.0 r1", "1.84.0 r2", "1.108.7"]


def test_matrix_with_a_fake_runner_gives_one_entry_and_one_case_per_run(tmp_path: Path) -> None:
    versions = ["1.83.14", "1.84.0", "1.108.7"]
    res = run_matrix([SEED], versions, MatrixRunner(), tmp_path / "m", quiet(), repeat=2, plot=False)
    doc = cells_results("matrix", res.results, res.exit_code, str(res.out_dir))
    assert len(doc.cells) == 6 and doc.exit_code == res.exit_code
    assert doc.counts.passed + doc.counts.failed == 6
    assert (doc.exit_code == 0) == (doc.counts.failed == 0)
    junit.write(doc, tmp_path / "m.xml")
    root, cases = parse_junit(tmp_path / "m.xml")
    assert len(cases) == 6 and {c.get("classname") for c in cases} == {"phantom-budget"}
    assert root.get("failures") == str(doc.counts.failed)


def test_catalog_reports_each_cell_it_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.matrix import catalog

    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(tmp_path / "results"))
    cells: list[CellResult] = []
    out_dirs: list[Path] = []
    code = catalog.catalog_command(None, None, False, False, None, quiet(), runner=CatalogRunner({"1.108.7"}),
                                   directory=catalog_dir(tmp_path), on_cell=cells.append,
                                   on_out_dir=out_dirs.append)
    doc = cells_results("catalog", cells, code, str(out_dirs[0]))
    assert sorted((c.scenario, c.version, c.gate) for c in doc.cells) == [
        ("alpha", "1.108.7", "skipped"), ("alpha", "1.84.0", "passed"), ("beta", "1.84.0", "passed")]
    assert (out_dirs[0] / "catalog.csv").exists() and code == 0


# -- run / analyze ---------------------------------------------------------------------------------
@pytest.fixture
def run_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(FIXTURE, dest)
    return dest


def test_run_document_of_an_analysed_folder(run_copy: Path) -> None:
    doc = run_results("analyze", run_copy, 0)
    assert doc.gate == "passed" and doc.summary is not None and doc.summary.verdict == REPRODUCED
    assert doc.verdict_line == "REPRODUCED — expected reproduced" and doc.run_dir == str(run_copy)
    assert doc.report is None       # the fixture was never rendered here


def test_run_document_without_a_verdict_is_an_error(tmp_path: Path) -> None:
    doc = run_results("run", tmp_path, 1)
    assert doc.gate == "error" and doc.summary is None
    junit.write(doc, tmp_path / "j.xml")
    _, cases = parse_junit(tmp_path / "j.xml")
    assert len(cases) == 1 and cases[0].find("error") is not None


def test_run_scenario_names_its_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.run.test_experiment import SCENARIO, Harness, _stages

    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "unit-run.yaml"
    path.write_text(SCENARIO)
    h = Harness(tmp_path)
    seen: list[Path] = []
    from harness.run.experiment import RunOptions, run_scenario

    run_scenario(path, RunOptions(out=h.out), h.console, stack_factory=h.factory, stages=lambda: _stages(h.log),
                 clock=h.clock, analyzer=h.analyzer, on_run_dir=seen.append)
    assert seen == [h.out.resolve()] and (seen[0] / "meta.json").exists()


# -- the --junit check and the stdout guard --------------------------------------------------------
@pytest.mark.parametrize("bad", ["folder", "no-parent", "proc"])
def test_an_unwritable_junit_path_is_refused(tmp_path: Path, bad: str) -> None:
    path = {"folder": tmp_path, "no-parent": tmp_path / "nope" / "x.xml", "proc": Path("/proc/x.xml")}[bad]
    with pytest.raises(HarnessError) as err:
        ResultsOutput(junit=path)
    assert "--junit" in err.value.problem
    assert not (tmp_path / "nope").exists()


def test_a_writable_junit_path_is_accepted_and_left_untouched(tmp_path: Path) -> None:
    assert check_junit_path(tmp_path / "x.xml") == tmp_path / "x.xml"
    assert list(tmp_path.iterdir()) == []       # the probe file is gone


def test_capture_sends_prints_and_child_output_to_stderr(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = ResultsOutput(json=True)
    with out.capture():
        print("a python print")
        subprocess.run(["echo", "a child process"], check=True)
    out.emit(run_results("run", tmp_path, 1))
    captured = capfd.readouterr()
    assert json.loads(captured.out)["command"] == "run"             # stdout: the one object, nothing else
    assert "a python print" in captured.err and "a child process" in captured.err


def test_without_json_capture_leaves_stdout_alone(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = ResultsOutput()
    with out.capture():
        print("human output")
    out.emit(run_results("run", tmp_path, 1))
    assert capfd.readouterr().out == "human output\n"


# -- the CLI ---------------------------------------------------------------------------------------
def invoke(args: list[str]) -> Any:
    return CliRunner(mix_stderr=False).invoke(cli.app, args)


def test_cli_matrix_json_and_junit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.matrix as matrix_pkg

    def fake_matrix_command(versions: str, *args: Any, **kwargs: Any) -> MatrixResult:
        return run_matrix([SEED], versions.split(","), MatrixRunner(), tmp_path / "m", quiet(), plot=False)

    monkeypatch.setattr(matrix_pkg, "matrix_command", fake_matrix_command)
    result = invoke(["matrix", "--versions", "1.83.14,1.84.0", "--json", "--junit", str(tmp_path / "j.xml")])
    doc = json.loads(result.stdout)
    assert result.exit_code == doc["exit_code"] == 0
    assert doc["command"] == "matrix" and [c["version"] for c in doc["cells"]] == ["1.83.14", "1.84.0"]
    assert doc["command_line"].startswith("harness ")
    _, cases = parse_junit(tmp_path / "j.xml")
    assert len(cases) == 2


def test_cli_run_json_names_the_run_folder(run_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.run.experiment as experiment

    def fake_run_scenario(path: Path, opts: Any, console: Console, on_run_dir: Any = None) -> int:
        on_run_dir(run_copy)
        print("stray output of a stage")
        return 0

    monkeypatch.setattr(experiment, "run_scenario", fake_run_scenario)
    result = invoke(["run", "scenarios/minimal.yaml", "--json"])
    doc = json.loads(result.stdout)
    assert (doc["command"], doc["run_dir"], doc["gate"], result.exit_code) == ("run", str(run_copy), "passed", 0)
    assert "stray output" in result.stderr


def test_cli_catalog_schema_only_json_is_an_empty_document(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.matrix.catalog as catalog

    def fake_catalog_command(*args: Any, **kwargs: Any) -> int:
        return 0

    monkeypatch.setattr(catalog, "catalog_command", fake_catalog_command)
    doc = json.loads(invoke(["catalog", "--schema-only", "--json"]).stdout)
    assert (doc["command"], doc["cells"], doc["out_dir"]) == ("catalog", [], None)


def test_analyze_subprocess_json_parses_and_bad_junit_is_one_line(run_copy: Path, tmp_path: Path) -> None:
    xml = tmp_path / "a.xml"
    proc = subprocess.run([sys.executable, "-m", "harness", "analyze", str(run_copy), "--json", "--junit", str(xml)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    doc = json.loads(proc.stdout)
    assert proc.returncode == doc["exit_code"] == 0
    assert doc["summary"]["phantoms"] > 0 and doc["report"] == str(run_copy / "report.md")
    assert Path(doc["report"]).exists() and "REPRODUCED" in proc.stderr
    root, cases = parse_junit(xml)
    assert len(cases) == 1 and root.get("failures") == "0"

    bad = subprocess.run([sys.executable, "-m", "harness", "analyze", str(run_copy), "--json", "--junit",
                          str(tmp_path / "missing" / "a.xml")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "--junit" in bad.stderr


# -- bisect ----------------------------------------------------------------------------------------
def test_cli_bisect_json_and_junit_name_the_probes_and_the_first_fixed_release(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.matrix.test_bisect import Probe, _fake_real_runs

    probe = Probe(fixed_in="1.107.1", broken={"1.104.9": UNINSTALLABLE})   # the fakes of tests/matrix
    _fake_real_runs(monkeypatch, probe)
    result = invoke(["bisect", "--good", "1.108.7", "--bad", "1.84.0", "--scenario", str(SEED),
                     "--out", str(tmp_path / "b"), "--json", "--junit", str(tmp_path / "j.xml")])
    doc = json.loads(result.stdout)
    assert result.exit_code == doc["exit_code"] == 1                      # 1.104.9 undecided: not exact
    assert doc["command"] == "bisect" and doc["out_dir"] == str((tmp_path / "b").absolute())
    assert (doc["good"], doc["bad"], doc["direction"]) == ("1.108.7", "1.84.0", "first fixed")
    assert (doc["first"], doc["last_before"], doc["exact"]) == ("1.107.1", "1.100.0", False)
    assert doc["candidates"] == ["1.104.9", "1.107.1"] and doc["error"] == "" and doc["excluded"] == {}
    assert [(p["version"], p["verdict"], p["status"], p["gate"]) for p in doc["probes"]] == [
        ("1.100.0", REPRODUCED, "ok", "passed"),
        ("1.104.9", None, UNINSTALLABLE, "skipped"),
        ("1.107.1", NOT_REPRODUCED, "ok", "passed")]
    assert doc["probes"][1]["reason"] == "uv could not resolve it" and doc["probes"][0]["reason"] == ""
    assert doc["probes"][0]["run_dir"] == "runs/phantom-budget-1.100.0"
    assert "1.104.9, 1.107.1" in doc["headline"]
    assert Results.model_validate_json(result.stdout).root.command == "bisect"
    root, cases = parse_junit(tmp_path / "j.xml")
    assert [c.get("name") for c in cases] == ["1.100.0 (step 1)", "1.104.9 (step 2)", "1.107.1 (step 3)"]
    assert root.get("skipped") == "1" and root.get("failures") == "0"
    skipped = cases[1].find("skipped")
    assert skipped is not None and skipped.get("message") == "uninstallable: uv could not resolve it"


def test_bisect_document_of_an_exact_answer_and_of_no_answer() -> None:
    from harness.matrix.bisect import bisect_versions
    from harness.results_io import bisect_results
    from tests.matrix.test_bisect import INSIDE, Probe

    exact = bisect_results(bisect_versions(INSIDE, good="1.96.0", bad="1.84.0", probe=Probe(fixed_in="1.91.0"),
                                           scenario="s"), 0, "/b")
    assert (exact.first, exact.last_before, exact.exact, exact.candidates) == ("1.91.0", "1.90.0", True, ["1.91.0"])
    assert [p.version for p in exact.probes] == ["1.90.0", "1.93.0", "1.91.0"]
    # --check-ends: the "good" end reproduces, so there is no answer
    none = bisect_results(bisect_versions(INSIDE, good="1.96.0", bad="1.84.0", probe=Probe(fixed_in="1.99.0"),
                                          check_ends=True, scenario="s"), 1, "/b")
    assert none.first is None and none.last_before is None and none.candidates == [] and not none.exact
    assert none.error and none.headline.startswith("no answer")
