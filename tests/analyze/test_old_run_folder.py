"""A run folder written by main at ca743df (tests/data/runs/ca743df-phantom-budget, trimmed) still analyses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.analyze import analyze
from harness.analyze.summary import REPRODUCED, SCHEMA_VERSION, Summary, read_summary
from harness.run import runfolder as rf

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "runs" / "ca743df-phantom-budget"


def test_old_verdict_json_reads_as_a_summary() -> None:
    s = read_summary(FIXTURE)
    assert s is not None
    assert (s.verdict, s.expected, s.phantoms, s.phantom_users, s.leaked_users) == (REPRODUCED, "reproduced", 230, 26,
                                                                                     96)
    assert s.leaked_usd == pytest.approx(2513.44, abs=0.01)
    assert s.first_phantom_s == pytest.approx(19.84, abs=0.01) and s.requests == 862


def test_old_run_folder_reanalyses_as_reproduced(tmp_path: Path) -> None:
    run = shutil.copytree(FIXTURE, tmp_path / "run")
    res = analyze(run)
    assert res.verdict == REPRODUCED and res.exit_code == 0
    s = res.summary
    assert s.phantoms == 230 and s.phantom_users == 26          # requests and ledger are complete
    assert s.leaked_users == 47 and s.leaked_usd == pytest.approx(1426.81, abs=0.01)   # the trimmed samples
    assert s.fault_problems == 0 and not res.evidence["warnings"]
    # the only note: the folder predates the contention figures, so whether it was starved is not known
    assert len(res.evidence["notes"]) == 1 and "contention: not recorded" in res.evidence["notes"][0]
    assert s.starved is None
    # over time: 52 end users held orphaned reservations, 5 of whose keys expired before the drain sample
    assert (s.orphaned_users, s.orphaned_expired_users) == (52, 5)
    assert s.billing_disagreement_usd == 0       # on 1.84.0 the DB bills exactly the ledger's low bound
    ev = json.loads((run / rf.VERDICT_FILE).read_text())
    assert ev["schema"] == SCHEMA_VERSION and Summary.from_verdict(ev) == s
    assert [p.name for p in res.pictures] == ["inflation.png", "rejections.png", "drain.png"]
