"""Outcome claims in prose checked against the rows and runs that back them (harness/matrix/catalog/claims.py),
and the repository's own READMEs: every outcome claim in README.md and scenarios/README.md links a row or a
kept run folder that says the same."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.matrix.catalog.claims import check_file, claims
from harness.paths import REPO_ROOT

OLD_RUN = REPO_ROOT / "tests" / "data" / "runs" / "ca743df-phantom-budget"   # schema 1: 230 phantoms, $2,513.44

HEAD = ("| scenario | version | verdict | phantom rejections | leaked $ after drain | deflated $ after drain "
        "| first phantom s | run folder |")
TABLE = f"""
{HEAD}
|---|---|---|---|---|---|---|---|
| minimal | <a id="minimal-1.84.0"></a><a id="20261129-140024-minimal-1.84.0"></a>1.84.0 | REPRODUCED | 11 \
| 1.9728 | 0.0000 | 8.5 | results/x |
| minimal | <a id="minimal-1.108.7"></a>1.108.7 | NOT REPRODUCED | 0 | 0.0000 | 0.0000 |  | results/y |

## Runs still needed

- off-switch on 1.89.1
"""


def _doc(tmp_path: Path, prose: str) -> Path:
    path = tmp_path / "README.md"
    path.write_text("# Scenarios\n\n" + prose + "\n" + TABLE)
    return path


def test_a_claim_that_agrees_with_its_row_passes(tmp_path: Path) -> None:
    doc = _doc(tmp_path, "- **minimal**. 1.84.0: [REPRODUCED, 11 phantom rejections, first at 8.5 s, $1.97 "
                         "leaked](#minimal-1.84.0), the DB showed $0.00. 1.108.7: [clean](#minimal-1.108.7).")
    assert [c.line for c in claims(doc)] == [3, 3]
    assert check_file(doc) == []


@pytest.mark.parametrize(("text", "problem"), [
    ("[NOT REPRODUCED](#minimal-1.84.0)", "says NOT REPRODUCED, the row's verdict is REPRODUCED"),
    ("[clean](#minimal-1.84.0)", "says clean, the row's verdict is REPRODUCED"),
    ("[12 phantom rejections](#minimal-1.84.0)", "says '12 phantom', the row's phantom rejections: 11"),
    ("[$1.98 leaked](#minimal-1.84.0)", "says '$1.98', the row's dollar figures: 1.9728, 0"),
    ("[$2 leaked on 1 user](#minimal-1.84.0)", "says '1 user', the row's user counts: none"),
    ("[first at 10 s](#minimal-1.84.0)", "says 'at 10 s', the row's first phantom s: 8.5"),
    ("[REPRODUCED after 12 requests](#minimal-1.84.0)", "numbers the row cannot confirm: 12"),
    ("[REPRODUCED on 1.108.7](#minimal-1.84.0)", "names 1.108.7, the row is 1.84.0"),
    ("[REPRODUCED](#minimal-1.90.0)", "#minimal-1.90.0: no row or heading with that anchor"),
])
def test_a_link_text_the_row_does_not_confirm_is_a_problem(tmp_path: Path, text: str, problem: str) -> None:
    doc = _doc(tmp_path, f"On 1.84.0 the minimal case leaks: {text}.")
    found = check_file(doc)
    assert any(problem in p for p in found), found


def test_a_claim_without_evidence_or_with_an_unbacked_version_is_a_problem(tmp_path: Path) -> None:
    doc = _doc(tmp_path, "1.84.0 leaks [a lot](https://example.com).\n\n"
                         "Both 1.84.0 and 1.90.0 leak: [REPRODUCED](#minimal-1.84.0).\n\n"
                         "`1.84.0` leaks in code only, not a claim.\n\nNor is a version without an outcome: 1.84.0.")
    found = check_file(doc)
    assert len(found) == 2, found
    assert "README.md:3: an outcome claim with no run or row linked" in found[0]
    assert "README.md:5: names 1.90.0 but links no run or row of 1.90.0" in found[1]


def test_a_range_is_covered_by_a_row_inside_it_and_a_gap_is_declared(tmp_path: Path) -> None:
    doc = _doc(tmp_path, "1.84.x leaks ([REPRODUCED](#minimal-1.84.0)). 1.89.1 with the off switch is clean "
                         "([no run kept yet](#runs-still-needed)).")
    assert check_file(doc) == []
    (tmp_path / "README.md").write_text((tmp_path / "README.md").read_text().replace("## Runs still needed", "## Runs"))
    assert any("no heading 'Runs still needed'" in p for p in check_file(tmp_path / "README.md"))


def test_a_run_folder_link_is_checked_against_its_verdict(tmp_path: Path) -> None:
    shutil.copytree(OLD_RUN, tmp_path / "runs" / "old")
    doc = _doc(tmp_path, "On 1.84.0: [REPRODUCED, 230 phantom rejections of 26 users, $2,513 leaked on 96 end "
                         "users](runs/old/).\n\n1.84.0 [leaked $2,600](runs/old/verdict.json).\n\n"
                         "1.84.0 leaked, see [the run](runs/gone/).")
    found = check_file(doc)
    assert len(found) == 3, found
    assert "says '$2,600'" in found[0] and "[the run](runs/gone/): runs/gone/: no such file or folder" in found[1]
    assert "README.md:7: an outcome claim with no run or row linked" in found[2]


@pytest.mark.parametrize("doc", ["README.md", "scenarios/README.md"])
def test_every_outcome_claim_of_the_readmes_is_backed(doc: str) -> None:
    """README.md and scenarios/README.md: each sentence that names a version and an outcome links the table row
    or the kept run folder that backs it (or the 'Runs still needed' list), and says what that row says."""
    assert check_file(REPO_ROOT / doc) == []
