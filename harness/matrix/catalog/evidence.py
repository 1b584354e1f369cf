"""Kept copies of run folders: the evidence behind the outcome table, small enough to commit.

Run folders live in results/ (git-ignored, 2–25 MB each). A row of the outcome table whose run folder has a
kept copy in `docs/runs/<run-id>/` links to it, so a reader of the repository can open the run's report and
verdict. A copy keeps:

- always (those the folder has; verdict.json it must have): report.md, verdict.json (the verdict, its evidence
  and the typed summary), meta.json, scenario.yaml;
- the data files (requests, ledger, samples, faults, mock events, final spend counters) each only when it is
  at most `max_file_bytes` (64 KB): a small scenario's copy stays complete and can be re-analysed, a 6000-user
  one keeps the report and the verdict;
- the PNGs only when asked for (`pictures`, e.g. the README's headline picture);
- never the proxies' and Locust's logs or HTML (size, and they are not written by the harness).

KEPT.md in the copy names what was left out. `harness catalog --reanalyze` refreshes a copy after it has
re-analysed the folder it was made from; `keep_copy` is what scripts/keep_run.py calls.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.paths import REPO_ROOT
from harness.run import runfolder as rf

KEPT_ROOT = REPO_ROOT / "docs" / "runs"
KEPT_NOTE = "KEPT.md"
ALWAYS = (rf.REPORT_FILE, rf.VERDICT_FILE, rf.META_FILE, rf.SCENARIO_FILE)
DATA = (rf.REQUESTS_FILE, rf.LEDGER_FILE, rf.SAMPLES_FILE, rf.FAULTS_FILE, rf.MOCK_EVENTS_FILE,
        "spend-counters-final.csv")
PICTURES = ("inflation.png", "rejections.png", "drain.png")
MAX_FILE_BYTES = 64 * 1024


def kept_copy(run_dir: str | Path, root: Path = KEPT_ROOT) -> Path | None:
    """The kept copy of a run folder (matched by its run id, the folder's name), None when there is none."""
    name = Path(str(run_dir)).name
    path = root / name
    return path if name and (path / rf.VERDICT_FILE).exists() else None


def keep_copy(run_dir: Path, root: Path = KEPT_ROOT, pictures: Sequence[str] = (),
              max_file_bytes: int = MAX_FILE_BYTES) -> Path:
    """Copy the small evidence of `run_dir` to `root/<run-id>/` (replacing an older copy) and return it."""
    run_dir = Path(run_dir)
    if not (run_dir / rf.VERDICT_FILE).is_file():
        raise HarnessError(f"{run_dir} is not an analysed run folder (no {rf.VERDICT_FILE})",
                           f"run `harness analyze {run_dir}` first")
    unknown = [p for p in pictures if p not in PICTURES]
    if unknown:
        raise HarnessError(f"unknown picture {', '.join(unknown)}", f"pick from: {', '.join(PICTURES)}")
    dest = root / run_dir.name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    kept, left = [], []
    for name in (*ALWAYS, *DATA, *PICTURES):
        src = run_dir / name
        if not src.is_file():
            continue
        wanted = name in ALWAYS or (name in DATA and src.stat().st_size <= max_file_bytes) or name in pictures
        if wanted:
            shutil.copy2(src, dest / name)
            kept.append(name)
        else:
            left.append(f"{name} ({src.stat().st_size / 1024:,.0f} KB)")
    others = sorted(p.name for p in run_dir.iterdir() if p.is_file() and p.name not in (*ALWAYS, *DATA, *PICTURES))
    (dest / KEPT_NOTE).write_text(
        f"# Kept copy of results/{run_dir.name}\n\n"
        "The run folder itself is git-ignored; this copy (harness/matrix/catalog/evidence.py) keeps its report,\n"
        "its verdict and the data files small enough to commit.\n\n"
        f"- kept: {', '.join(kept)}\n"
        f"- left out (size): {', '.join(left) or 'nothing'}\n"
        f"- left out (logs, Locust's files, config): {', '.join(others) or 'nothing'}\n\n"
        "Links in report.md to files that were left out do not resolve here.\n")
    return dest


def refresh_copy(run_dir: Path, root: Path = KEPT_ROOT) -> Path | None:
    """After a re-analysis of `run_dir`: make its kept copy again (same pictures), if it has one."""
    copy = kept_copy(run_dir, root)
    if copy is None:
        return None
    pictures = [p for p in PICTURES if (copy / p).exists()]
    return keep_copy(Path(run_dir), root, pictures=pictures)
