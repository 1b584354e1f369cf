"""Orphaned reservations over time: at any sample (during the load or the drain), an end user's counter above
its true spend by more than the billing disagreement can explain while no request of that end user was left
that could hold a reservation (every one ended, plus the release grace derived from the run's latency). Such
an excess outlived every request that could own it: a leaked reservation, even when the key expired (60 s TTL)
before the drain sample. Counted as `leak` (like the drain check, which only sees the last sample)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.analyze.checker import Check, CheckResult, Results, prerequisite
from harness.analyze.checks.inflation import InflationResult
from harness.analyze.classify import BUDGET
from harness.analyze.context import Context, holders, tolerance
from harness.analyze.jsonable import num, row_dict
from harness.analyze.report import secs
from harness.analyze.truespend import count_overlapping
from harness.util.fmt import money


@dataclass
class OrphanResult:
    # per end user with an orphaned excess: end_user, first (first sample with nothing left to hold it) / last
    # (s after t0), samples (from first to last), max_excess (at the samples with nothing in flight), at_drain
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    samples_judged: int = 0           # sample rows with a counter and no request that could hold a reservation
    within_billing_users: int = 0     # end users whose unheld excess stayed within the billing disagreement
    within_billing_max: float = 0.0

    def evidence(self) -> dict[str, Any]:
        t = self.table
        expired = t.loc[~t["at_drain"]] if len(t) else t
        return {
            "samples_judged": self.samples_judged, "orphaned_users": len(t),
            "orphaned_usd": num(t["max_excess"].sum()) if len(t) else 0.0,
            "expired_before_drain_users": len(expired),
            "within_billing_users": self.within_billing_users, "within_billing_max": num(self.within_billing_max),
            "first": row_dict(t.loc[t["first"].idxmin()]) if len(t) else None,
            "worst": row_dict(t.loc[t["max_excess"].idxmax()]) if len(t) else None,
        }


@dataclass
class SampleExcess:
    """Per sampled counter row of end users (sorted by end user, then time): whether the key existed, whether no
    request of that end user could hold a reservation (`free`), the counter's excess over the true spend
    (NaN where the key did not exist), its float tolerance and the billing allowance (`limit` = both)."""

    sel: np.ndarray
    codes: np.ndarray
    t: np.ndarray
    exists: np.ndarray
    free: np.ndarray
    excess: np.ndarray
    reference: np.ndarray
    limit: np.ndarray
    held: np.ndarray        # requests of the same code that could hold a reservation at that sample


def sample_excess(ctx: Context, inflation: InflationResult, users: np.ndarray | None = None) -> SampleExcess | None:
    """The samples' excess over what the run can explain (of `users` only, when given); None: no sample."""
    rows = inflation.rows
    mask = (rows.code >= 0) & (rows.t <= ctx.ledger_horizon)
    if users is not None:
        mask &= np.isin(rows.code, users)
    sel = np.flatnonzero(mask)
    if not len(sel):
        return None
    sel = sel[np.lexsort((rows.t[sel], rows.code[sel]))]     # per end user, in time order
    codes, t, counter = rows.code[sel], rows.t[sel], rows.counter[sel]
    # every request that could hold a reservation of its end user: the holders, and budget rejections too
    # (a rejection through the reservation path adds one and takes it back: a sample may fall in between)
    h = holders(ctx)
    rej = ctx.requests.loc[ctx.requests["cls"] == BUDGET]
    h_code = np.r_[h["code"].to_numpy(dtype=np.int64), rej["code"].to_numpy(dtype=np.int64)]
    h_start = np.r_[h["t_start"].to_numpy(dtype=float), rej["t_start"].to_numpy(dtype=float)]
    h_end = np.r_[h["t_end"].to_numpy(dtype=float, na_value=np.nan), rej["t_end"].to_numpy(dtype=float,
                                                                                           na_value=np.nan)]
    held = count_overlapping(h_code, h_start, h_end + ctx.release_grace_s, codes, t, t, ctx.spend.t_ref)
    exists = ~np.isnan(counter)
    reference = np.fmax(rows.high[sel], rows.db[sel])       # a counter equal to DB spend is billing
    return SampleExcess(sel=sel, codes=codes, t=t, exists=exists, free=(held == 0) & exists,
                        excess=counter - reference, reference=reference,
                        limit=tolerance(reference) + ctx.billing.allowance(codes), held=held)


@dataclass
class UnheldResult:
    """Counter readings above the true spend by more than every request in flight could hold (each at most one
    reservation of the run's largest estimate, capped by the budget): an excess no request owns, read while the
    load was running. One row per entity (end_user names it): its worst reading."""

    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    samples_judged: int = 0

    def evidence(self) -> dict[str, Any]:
        t = self.table
        return {"samples_judged": self.samples_judged, "entities": len(t),
                "excess_usd": num(t["beyond"].sum()) if len(t) else 0.0,
                "worst": row_dict(t.loc[t["beyond"].idxmax()]) if len(t) else None}


