"""Evidence completeness (Jepsen's `:unknown`): can the run's evidence show absence of the bug at all?

Absence of a bug cannot be shown by a run that did not finish, by counters nobody watched or by spend nobody
recorded. Each gap in the evidence is a blocker: a clean verdict becomes INCONCLUSIVE with the reason. Only
missing ground truth also vetoes findings (`CheckResult.vetoes`): without the mock's ledger every end user's
true spend reads 0, so no phantom rejection and no leak can be claimed either. The other gaps leave findings
standing: they were measured on the evidence that is there.

- interrupted: meta.json `status` "interrupted" or "failed", or no `t_drain_end` (the run never finished its
  drain).
- no ground truth: the ledger is empty although requests succeeded, or none of its rows names an end user of
  the scenario.
- unmatched ground truth: ledger rows whose end user (after the request-id join) is not an end user of the
  scenario (the scenario's ids, the `budget.per_user` ones, or an id the client sent) are no one's true spend.
  Material when their spend could move a judgement (more than one max reservation; see README.md).
- sampler gaps: two written sample rounds further apart than `GAP_INTERVALS` sampling intervals during the
  load or the drain, outside every fault window.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.analyze.checker import Check, CheckResult, Results
from harness.analyze.classify import OK
from harness.analyze.context import Context
from harness.analyze.jsonable import num
from harness.analyze.windows import fault_windows

# The sampler keeps to its grid and skips the ticks a slow round overran: one slow round (a loaded machine)
# gives a gap of up to 2 intervals, a round skipped on a read error one more. More than this many intervals
# without a written round is a stalled or blind sampler, not jitter.
GAP_INTERVALS = 5.0
UNFINISHED = ("interrupted", "failed")


class Completeness(Check):
    name = "completeness"
    section = "completeness"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        blockers: list[str] = []
        vetoes: list[str] = []
        notes: list[str] = []
        evidence: dict[str, Any] = {}

        blockers += _unfinished(ctx, evidence)
        truth_blockers, truth_vetoes, truth_notes = _ground_truth(ctx, evidence)
        blockers += truth_blockers
        vetoes += truth_vetoes
        notes += truth_notes
        gap_blockers, gap_notes = _sampler_gaps(ctx, evidence)
        blockers += gap_blockers
        notes += gap_notes

        problems = len(blockers) + len(vetoes)
        return CheckResult(blockers=blockers, vetoes=vetoes, notes=notes, evidence=evidence,
                           summary={"evidence_problems": problems,
                                    "unmatched_ledger_rows": evidence["unmatched_ledger_rows"]},
                           passed=[] if problems else ["the evidence is complete: the run finished its drain, every "
                                                       "ledger row names an end user, no sampler gap"])

    def report_rows(self, section: dict[str, Any]) -> list[tuple[str, str]]:
        gap = section.get("max_sampler_gap_s")
        return [("evidence", f"run status {section.get('status') or 'not recorded'}, drain "
                 f"{'finished' if section.get('drain_finished') else 'not finished'}; "
                 f"{section.get('unmatched_ledger_rows', 0)} unmatched ledger row(s); largest sampler gap "
                 f"{'–' if gap is None else f'{gap:.1f} s'} (limit {section.get('sampler_gap_limit_s', 0):.1f} s)")]


def _unfinished(ctx: Context, evidence: dict[str, Any]) -> list[str]:
    status = ctx.data.meta.get("status")
    evidence.update(status=status, drain_finished=ctx.t_drain_end is not None)
    out: list[str] = []
    if status in UNFINISHED:
        failed_at = ctx.data.meta.get("failed_at")
        where = f" at {failed_at}" if failed_at else ""
        out.append(f"the run was {status}{where}: a run that did not finish cannot show the bug is absent")
    elif ctx.t_drain_end is None:
        out.append("the run never finished its drain (meta.json has no t_drain_end): a run that did not finish "
                   "cannot show the bug is absent")
    return out


def _scenario_users(ctx: Context) -> set[str]:
    scen = ctx.data.scenario
    sent = ctx.requests["end_user"].astype(str)
    return set(scen.end_users.ids()) | set(scen.budget.per_user) | set(sent[sent != ""])


def _ground_truth(ctx: Context, evidence: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    ledger = ctx.ledger
    ok = int((ctx.requests["cls"] == OK).sum())
    if not len(ledger):
        evidence.update(unmatched_ledger_rows=0, unmatched_ledger_usd=0.0)
        if ok:
            return [], [f"the mock's ledger is empty although {ok} request(s) succeeded: no ground truth, so no "
                        "phantom rejection and no leak can be claimed"], []
        return [], [], []
    users = ledger["end_user"].astype(str)
    unmatched = ~users.isin(_scenario_users(ctx)).to_numpy()
    n, usd = int(unmatched.sum()), float(ledger.loc[unmatched, "high"].sum())
    evidence.update(unmatched_ledger_rows=n, unmatched_ledger_usd=num(usd),
                    unmatched_ledger_sample=sorted(set(users[unmatched]))[:5])
    if not n:
        return [], [], []
    what = (f"{n} of {len(ledger)} ledger row(s) (${usd:.6g} true spend) name no end user of the scenario "
            f"(e.g. {', '.join(repr(u) for u in evidence['unmatched_ledger_sample'])})")
    if n == len(ledger):
        return [], [f"{what}: no ground truth for any end user, so no phantom rejection and no leak can be "
                    "claimed"], []
    if usd > ctx.max_reservation:
        return [f"{what}: more than one max reservation (${ctx.max_reservation:.6g}) of spend is no one's, so "
                "any end user's true spend may be understated"], [], []
    return [], [], [f"{what}: at most one max reservation (${ctx.max_reservation:.6g}), inside the margin the "
                    "checks keep"]


def _sampler_gaps(ctx: Context, evidence: dict[str, Any]) -> tuple[list[str], list[str]]:
    interval = float(ctx.data.scenario.sampling.interval_s)
    limit = GAP_INTERVALS * interval
    evidence.update(sampler_interval_s=interval, sampler_gap_limit_s=limit, max_sampler_gap_s=None, sampler_gaps=[])
    s = ctx.samples
    if not len(s):
        return [], []       # no counter seen at all: the inflation check's blocker says so
    rounds = s.groupby("sample", sort=True)["t"].min().astype(float)
    rounds = rounds[np.isfinite(rounds.to_numpy())].sort_values()
    t = rounds.to_numpy()
    seq = rounds.index.to_numpy(dtype=float)
    end = ctx.t_drain_end if ctx.t_drain_end is not None else ctx.t_load_end
    starts, ends = t[:-1], t[1:]
    # rounds that ran but found nothing to write (no counter, no DB row) still advance `sample`: they are not gaps
    empty_rounds = np.maximum(np.diff(seq) - 1, 0) if len(seq) > 1 else np.zeros(0)
    gaps = (ends - starts) - empty_rounds * interval
    if len(t) and end - t[-1] > limit:       # the sampler stopped before the drain ended
        starts, ends, gaps = np.r_[starts, t[-1]], np.r_[ends, end], np.r_[gaps, end - t[-1]]
    inside = (ends > ctx.t0) & (starts < end)
    evidence["max_sampler_gap_s"] = num(float(gaps[inside].max())) if inside.any() else None
    windows = [(w.start, w.end if w.end is not None else end) for w in fault_windows(ctx)]
    blockers: list[str] = []
    notes: list[str] = []
    for a, b, g in zip(starts[inside], ends[inside], gaps[inside], strict=True):
        if g <= limit:
            continue
        evidence["sampler_gaps"].append({"from": num(a - ctx.t0), "to": num(b - ctx.t0), "s": num(g)})
        what = f"no sample for {g:.1f} s ({a - ctx.t0:.1f}–{b - ctx.t0:.1f} s after load start)"
        if any(a < we and b > ws for ws, we in windows):
            notes.append(f"{what}, during a fault window: the fault made the sampler's reads fail")
        else:
            blockers.append(f"sampler gap: {what}, more than {GAP_INTERVALS:g} × the {interval:g} s sampling "
                            "interval: counters went unobserved")
    return blockers, notes
