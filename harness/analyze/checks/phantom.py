"""Phantom rejections: budget rejections of end users whose true spend, plus what billing disagreement can add
to it (harness/analyze/billing.py), was below their budget minus the reservations they could legitimately hold
(definition: harness/analyze/README.md). Counted as `phantom`.

A rejection whose excess was later taken back is a *late release*, not a phantom: the samples saw the end
user's counter above what the run explains (true spend + billing allowance) around the rejection, and then back
down to it at a later sample with no request of theirs in flight, while its key existed all along (so not a TTL
expiry). The reservation was held by a request the
proxy had not finished with yet (a starved proxy notices a walk-away late); a leaked reservation never comes
back down. Late releases are notes with their lag, never findings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.analyze.checker import Check, CheckResult, Results
from harness.analyze.checks.inflation import InflationResult
from harness.analyze.checks.orphans import sample_excess
from harness.analyze.classify import BUDGET, DISCONNECT, OK
from harness.analyze.context import Context, holders
from harness.analyze.jsonable import num, row_dict, share
from harness.analyze.report import secs
from harness.analyze.truespend import count_overlapping
from harness.util.fmt import money, pct


@dataclass
class PhantomResult:
    rejections: int                 # every failed request but our own walk-aways
    budget_rejections: int
    budget_rejections_end_user: int  # of those, naming an end user (the ones the check can judge)
    wordings: dict[str, int]
    status_codes: dict[str, int]    # of budget rejections
    table: pd.DataFrame             # every budget rejection: t_rel, end_user, printed, true band, threshold, phantom
    count: int = 0
    affected_users: list[str] = field(default_factory=list)

    @property
    def first_t(self) -> float | None:
        """Seconds after the load started of the first phantom rejection."""
        return num(self.table.loc[self.table["phantom"], "t_rel"].min()) if self.count else None

    def evidence(self, ctx: Context) -> dict[str, Any]:
        ph = self.table.loc[self.table["phantom"]]
        out: dict[str, Any] = {
            "count": self.count,
            "rejections": self.rejections,
            "budget_rejections": self.budget_rejections,
            "budget_rejections_naming_end_user": self.budget_rejections_end_user,
            "share_of_rejections": share(self.count, self.rejections),
            "share_of_budget_rejections": share(self.count, self.budget_rejections),
            "wordings": self.wordings,
            "budget_rejection_status_codes": self.status_codes,
            "affected_end_users": len(self.affected_users),
            "affected_end_users_sample": self.affected_users[:20],
            "max_reservation": ctx.max_reservation,
            "within_billing": int(self.table["within_billing"].sum()) if len(self.table) else 0,
            "released_late": int(self.table["released_late_s"].notna().sum()) if len(self.table) else 0,
            "released_late_max_s": num(self.table["released_late_s"].max()) if len(self.table) else None,
            "first": None,
            "worst": None,
        }
        if len(ph):
            out["first"] = row_dict(ph.loc[ph["t_rel"].idxmin()])
            excess = ph["excess"]
            out["worst"] = row_dict(ph.loc[excess.idxmax()]) if excess.notna().any() else None
        return out


def _released_late(ctx: Context, inflation: InflationResult | None, codes: np.ndarray, t_end: np.ndarray,
                   candidates: np.ndarray) -> np.ndarray:
    """Per rejection: seconds after it ended until its end user's counter was back to what the run explains with
    nothing in flight (its key existing at every sample in between); NaN: never (or not a candidate)."""
    lag = np.full(len(codes), np.nan)
    if inflation is None or not candidates.any() or not len(ctx.ledger):
        return lag      # without ground truth nothing is "explained": the printed counter stands
    se = sample_excess(ctx, inflation, np.unique(codes[candidates]))
    if se is None:
        return lag
    explained = se.free & ~(se.excess > se.limit)
    starts = np.searchsorted(se.codes, codes, side="left")
    ends = np.searchsorted(se.codes, codes, side="right")
    for i in np.flatnonzero(candidates):
        a, b = starts[i], ends[i]
        t = se.t[a:b]
        k = int(np.searchsorted(t, t_end[i], side="right"))
        after_exists, after_explained = se.exists[a + k:b], explained[a + k:b]
        gone = np.flatnonzero(~after_exists)
        stop = int(gone[0]) if len(gone) else len(after_exists)      # the key expired (or was deleted) here
        back = np.flatnonzero(after_explained[:stop])
        if not len(back):
            continue
        # the excess must have been seen (the last sample at or before the rejection, up to the release), else
        # the samples say nothing about it and the printed counter stands
        first = max(a, a + k - 1)
        seen = se.excess[first:a + k + int(back[0])] > se.limit[first:a + k + int(back[0])]
        if seen.any():
            lag[i] = float(t[k + int(back[0])] - t_end[i])
    return lag


def judge_rejections(ctx: Context, inflation: InflationResult | None = None) -> PhantomResult:
    r = ctx.requests
    failed = r["cls"] != OK
    rejections = int((failed & (r["cls"] != DISCONNECT)).sum())
    b = r.loc[r["cls"] == BUDGET]
    wordings = {k: int(v) for k, v in b["wording"].replace("", "unparsed").value_counts().items()}
    status_codes = {str(int(k)) if pd.notna(k) else "none": int(v)
                    for k, v in b["status"].value_counts(dropna=False).items()}
    codes = b["code"].to_numpy()
    t_start = b["t_start"].to_numpy(dtype=float)
    t_end = b["t_end"].to_numpy(dtype=float, na_value=np.nan)
    t_end = np.where(np.isnan(t_end), t_start, t_end)
    # everything the proxy could have counted by the time it answered
    low, high = ctx.spend.at(codes, t_end)
    budget = np.where(codes >= 0, ctx.budget_by_code[np.maximum(codes, 0)], np.nan) if len(
        ctx.users) else np.full(len(b), np.nan)
    printed_budget = b["printed_budget"].to_numpy()
    budget = np.where(np.isnan(budget), printed_budget, budget)
    # reservations legitimately held at that moment: its own + one per request of that user in flight
    h = holders(ctx)
    h_end = h["t_end"].to_numpy(dtype=float, na_value=np.nan)
    in_flight = count_overlapping(h["code"].to_numpy(), h["t_start"].to_numpy(dtype=float),
                                  h_end + ctx.release_grace_s, codes, t_start, t_end, ctx.spend.t_ref)
    per_res = np.minimum(ctx.max_reservation, np.nan_to_num(budget, nan=np.inf))
    # the rejected request's own reservation is an ordinary one (mix.first_requests may reserve more)
    own = ctx.max_reservation if ctx.own_max_reservation is None else ctx.own_max_reservation
    own_res = np.minimum(own, np.nan_to_num(budget, nan=np.inf))
    # LiteLLM's bill of the end user may sit above the ledger's truth by the billing disagreement
    billing = ctx.billing.allowance(codes)
    threshold = budget - in_flight * per_res - own_res - billing
    judged = (codes >= 0) & ~np.isnan(budget) & (b["detail"].to_numpy() == ctx.judged_detail) & (
        t_end <= ctx.ledger_horizon)
    phantom = judged & (high < threshold)
    within_billing = judged & ~phantom & (high < threshold + billing)
    printed = b["printed_counter"].to_numpy()
    late_lag = _released_late(ctx, inflation, codes, t_end, judged & (high < threshold))
    late = ~np.isnan(late_lag)
    phantom &= ~late
    table = pd.DataFrame({
        "t_rel": t_start - ctx.t0, "end_user": ctx.names(codes),
        "status": b["status"].to_numpy(), "wording": b["wording"].to_numpy(), "printed_counter": printed,
        "printed_budget": printed_budget, "true_low": low, "true_high": high, "budget": budget,
        "in_flight": in_flight, "billing_allowance": billing, "threshold": threshold, "phantom": phantom,
        "within_billing": within_billing, "excess": printed - high, "released_late_s": late_lag,
    }, index=b.index)
    affected = sorted(set(table.loc[table["phantom"], "end_user"].astype(str)))
    return PhantomResult(rejections=rejections, budget_rejections=len(b),
                         budget_rejections_end_user=int((b["detail"] == ctx.judged_detail).sum()), wordings=wordings,
                         status_codes=status_codes, table=table, count=int(phantom.sum()), affected_users=affected)


class Phantom(Check):
    name = "phantom"
    counted_as = "phantom"
    section = "phantom"
    picture = "rejections.png"
    picture_alt = "Rejections over time by class"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        infl = done.get("inflation")
        ph = judge_rejections(ctx, infl.data if infl is not None and isinstance(infl.data, InflationResult)
                              else None)
        findings, passed, notes = [], [], []
        late = ph.table.loc[ph.table["released_late_s"].notna()] if len(ph.table) else ph.table
        if len(late):
            notes.append(f"{len(late)} budget rejection(s) of {late['end_user'].nunique()} end user(s) were late "
                         "releases, not phantoms: the counter came back down to the true spend with nothing in flight "
                         f"{late['released_late_s'].min():.0f}–{late['released_late_s'].max():.0f} s later (a "
                         "reservation released after its request ended, e.g. by a starved proxy)")
        near = ph.table.loc[ph.table["within_billing"]]
        if len(near):
            notes.append(f"{len(near)} budget rejection(s) came within the billing disagreement (up to "
                         f"{money(float(near['billing_allowance'].max()))}) of the phantom threshold: not counted "
                         "as phantom")
        if ph.count:
            findings.append(f"{ph.count} phantom budget rejection(s) of {len(ph.affected_users)} end user(s), "
                            f"first at {ph.first_t:.1f} s")
        else:
            passed.append(f"0 phantom rejections among {ph.budget_rejections} budget rejection(s)")
        summary = {"late_release_rejections": len(late),
                   "rejections": ph.rejections, "budget_rejections": ph.budget_rejections, "phantoms": ph.count,
                   "phantom_users": len(ph.affected_users),
                   "phantom_share_of_rejections": share(ph.count, ph.rejections), "first_phantom_s": ph.first_t}
        return CheckResult(findings=findings, passed=passed, notes=notes, evidence=ph.evidence(ctx),
                           summary=summary, data=ph)

    def plot(self, ctx: Context, done: Results, path: Path) -> None:
        from harness.analyze.plots import plot_rejections

        plot_rejections(ctx, done[self.name].data, path)

    def report_rows(self, ph: dict[str, Any]) -> list[tuple[str, str]]:
        rows = [
            ("budget rejections", f"{ph['budget_rejections']:,} (wordings: "
             + (", ".join(f"{k} {v:,}" for k, v in ph["wordings"].items()) or "–") + "; status: "
             + (", ".join(f"{k} {v:,}" for k, v in ph["budget_rejection_status_codes"].items()) or "–") + ")"),
            ("phantom rejections", f"{ph['count']:,} ({pct(ph['share_of_rejections'])} of rejections, "
             f"{ph['affected_end_users']} end users)"),
        ]
        if ph["first"]:
            f = ph["first"]
            rows.append(("first phantom", f"{secs(f['t_rel'])}: {f['end_user']} printed "
                         f"{money(f['printed_counter'])}, true spend {money(f['true_low'])}–"
                         f"{money(f['true_high'])}, budget {money(f['budget'])}"))
        if ph["worst"]:
            w = ph["worst"]
            rows.append(("worst phantom", f"{secs(w['t_rel'])}: {w['end_user']} printed "
                         f"{money(w['printed_counter'])} vs true {money(w['true_high'])} (+{money(w['excess'])})"))
        rows.append(("max reservation (threshold margin)", money(ph["max_reservation"])))
        if ph.get("within_billing"):
            rows.append(("within billing disagreement", f"{ph['within_billing']} budget rejection(s) phantom only "
                         "without the billing allowance (not counted)"))
        return rows
