"""`harness run SCENARIO --litellm <tree-or-version> --bisect`: exit codes for `git bisect run`.

git's contract for the command `git bisect run` calls: 0 = good, 1–127 except 125 = bad, 125 = this commit
cannot be tested (skip it), anything above 127 aborts the bisection. In --bisect mode `harness run` exits with
exactly one of:

- 0 (good): the verdict is NOT REPRODUCED — the bug is absent;
- 1 (bad): the verdict is REPRODUCED — the bug is present (with --min-phantoms / --min-leaked: only on material
  evidence, weaker counts as good, as `harness bisect` counts it);
- 125 (skip): nothing was decided about this commit — INCONCLUSIVE, an uninstallable tree, a stack that did not
  come up, no verdict, bad input, a crash;
- 130 (aborts the bisection): interrupted (Ctrl-C / SIGTERM).

"good" means *the bug is absent*, whatever the scenario expects (`expect`, `expect_by_version` play no part): a
search for the commit that introduced the bug marks the old commit good and the new one bad, as usual; a search
for the commit that *fixed* it uses git's own terms for the two states (docs/git-bisect.md:
`git bisect start --term-old=broken --term-new=fixed`, with scripts/git-bisect-litellm.sh --find-fix swapping 0
and 1). Bad input is 125 too: a malformed scenario skips every commit, and git then stops with "only skipped
commits left to test".
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from harness.analyze.summary import read_summary
from harness.matrix.bisect import BAD, GOOD, evidence_outcome
from harness.matrix.execute import CellResult

GOOD_EXIT, BAD_EXIT, SKIP_EXIT, INTERRUPTED_EXIT = 0, 1, 125, 130
_ALLOWED = (GOOD_EXIT, BAD_EXIT, SKIP_EXIT, INTERRUPTED_EXIT)


def outcome_exit(verdict: str | None, phantoms: int | None = None, leaked_usd: float | None = None,
                 min_phantoms: int = 0, min_leaked_usd: float = 0.0) -> int:
    """A verdict → git's code: NOT REPRODUCED 0, REPRODUCED 1 (only on material evidence when a threshold is
    set: weaker counts as 0, as `harness bisect --min-phantoms/--min-leaked` counts it), anything else 125."""
    cell = CellResult(scenario="", version="", verdict=verdict, phantoms=phantoms, leaked_usd=leaked_usd)
    outcome = evidence_outcome(min_phantoms, min_leaked_usd)(cell)
    return {GOOD: GOOD_EXIT, BAD: BAD_EXIT}.get(outcome or "", SKIP_EXIT)


def run_exit(run_dir: Path | None, run_code: int, min_phantoms: int = 0, min_leaked_usd: float = 0.0) -> int:
    """The exit code of a finished `harness run --bisect`: from the run folder's verdict.json, not from whether the
    verdict matched the scenario's expectation (`run_code`, except an interrupt: 130 stays 130)."""
    if run_code == INTERRUPTED_EXIT:
        return INTERRUPTED_EXIT
    summary = read_summary(run_dir) if run_dir is not None else None
    if summary is None:
        return SKIP_EXIT
    return outcome_exit(summary.verdict, summary.phantoms, summary.leaked_usd, min_phantoms, min_leaked_usd)


def cli_exit(code: int | None) -> int:
    """What the process exits with in --bisect mode, whatever ended it: 0 / 1 / 125 / 130 pass, anything else
    (2 bad input or a broken stack, a usage error, a crash) is 125."""
    code = 0 if code is None else code
    return code if code in _ALLOWED else SKIP_EXIT


def say(console: Console, code: int, why: str) -> None:
    """One line naming what git bisect will read."""
    word = {GOOD_EXIT: "good", BAD_EXIT: "bad", SKIP_EXIT: "skip", INTERRUPTED_EXIT: "abort"}.get(code, "skip")
    console.print(f"git bisect: {word} (exit {code}) — {why}", highlight=False, soft_wrap=True)


def describe(code: int, verdict: str | None) -> str:
    if code == GOOD_EXIT:
        return f"{verdict}: the bug is absent" + ("" if verdict == "NOT REPRODUCED" else " (weak evidence only)")
    if code == BAD_EXIT:
        return f"{verdict}: the bug is present"
    if code == INTERRUPTED_EXIT:
        return "interrupted"
    return f"{verdict or 'no verdict'}: this commit could not be decided"