def judge_unheld(ctx: Context, inflation: InflationResult) -> UnheldResult:
    """The orphan check's bound widened to readings with requests in flight: counter − max(true high, DB) beyond
    (requests in flight × one reservation each) + the float tolerance + the billing allowance."""
    se = sample_excess(ctx, inflation)
    if se is None:
        return UnheldResult()
    budget = ctx.budget_by_code[np.maximum(se.codes, 0)] if len(ctx.budget_by_code) else np.full(len(se.codes),
                                                                                                  np.nan)
    per_res = np.minimum(ctx.max_reservation, np.nan_to_num(budget, nan=np.inf))
    beyond = se.excess - se.held * per_res
    found = se.exists & (beyond > se.limit)
    out = UnheldResult(samples_judged=int(se.exists.sum()))
    rows: list[dict[str, Any]] = []
    for code in np.unique(se.codes[found]):
        idx = np.flatnonzero(found & (se.codes == code))
        worst = idx[np.argmax(beyond[idx])]
        rows.append({"code": int(code), "first": float(se.t[idx[0]]) - ctx.t0, "readings": len(idx),
                     "at": float(se.t[worst]) - ctx.t0, "counter": float(se.excess[worst] + se.reference[worst]),
                     "reference": float(se.reference[worst]), "in_flight": int(se.held[worst]),
                     "per_reservation": float(per_res[worst]), "beyond": float(beyond[worst])})
    if rows:
        table = pd.DataFrame(rows)
        table.insert(0, "end_user", ctx.names(table["code"].to_numpy()))
        out.table = table.drop(columns="code").reset_index(drop=True)
    return out


def judge_orphans(ctx: Context, inflation: InflationResult) -> OrphanResult:
    se = sample_excess(ctx, inflation)
    if se is None:
        return OrphanResult()
    codes, t, exists, free, excess, reference, limit = (se.codes, se.t, se.exists, se.free, se.excess, se.reference,
                                                        se.limit)
    above = excess > limit
    small = free & (excess > tolerance(reference)) & ~above
    out = OrphanResult(samples_judged=int(free.sum()))
    found: list[dict[str, Any]] = []
    t_last = float(t.max())
    for code in np.unique(codes[free & above]):
        found += _orphans_of(int(code), np.flatnonzero(codes == code), t, exists, free, above, excess, t_last)
    small_users = set(codes[small].tolist()) - {f["code"] for f in found}
    out.within_billing_users = len(small_users)
    out.within_billing_max = float(np.nanmax(excess[small & np.isin(codes, list(small_users))])) if small_users \
        else 0.0
    if found:
        table = pd.DataFrame(found)
        table = table.sort_values("max_excess", ascending=False).drop_duplicates("code").sort_values("first")
        table.insert(0, "end_user", ctx.names(table["code"].to_numpy()))
        table["first"] -= ctx.t0
        table["last"] -= ctx.t0
        out.table = table.drop(columns="code").reset_index(drop=True)
    return out


def _orphans_of(code: int, idx: np.ndarray, t: np.ndarray, exists: np.ndarray, free: np.ndarray,
                above: np.ndarray, excess: np.ndarray, t_last: float) -> list[dict[str, Any]]:
    """One end user's orphans: per lifetime of its key (a run of samples where the counter exists), the final run
    of samples above the band, if it holds a sample with no request in flight and the excess never came back
    down before the key went (expired) or the samples ended. A counter that comes back down while its key
    exists was released: some request still held that reservation (a late release), not an orphan."""
    out: list[dict[str, Any]] = []
    ex = exists[idx]
    breaks = np.flatnonzero(np.diff(np.r_[0, ex.astype(np.int8), 0]))
    for a, b in zip(breaks[0::2], breaks[1::2], strict=True):       # lifetimes [a, b) in idx positions
        life = idx[a:b]
        ab = above[life]
        if not ab[-1]:
            continue
        not_above = np.flatnonzero(~ab)
        run = life[not_above[-1] + 1:] if len(not_above) else life      # the final run above the band
        orphaned = run[free[run]]
        if not len(orphaned):
            continue
        out.append({"code": code, "first": float(t[orphaned[0]]), "last": float(t[run[-1]]),
                    "samples": int((t[run] >= t[orphaned[0]]).sum()), "max_excess": float(excess[orphaned].max()),
                    "at_drain": bool(t[run[-1]] >= t_last)})
    return out


class Orphans(Check):
    name = "orphans"
    counted_as = "leak"
    section = "orphans"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        inflation = prerequisite(done, "inflation", InflationResult)
        res = judge_orphans(ctx, inflation)
        ev = res.evidence()
        findings: list[str] = []
        notes: list[str] = []
        passed: list[str] = []
        t = res.table
        if len(t):
            findings.append(
                f"{len(t)} end user(s) held orphaned reservations (Σ of each one's largest excess "
                f"{money(ev['orphaned_usd'])}) after every request that could hold them had ended "
                f"(+{ctx.release_grace_s:.1f} s release grace); {ev['expired_before_drain_users']} of them had no "
                "counter left at the drain sample")
        elif res.samples_judged:
            passed.append(f"no orphaned reservation: in {res.samples_judged:,} sample(s) with no request in flight "
                          "no counter exceeded the true spend by more than billing explains")
        if res.within_billing_users:
            notes.append(f"{res.within_billing_users} end user(s) had a counter above the true spend with no request "
                         f"in flight by up to {money(res.within_billing_max)}: within the billing disagreement, not "
                         "an orphaned reservation")
        summary = {"orphaned_users": len(t), "orphaned_usd": ev["orphaned_usd"],
                   "orphaned_expired_users": ev["expired_before_drain_users"]}
        return CheckResult(findings=findings, notes=notes, passed=passed, evidence=ev, summary=summary, data=res)

    def report_rows(self, section: dict[str, Any]) -> list[tuple[str, str]]:
        rows = [("orphaned reservations", f"{section['orphaned_users']} end users, Σ "
                 f"{money(section['orphaned_usd'])}; {section['expired_before_drain_users']} gone before the drain "
                 f"sample; {section['samples_judged']:,} samples with no request in flight")]
        for key in ("first", "worst"):
            x = section.get(key)
            if x:
                rows.append((f"{key} orphan", f"{x['end_user']}: excess up to {money(x['max_excess'])} from "
                             f"{secs(x['first'])} to {secs(x['last'])} ({x['samples']} samples)"))
        return rows
