"""The contention check on a real old run folder with contention figures added: notes and summary, never the
verdict (harness/analyze/checks/contention.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.analyze import analyze
from harness.analyze.summary import REPRODUCED
from harness.run import runfolder as rf
from tests.analyze.test_old_run_folder import FIXTURE

QUIET = {"wall_s": 60.0, "cpus": 2, "samples": 60, "load_avg_1m": {"mean": 2.1, "max": 3.0, "max_per_cpu": 1.5},
         "machine_busy_share": 0.9, "foreign_share": 0.03, "foreign_top": {"sshd": 0.4}, "steal_share": 0.01,
         "other_stacks_max": 0, "other_stacks_seen": []}


def _with(tmp_path: Path, figures: dict[str, object]) -> Path:
    run = shutil.copytree(FIXTURE, tmp_path / "run")
    meta = json.loads((run / rf.META_FILE).read_text())
    meta["contention"] = figures
    (run / rf.META_FILE).write_text(json.dumps(meta))
    return run


def test_quiet_run(tmp_path: Path) -> None:
    res = analyze(_with(tmp_path, QUIET))
    assert res.verdict == REPRODUCED and res.summary.starved is False
    assert res.summary.foreign_cpu_share == 0.04 and res.summary.other_stacks == 0
    assert not [n for n in res.evidence["notes"] if "contention" in n or "starved" in n]
    assert "| contention | quiet" in (res.run_dir / rf.REPORT_FILE).read_text()


def test_starved_run_keeps_its_verdict_and_says_why(tmp_path: Path) -> None:
    figures = {**QUIET, "foreign_share": 0.31, "foreign_top": {"python3": 37.0}, "other_stacks_max": 1,
               "other_stacks_seen": ["pid 7 (/tmp/x/ledger.csv)"]}
    res = analyze(_with(tmp_path, figures))
    assert res.verdict == REPRODUCED and res.summary.starved is True and res.summary.other_stacks == 1
    notes = [n for n in res.evidence["notes"] if n.startswith("the stack was starved")]
    assert len(notes) == 2 and "--exclusive" in notes[0]
    section = res.evidence["contention"]
    assert section["starved"] is True and section["stream_latency"]["nominal_s"] > 0
    assert "**STARVED**" in (res.run_dir / rf.REPORT_FILE).read_text()
