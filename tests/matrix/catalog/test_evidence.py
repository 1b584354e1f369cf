"""Kept copies of run folders (harness/matrix/catalog/evidence.py): what a copy keeps, what it leaves out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.matrix.catalog.evidence import KEPT_NOTE, keep_copy, kept_copy, refresh_copy


def _run(tmp_path: Path, name: str = "20261130-035526-minimal-1.84.0") -> Path:
    run = tmp_path / "results" / name
    run.mkdir(parents=True)
    for f in ("report.md", "meta.json", "scenario.yaml", "ledger.csv", "requests.csv", "proxy-0.log", "locust.html",
              "inflation.png", "drain.png"):
        (run / f).write_text("x" * 10)
    (run / "verdict.json").write_text(json.dumps({"verdict": "REPRODUCED"}))
    (run / "samples.csv").write_text("x" * 2048)
    return run


def test_copy_keeps_the_evidence_and_the_small_data(tmp_path: Path) -> None:
    run = _run(tmp_path)
    copy = keep_copy(run, tmp_path / "kept", pictures=["inflation.png"], max_file_bytes=1024)
    assert copy == tmp_path / "kept" / run.name
    assert sorted(p.name for p in copy.iterdir()) == [
        KEPT_NOTE, "inflation.png", "ledger.csv", "meta.json", "report.md", "requests.csv", "scenario.yaml",
        "verdict.json"]
    note = (copy / KEPT_NOTE).read_text()
    assert "samples.csv (2 KB)" in note and "drain.png" in note and "proxy-0.log" in note and "locust.html" in note
    assert kept_copy("results/" + run.name, tmp_path / "kept") == copy
    assert kept_copy("results/another-run", tmp_path / "kept") is None and kept_copy("", tmp_path / "kept") is None


def test_refresh_makes_the_copy_again_with_its_pictures(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert refresh_copy(run, tmp_path / "kept") is None              # no copy: nothing to refresh
    copy = keep_copy(run, tmp_path / "kept", pictures=["inflation.png"])
    (run / "verdict.json").write_text(json.dumps({"verdict": "NOT REPRODUCED"}))
    assert refresh_copy(run, tmp_path / "kept") == copy
    assert json.loads((copy / "verdict.json").read_text())["verdict"] == "NOT REPRODUCED"
    assert (copy / "inflation.png").exists() and not (copy / "drain.png").exists()


def test_copy_refuses_a_folder_that_is_not_an_analysed_run(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="not an analysed run folder"):
        keep_copy(tmp_path / "empty", tmp_path / "kept")
    with pytest.raises(HarnessError, match="unknown picture"):
        keep_copy(_run(tmp_path), tmp_path / "kept", pictures=["report.md"])
