"""`harness bisect`: the first released version where a scenario's outcome changes.

Outcome labels are the scenario's: a *bad* version reproduces the bug (REPRODUCED), a *good* one is clean
(NOT REPRODUCED). good older than bad → the first bad release; bad older than good → the first fixed one.

Search: versions = [older end] + releases strictly between + [newer end]; `lo` holds the older end's outcome,
`hi` the newer end's. Each step probes the untested version nearest the middle of (lo, hi) (ties: the
upper one first). A probe that decides nothing (uninstallable, stack error, INCONCLUSIVE) is skipped and the
next step takes its nearest neighbour. When nothing untested is left inside (lo, hi), `hi` is the first
version with the newer outcome — or, when skipped versions lie between lo and hi, one of those or `hi`.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import Version

from harness.errors import HarnessError
from harness.matrix.execute import OK, UNINSTALLABLE, CellResult
from harness.run.runfolder import REPORT_FILE

BAD, GOOD = "reproduced", "clean"
FIRST_BAD, FIRST_FIXED = "first bad", "first fixed"
CSV_COLUMNS = ("step", "version", "range_before", "status", "verdict", "outcome", "decision", "phantoms",
               "leaked_usd", "max_inflation_usd", "wall_s", "run_dir", "reason")


Classify = Callable[[CellResult], str | None]


def verdict_outcome(result: CellResult) -> str | None:
    """The analyzer's verdict as the outcome: REPRODUCED → reproduced, NOT REPRODUCED → clean, else None."""
    return result.outcome


def evidence_outcome(min_phantoms: int = 0, min_leaked_usd: float = 0.0) -> Classify:
    """Like `verdict_outcome`, but a REPRODUCED run counts as reproduced only with material evidence: at
    least `min_phantoms` phantom rejections or `min_leaked_usd` leaked after the drain. Below that the run
    showed no material leak and counts as clean (a loaded machine can turn a late release into one phantom,
    and a fixed version that bills the streamed part can sit a few cents above the ledger's band)."""

    def classify(result: CellResult) -> str | None:
        outcome = result.outcome
        if outcome != BAD or (min_phantoms <= 0 and min_leaked_usd <= 0):
            return outcome
        strong = (min_phantoms > 0 and (result.phantoms or 0) >= min_phantoms) or (
            min_leaked_usd > 0 and (result.leaked_usd or 0.0) >= min_leaked_usd)
        return BAD if strong else GOOD

    return classify


@dataclass
class Probe:
    step: int
    version: str
    result: CellResult
    range_before: tuple[str, str]     # (lo, hi) when this version was chosen
    decision: str                     # "→ lo" / "→ hi" / "skipped: …" / "end check"
    outcome: str | None = None        # reproduced / clean / None (decided nothing)

    def row(self) -> dict[str, object]:
        r = self.result
        lo, hi = self.range_before
        return {"step": self.step, "version": self.version, "range_before": f"{lo}..{hi}",
                "status": r.status, "verdict": r.verdict or "", "outcome": self.outcome or "",
                "decision": self.decision, "phantoms": _blank(r.phantoms), "leaked_usd": _blank(r.leaked_usd),
                "max_inflation_usd": _blank(r.max_inflation_usd), "wall_s": _blank(r.wall_s),
                "run_dir": r.run_dir, "reason": r.reason if self.outcome is None else ""}


def _blank(v: object) -> object:
    return "" if v is None else v


@dataclass
class BisectResult:
    scenario: str
    good: str
    bad: str
    direction: str
    versions: list[str]               # older end, candidates, newer end
    probes: list[Probe] = field(default_factory=list)
    lo: str = ""                      # last version known with the older end's outcome
    hi: str = ""                      # first version known with the newer end's outcome
    ambiguous: list[str] = field(default_factory=list)   # skipped versions in (lo, hi): could be the first
    excluded: dict[str, str] = field(default_factory=dict)  # releases the harness rejects, and why
    error: str = ""                   # an end did not show its stated outcome

    @property
    def first(self) -> str | None:
        return None if self.error else self.hi

    @property
    def exact(self) -> bool:
        return not self.error and not self.ambiguous

    @property
    def exit_code(self) -> int:
        return 0 if self.exact else 1

    def headline(self) -> str:
        if self.error:
            return f"no answer: {self.error}"
        what = "first bad (REPRODUCED)" if self.direction == FIRST_BAD else "first fixed (NOT REPRODUCED)"
        if self.ambiguous:
            return (f"{what} release is one of {', '.join(self.ambiguous + [self.hi])} (last with the old outcome: "
                    f"{self.lo}; {', '.join(self.ambiguous)} could not be decided)")
        return f"{what} release: {self.hi} (the one before it, {self.lo}, still shows the old outcome)"


