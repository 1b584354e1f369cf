"""The drain (conservation) check: after the load, each end user's Redis counter against its true spend; a
counter above the band by more than the billing disagreement can explain (harness/analyze/billing.py) and beyond
the reservations still in flight is a leaked reservation; a smaller excess is a note with its size. Counted as
`leak`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.analyze.checker import Check, CheckResult, Results, prerequisite
from harness.analyze.checks.inflation import InflationResult, SampleRows
from harness.analyze.checks.sanity import MIN_REQUESTS
from harness.analyze.context import ABS_TOL, REL_TOL, Context, holders, tolerance
from harness.analyze.jsonable import num, row_dict
from harness.analyze.report import secs
from harness.analyze.truespend import count_overlapping
from harness.util.fmt import money

MEMORY_WHY_NOT = ("the end users' counters live in process memory (counters: memory) and cannot be read (the "
                  "probe reads the run's keys)")


@dataclass
class DrainResult:
    ran: bool
    why_not: str = ""
    t_sample: float | None = None          # seconds after load start of the last sample used
    after_load_end_s: float | None = None
    table: pd.DataFrame = field(default_factory=pd.DataFrame)   # per end user with a counter at the end
    counters_absent: int = 0               # end users with true spend but no counter left to check

    @property
    def leaked(self) -> pd.DataFrame:
        return self.table.loc[self.table["leak"]] if len(self.table) else self.table

    @property
    def within_billing(self) -> pd.DataFrame:
        """Counters above the band by no more than the billing disagreement can explain (a note, not a leak)."""
        return self.table.loc[self.table["within_billing"]] if len(self.table) else self.table

    def evidence(self, ctx: Context) -> dict[str, Any]:
        out: dict[str, Any] = {"ran": self.ran, "tolerance": {"relative": REL_TOL, "absolute": ABS_TOL},
                               "billing": ctx.billing.evidence()}
        if not self.ran:
            out["why_not"] = self.why_not
            out["leaked_users"] = 0
            out["leaked_total"] = 0.0
            return out
        t = self.table
        lk = self.leaked
        wb = self.within_billing
        out.update({
            "within_billing_users": len(wb), "within_billing_max": num(wb["excess"].max()) if len(wb) else 0.0,
            "t_sample": num(self.t_sample), "after_load_end_s": num(self.after_load_end_s),
            "db_caught_up": bool(self.after_load_end_s is not None and self.after_load_end_s >= ctx.db_lag_s),
            "users_checked": len(t), "counters_absent": self.counters_absent,
            "leaked_users": len(lk), "leaked_total": num(lk["leaked"].sum()) if len(lk) else 0.0,
            "counter_total": num(t["counter"].sum()) if len(t) else 0.0,
            "db_total": num(t["db"].sum()) if len(t) else 0.0,
            "true_low_total": num(t["true_low"].sum()) if len(t) else 0.0,
            "true_high_total": num(t["true_high"].sum()) if len(t) else 0.0,
            "undercounted_users": int(t["undercount"].sum()) if len(t) else 0,
            # deflation: counters below the true spend (low bound) after the drain, in $ (Σ true_low − counter)
            "undercounted_total": num((t["true_low"] - t["counter"])[t["undercount"]].sum()) if len(t) else 0.0,
            "undercounted_worst": row_dict(t.loc[(t["true_low"] - t["counter"]).idxmax()])
            if len(t) and t["undercount"].any() else None,
            "db_below_true_low_users": int((t["db"] < t["true_low"] - tolerance(t["true_low"])).sum()) if len(t)
            else 0,
            "db_above_true_high_users": int((t["db"] > t["true_high"] + tolerance(t["true_high"])).sum()) if len(t)
            else 0,
            "first": None, "worst": None, "last": None,
        })
        if len(lk):
            out["first"] = row_dict(lk.loc[lk["t_leak_from"].idxmin()]) if lk["t_leak_from"].notna().any() else None
            out["worst"] = row_dict(lk.loc[lk["leaked"].idxmax()])
            out["last"] = row_dict(lk.loc[lk["t_leak_from"].idxmax()]) if lk["t_leak_from"].notna().any() else None
        return out


def judge_drain(ctx: Context, inflation: InflationResult) -> DrainResult:
    rows = inflation.rows
    if ctx.data.counters_in_memory and not inflation.counters_observed:
        return DrainResult(ran=False, why_not=MEMORY_WHY_NOT)
    post = rows.frame((rows.t >= ctx.t_load_end) & (rows.code >= 0), ctx.t0)
    if not len(post):
        why = "no samples after the load ended" if len(rows) else "no samples at all"
        return DrainResult(ran=False, why_not=why)
    last = post.sort_values("t", kind="stable").drop_duplicates("code", keep="last")
    t_last = float(last["t"].max())
    if t_last > ctx.ledger_horizon:
        return DrainResult(ran=False, why_not=f"ledger.csv was cut at {ctx.ledger_horizon - ctx.t0:.1f} s: the true "
                           "spend at the end is unknown")
    with_counter = last.loc[last["counter"].notna()].copy()
    codes = with_counter["code"].to_numpy()
    t = with_counter["t"].to_numpy()
    h = holders(ctx)
    in_flight = count_overlapping(h["code"].to_numpy(), h["t_start"].to_numpy(dtype=float),
                                  h["t_end"].to_numpy(dtype=float, na_value=np.nan) + ctx.release_grace_s,
                                  codes, t, t, ctx.spend.t_ref)
    high = with_counter["true_high"].to_numpy()
    low = with_counter["true_low"].to_numpy()
    counter = with_counter["counter"].to_numpy()
    db = with_counter["db"].to_numpy(dtype=float, na_value=np.nan)
    # A reservation lives only in the counter, never in DB spend: where LiteLLM billed a little more than the
    # mock's ledger (its own token count of a cut stream), a counter equal to DB spend is not a leak.
    reference = np.fmax(high, db)
    held = tolerance(reference) + in_flight * ctx.max_reservation
    billing = ctx.billing.allowance(codes)
    excess = counter - reference
    leak = excess > held + billing
    table = pd.DataFrame({
        "code": codes, "end_user": ctx.names(codes), "t_rel": t - ctx.t0, "counter": counter,
        "db": db, "true_low": low, "true_high": high, "in_flight": in_flight,
        "excess": excess, "billing_allowance": billing,
        "leaked": np.where(leak, excess, 0.0), "leak": leak, "within_billing": (excess > held) & ~leak,
        "undercount": counter < low - tolerance(low),
    })
    table["t_leak_from"] = np.nan
    if leak.any():
        table.loc[leak, "t_leak_from"] = _leak_start(ctx, rows, codes[leak]) - ctx.t0
    # end users with true spend whose counter is gone (expired or never sampled after the load)
    _, final_high = ctx.spend.final()
    spent = set(np.flatnonzero(final_high > 0).tolist())
    absent = len(spent - set(codes.tolist()))
    return DrainResult(ran=True, t_sample=t_last - ctx.t0, after_load_end_s=t_last - ctx.t_load_end, table=table,
                       counters_absent=absent)


def _leak_start(ctx: Context, rows: SampleRows, codes: np.ndarray) -> np.ndarray:
    """Per leaked end user: start of the final run of samples with the counter above the true high bound by more
    than the billing disagreement can explain."""
    sel = np.flatnonzero(np.isin(rows.code, codes))
    order = sel[np.lexsort((rows.t[sel], rows.code[sel]))]
    code, t = rows.code[order], rows.t[order]
    limit = tolerance(rows.high[order]) + ctx.billing.allowance(code)
    above = (rows.counter[order] - rows.high[order]) > limit   # NaN counter: False
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(code)]))
    last_not = np.maximum.reduceat(np.where(above, -np.inf, t), starts)
    first_after = np.minimum.reduceat(np.where(above & (t > last_not[group]), t, np.inf), starts)
    start_by_code = dict(zip(code[starts].tolist(), first_after.tolist(), strict=True))
    return np.array([start_by_code.get(int(c), np.nan) for c in codes], dtype=float)


class Drain(Check):
    name = "drain"
    counted_as = "leak"
    section = "drain"
    picture = "drain.png"
    picture_alt = "Leaked reservations after the drain"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        inflation = prerequisite(done, "inflation", InflationResult)
        dr = judge_drain(ctx, inflation)
        findings: list[str] = []
        blockers: list[str] = []
        passed: list[str] = []
        leaked = dr.leaked
        if len(leaked):
            total = float(leaked["leaked"].sum())
            findings.append(
                f"{len(leaked)} end user(s) kept ${total:,.2f} of leaked reservations after the drain" if total >= 1
                else f"{len(leaked)} end user(s) kept ${total:.4g} of leaked reservations after the drain")
        notes: list[str] = []
        small = dr.within_billing
        if len(small):
            b = ctx.billing
            notes.append(f"{len(small)} end user(s) kept a counter above the true spend after the drain by up to "
                         f"{money(float(small['excess'].max()))} (Σ {money(float(small['excess'].sum()))}): within "
                         f"the billing disagreement that explains it (measured {money(b.measured)}, token rounding "
                         f"{money(b.per_call_rounding_max)} per call), not a leaked reservation")
        if not dr.ran and len(ctx.requests) >= MIN_REQUESTS and dr.why_not != MEMORY_WHY_NOT:
            blockers.append(f"the drain check could not run: {dr.why_not}")
        elif dr.ran and not len(dr.table) and dr.counters_absent and inflation.counters_observed:
            # counters existed during the run but none was left to check (expired: 60 s TTL), e.g. a fault window
            # that kept the load from ending (a replica restart) until the TTL had run out
            blockers.append(f"the drain check had nothing to judge: counters were seen during the run but none was "
                            f"left at the drain sample ({dr.after_load_end_s or 0:.0f} s after the load ended) "
                            f"although {dr.counters_absent} end user(s) spent")
        if dr.ran and not findings:
            passed.append(f"after the drain all {len(dr.table)} remaining counter(s) lie within the true-spend band"
                          + (" (up to the billing disagreement)" if len(small) else ""))
        ev = dr.evidence(ctx)
        summary: dict[str, Any] = {"drain_ran": dr.ran, "drain_why_not": dr.why_not or None,
                                   "billing_disagreement_usd": num(ctx.billing.measured)}
        if dr.ran:
            summary.update(users_checked=ev["users_checked"], leaked_users=ev["leaked_users"],
                           leaked_usd=ev["leaked_total"], counter_total_usd=ev["counter_total"],
                           db_total_usd=ev["db_total"], true_low_total_usd=ev["true_low_total"],
                           true_high_total_usd=ev["true_high_total"],
                           within_billing_users=ev["within_billing_users"])
        return CheckResult(findings=findings, blockers=blockers, notes=notes, passed=passed, evidence=ev,
                           summary=summary, data=dr)

    def plot(self, ctx: Context, done: Results, path: Path) -> None:
        from harness.analyze.plots import plot_drain

        plot_drain(ctx, done[self.name].data, path)

    def report_rows(self, dr: dict[str, Any]) -> list[tuple[str, str]]:
        if not dr["ran"]:
            return [("drain check", f"not run: {dr.get('why_not')}")]
        rows = [("drain check", f"last sample {secs(dr['after_load_end_s'])} after load end; "
                 f"{dr['users_checked']} counters checked, {dr['counters_absent']} end users without a counter; "
                 f"leaked: {dr['leaked_users']} users, {money(dr['leaked_total'])}; within billing disagreement: "
                 f"{dr.get('within_billing_users', 0)} users (up to {money(dr.get('within_billing_max') or 0)})")]
        bill = dr.get("billing") or {}
        if bill:
            rows.append(("billing allowance", f"measured {money(bill.get('measured_usd') or 0)} "
                         f"({bill.get('measured_end_user') or '–'}, {bill.get('users_measured', 0)} end users with "
                         f"their DB caught up; {bill.get('not_billing_sized_users', 0)} off by a reservation or more "
                         f"not used); token rounding up to {money(bill.get('per_call_rounding_max_usd') or 0)} "
                         "per call"))
        for key in ("first", "worst", "last"):
            x = dr.get(key)
            if x:
                rows.append((f"{key} leak", f"{x['end_user']}: counter {money(x['counter'])}, DB {money(x['db'])}, "
                             f"true {money(x['true_low'])}–{money(x['true_high'])}, leaked {money(x['leaked'])}, "
                             f"above true spend since {secs(x.get('t_leak_from'))}"))
        if dr["undercounted_users"]:
            rows.append(("counter below true spend", f"{dr['undercounted_users']} end users (not a leak; "
                         "e.g. a Redis restart from an old snapshot)"))
        return rows