def bisect_versions(versions: list[str], good: str, bad: str, probe: Callable[[str], CellResult], *,
                    check_ends: bool = False, scenario: str = "",
                    on_probe: Callable[[Probe, BisectResult], None] | None = None,
                    excluded: dict[str, str] | None = None, classify: Classify = verdict_outcome) -> BisectResult:
    """Binary search over `versions` (the releases strictly between good and bad, any order)."""
    if Version(good) == Version(bad):
        raise HarnessError(f"--good and --bad are the same version ({good})", "pass two different releases")
    good_older = Version(good) < Version(bad)
    older, newer = (good, bad) if good_older else (bad, good)
    old_outcome, new_outcome = (GOOD, BAD) if good_older else (BAD, GOOD)
    inside = sorted({v for v in versions if Version(older) < Version(v) < Version(newer)}, key=Version)
    line = [older, *inside, newer]
    res = BisectResult(scenario=scenario, good=good, bad=bad, direction=FIRST_BAD if good_older else FIRST_FIXED,
                       versions=line, excluded=dict(excluded or {}))
    lo, hi = 0, len(line) - 1
    skipped: set[int] = set()
    step = 0

    def run(i: int, decision_for: Callable[[CellResult, str | None], str]) -> Probe:
        nonlocal step
        step += 1
        result = probe(line[i])
        outcome = classify(result)
        p = Probe(step, line[i], result, (line[lo], line[hi]), decision_for(result, outcome), outcome)
        res.probes.append(p)
        return p

    def report() -> None:
        res.lo, res.hi = line[lo], line[hi]
        if on_probe:
            on_probe(res.probes[-1], res)

    if check_ends:
        for i, want in ((0, old_outcome), (len(line) - 1, new_outcome)):
            def end_check(r: CellResult, o: str | None, want: str = want) -> str:
                return "end check: " + ("as stated" if o == want else f"expected {want}")

            got = run(i, end_check).outcome
            report()
            if got != want:
                role = "good" if line[i] == good else "bad"
                res.error = (f"--{role} {line[i]} did not show '{want}' (got {got or 'no decision'}): "
                             "the ends must differ")
                res.lo, res.hi = line[lo], line[hi]
                return res

    while True:
        todo = [i for i in range(lo + 1, hi) if i not in skipped]
        if not todo:
            break
        mid = (lo + hi) // 2
        i = min(todo, key=lambda j: (abs(j - mid), j < mid))

        def decide(r: CellResult, o: str | None, i: int = i) -> str:
            weak = (f" (analyzer: {r.verdict} on weak evidence: {r.phantoms} phantom(s), "
                    f"${r.leaked_usd or 0:.4g} leaked)") if o != r.outcome else ""
            if o == old_outcome:
                return f"{o}{weak}: first change is after {line[i]}"
            if o == new_outcome:
                return f"{o}{weak}: first change is at or before {line[i]}"
            why = r.reason or r.verdict or r.status
            return f"skipped ({r.status if r.status != 'ok' else r.verdict}): {why}; trying a neighbour"

        result = run(i, decide)
        if result.outcome == old_outcome:
            lo = i
        elif result.outcome == new_outcome:
            hi = i
        else:
            skipped.add(i)
        report()
    res.lo, res.hi = line[lo], line[hi]
    res.ambiguous = [line[i] for i in sorted(skipped) if lo < i < hi]
    return res


def probes_left(res: BisectResult) -> int:
    """Rough number of probes still needed (log2 of the untested range)."""
    lo, hi = res.versions.index(res.lo or res.versions[0]), res.versions.index(res.hi or res.versions[-1])
    tested = {p.version for p in res.probes}
    n = sum(1 for v in res.versions[lo + 1:hi] if v not in tested)
    return math.ceil(math.log2(n + 1)) if n else 0


def read_probes(previous: Path, out_dir: Path) -> dict[str, CellResult]:
    """Probes of an earlier bisect of the same scenario (its bisect.csv), to resume without re-running them.

    Runs that decided something and versions that could not be installed are reused; stack errors are not
    (they are usually transient). Run folders stay where they are (linked relative to `out_dir`)."""
    import os

    path = previous / "bisect.csv" if previous.is_dir() else previous
    if not path.exists():
        raise HarnessError(f"--resume {previous}: no bisect.csv there", "pass a results/bisect-<id> folder")
    out: dict[str, CellResult] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["status"] not in (OK, UNINSTALLABLE) or (row["status"] == OK and not row["verdict"]):
                continue
            r = CellResult.from_row({**row, "scenario": "", "repeat": "1"})
            if r.run_dir:
                r.run_dir = os.path.relpath((path.parent / r.run_dir).resolve(), out_dir.resolve())
            out[row["version"]] = r
    return out


def append_csv(path: Path, probe: Probe) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(probe.row())


def _one_line(text: str, limit: int = 240) -> str:
    flat = " ".join(text.split()).replace("|", "/")
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def render_md(res: BisectResult, command: str, started: float | None = None, done: bool = True) -> str:
    from harness.matrix.report import num
    from harness.util.fmt import money

    title = f"# Bisect {res.scenario}: {res.direction} between {res.good} (good) and {res.bad} (bad)"
    parts = [title, "", f"**Result:** {res.headline() if done else 'running …'}", "", f"Command: `{command}`", "",
             f"Outcome labels: bad = REPRODUCED (\"{BAD}\"), good = NOT REPRODUCED (\"{GOOD}\"). "
             f"{len(res.versions) - 2} released version(s) strictly between the ends (final X.Y.Z releases from "
             f"the package index the harness can run), {len(res.probes)} probe(s)."
             + (f" Wall time {(time.time() - started) / 60:.1f} min." if started else ""), "",
             "| step | version | range before | verdict | outcome | phantoms | leaked $ | max inflation | wall | "
             "decision | run |", "|" + "---|" * 11]
    for p in res.probes:
        r = p.result
        link = f"[{Path(r.run_dir).name}]({r.run_dir}/{REPORT_FILE})" if r.run_dir and r.status == OK else "–"
        verdict = r.verdict or r.status
        parts.append(f"| {p.step} | {p.version} | {p.range_before[0]} … {p.range_before[1]} | {verdict} | "
                     f"{p.outcome or '–'} | {num(r.phantoms)} | {money(r.leaked_usd)} | "
                     f"{money(r.max_inflation_usd)} | {num(r.wall_s)} s | {_one_line(p.decision)} | {link} |")
    parts.append("")
    if res.excluded:
        parts += ["Releases in range the harness cannot run (not probed):", ""]
        parts += [f"- {v}: {why}" for v, why in res.excluded.items()]
        parts.append("")
    parts += ["Versions in range: " + ", ".join(res.versions), ""]
    return "\n".join(parts)
