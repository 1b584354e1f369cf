"""The three checks: phantom rejections, inflation over time, and the drain (conservation) check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.analyze.classify import BUDGET, DISCONNECT, OK
from harness.analyze.context import Context, holders
from harness.analyze.truespend import count_overlapping

REL_TOL = 1e-6     # float tolerance of the conservation check, relative to the true spend
ABS_TOL = 1e-9


def tolerance(true_high: np.ndarray | float) -> np.ndarray | float:
    return ABS_TOL + REL_TOL * np.abs(true_high)


# -- phantom rejections -------------------------------------------------------------------------------
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

    def evidence(self, ctx: Context) -> dict[str, Any]:
        ph = self.table.loc[self.table["phantom"]]
        out: dict[str, Any] = {
            "count": self.count,
            "rejections": self.rejections,
            "budget_rejections": self.budget_rejections,
            "budget_rejections_naming_end_user": self.budget_rejections_end_user,
            "share_of_rejections": _share(self.count, self.rejections),
            "share_of_budget_rejections": _share(self.count, self.budget_rejections),
            "wordings": self.wordings,
            "budget_rejection_status_codes": self.status_codes,
            "affected_end_users": len(self.affected_users),
            "affected_end_users_sample": self.affected_users[:20],
            "max_reservation": ctx.max_reservation,
            "first": None,
            "worst": None,
        }
        if len(ph):
            out["first"] = _row(ph.loc[ph["t_rel"].idxmin()])
            excess = ph["excess"]
            out["worst"] = _row(ph.loc[excess.idxmax()]) if excess.notna().any() else None
        return out


def check_phantom(ctx: Context) -> PhantomResult:
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
    threshold = budget - in_flight * per_res - own_res
    judged = (codes >= 0) & ~np.isnan(budget) & (b["detail"].to_numpy() == "end_user") & (t_end <= ctx.ledger_horizon)
    phantom = judged & (high < threshold)
    printed = b["printed_counter"].to_numpy()
    table = pd.DataFrame({
        "t_rel": t_start - ctx.t0, "end_user": ctx.names(codes),
        "status": b["status"].to_numpy(), "wording": b["wording"].to_numpy(), "printed_counter": printed,
        "printed_budget": printed_budget, "true_low": low, "true_high": high, "budget": budget,
        "in_flight": in_flight, "threshold": threshold, "phantom": phantom, "excess": printed - high,
    }, index=b.index)
    affected = sorted(set(table.loc[table["phantom"], "end_user"].astype(str)))
    return PhantomResult(rejections=rejections, budget_rejections=len(b),
                         budget_rejections_end_user=int((b["detail"] == "end_user").sum()), wordings=wordings,
                         status_codes=status_codes, table=table, count=int(phantom.sum()), affected_users=affected)


# -- inflation over time ------------------------------------------------------------------------------
@dataclass
class SampleRows:
    """samples.csv with the true-spend band at each row, as plain arrays (1 M rows: no DataFrame copies)."""

    code: np.ndarray
    t: np.ndarray
    sample: np.ndarray
    counter: np.ndarray     # NaN: the key did not exist
    db: np.ndarray          # NaN: no DB row
    low: np.ndarray
    high: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def frame(self, idx: np.ndarray, t0: float) -> pd.DataFrame:
        """A DataFrame of the rows `idx` (indices or a boolean mask)."""
        return pd.DataFrame({"code": self.code[idx], "t": self.t[idx], "t_rel": self.t[idx] - t0,
                             "counter": self.counter[idx], "db": self.db[idx], "true_low": self.low[idx],
                             "true_high": self.high[idx]})


@dataclass
class InflationResult:
    rounds: pd.DataFrame        # per sample round: t, t_rel, counter, db, counters, true_low, true_high
    rows: SampleRows            # every sampled row with its true-spend band
    worst_users: list[int]      # codes, worst first
    counters_observed: int
    db_rows_observed: int
    db_ahead: int               # rows where DB spend > true high bound (DB ahead of the truth: odd)
    db_behind: int              # rows where DB spend < true low bound lagged by db_lag_s (missing spend)
    db_behind_max: float

    def evidence(self, ctx: Context) -> dict[str, Any]:
        rd = self.rounds
        out: dict[str, Any] = {"sample_rounds": len(rd), "counters_observed": self.counters_observed,
                               "db_rows_observed": self.db_rows_observed, "db_lag_allowance_s": ctx.db_lag_s,
                               "db_ahead_of_truth_rows": self.db_ahead, "db_behind_lagged_truth_rows": self.db_behind,
                               "db_behind_lagged_truth_max": _f(self.db_behind_max)}
        if len(rd) and rd["counter"].notna().any():
            infl = rd["counter"] - rd["true_high"]
            i = infl.idxmax()
            out["total_max_counter_minus_true_high"] = {"value": _f(infl[i]), "t": _f(rd.at[i, "t_rel"])}
            last = rd.iloc[-1]
            out["total_final"] = {"t": _f(last["t_rel"]), "counter": _f(last["counter"]), "db": _f(last["db"]),
                                  "true_low": _f(last["true_low"]), "true_high": _f(last["true_high"])}
            cmd = rd["counter"] - rd["db"]
            if cmd.notna().any():
                j = cmd.idxmax()
                out["total_max_counter_minus_db"] = {"value": _f(cmd[j]), "t": _f(rd.at[j, "t_rel"])}
        r = self.rows
        if self.counters_observed:
            infl = r.counter - r.high
            k = int(np.nanargmax(infl))
            out["user_max_counter_minus_true_high"] = {"value": _f(infl[k]), "t": _f(r.t[k] - ctx.t0),
                                                       "end_user": ctx.user(int(r.code[k]))}
        out["worst_end_users"] = [ctx.user(c) for c in self.worst_users]
        return out


def check_inflation(ctx: Context, worst_n: int = 3) -> InflationResult:
    s = ctx.samples
    codes = s["code"].to_numpy()
    t = s["t"].to_numpy(dtype=float)
    counter = s["redis_counter"].to_numpy(dtype=float, na_value=np.nan)
    db = s["db_spend"].to_numpy(dtype=float, na_value=np.nan)
    low, high = ctx.spend.at(codes, t)
    lag_low, _ = ctx.spend.at(codes, t - ctx.db_lag_s)
    rows = SampleRows(code=codes, t=t, sample=s["sample"].to_numpy(dtype=float, na_value=np.nan), counter=counter,
                      db=db, low=low, high=high)
    has_db = ~np.isnan(db)
    db_ahead = int((has_db & (db > high + tolerance(high))).sum())
    behind = np.where(has_db, lag_low - db, np.nan)
    db_behind_mask = behind > tolerance(lag_low)
    has_counter = ~np.isnan(counter)
    worst: list[int] = []
    if has_counter.any():
        keep = has_counter & (codes >= 0)
        infl = pd.Series((counter - high)[keep]).groupby(codes[keep]).max()
        worst = [int(c) for c in infl.sort_values(ascending=False).index[:worst_n]]
    return InflationResult(rounds=_rounds(ctx, rows), rows=rows, worst_users=worst,
                           counters_observed=int(has_counter.sum()), db_rows_observed=int(has_db.sum()),
                           db_ahead=db_ahead, db_behind=int(db_behind_mask.sum()),
                           db_behind_max=float(np.nanmax(behind)) if db_behind_mask.any() else 0.0)


def _rounds(ctx: Context, rows: SampleRows) -> pd.DataFrame:
    """Sum over end users per sample round (rounds without a number are grouped by their second)."""
    if not len(rows):
        return pd.DataFrame(columns=["t", "t_rel", "counter", "db", "counters", "true_low", "true_high"])
    key = np.where(np.isnan(rows.sample), -1.0 - np.floor(rows.t - ctx.t0), rows.sample)
    _, inv = np.unique(key, return_inverse=True)
    n = int(inv.max()) + 1
    size = np.bincount(inv, minlength=n)
    has_c = ~np.isnan(rows.counter)
    has_d = ~np.isnan(rows.db)
    n_c = np.bincount(inv, weights=has_c, minlength=n)
    n_d = np.bincount(inv, weights=has_d, minlength=n)
    rounds = pd.DataFrame({
        "t": np.bincount(inv, weights=rows.t - ctx.t0, minlength=n) / size + ctx.t0,
        "counter": np.where(n_c > 0, np.bincount(inv, weights=np.where(has_c, rows.counter, 0.0), minlength=n),
                            np.nan),
        "db": np.where(n_d > 0, np.bincount(inv, weights=np.where(has_d, rows.db, 0.0), minlength=n), np.nan),
        "counters": n_c.astype(int),
    })
    rounds = rounds.sort_values("t").reset_index(drop=True)
    rounds["t_rel"] = rounds["t"] - ctx.t0
    lo, hi = ctx.spend.total_at(rounds["t"].to_numpy())
    rounds["true_low"], rounds["true_high"] = lo, hi
    return rounds


# -- drain (conservation) check -----------------------------------------------------------------------
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

    def evidence(self, ctx: Context) -> dict[str, Any]:
        out: dict[str, Any] = {"ran": self.ran, "tolerance": {"relative": REL_TOL, "absolute": ABS_TOL}}
        if not self.ran:
            out["why_not"] = self.why_not
            out["leaked_users"] = 0
            out["leaked_total"] = 0.0
            return out
        t = self.table
        lk = self.leaked
        out.update({
            "t_sample": _f(self.t_sample), "after_load_end_s": _f(self.after_load_end_s),
            "db_caught_up": bool(self.after_load_end_s is not None and self.after_load_end_s >= ctx.db_lag_s),
            "users_checked": len(t), "counters_absent": self.counters_absent,
            "leaked_users": len(lk), "leaked_total": _f(lk["leaked"].sum()) if len(lk) else 0.0,
            "counter_total": _f(t["counter"].sum()) if len(t) else 0.0,
            "db_total": _f(t["db"].sum()) if len(t) else 0.0,
            "true_low_total": _f(t["true_low"].sum()) if len(t) else 0.0,
            "true_high_total": _f(t["true_high"].sum()) if len(t) else 0.0,
            "undercounted_users": int(t["undercount"].sum()) if len(t) else 0,
            # deflation: counters below the true spend (low bound) after the drain, in $ (Σ true_low − counter)
            "undercounted_total": _f((t["true_low"] - t["counter"])[t["undercount"]].sum()) if len(t) else 0.0,
            "undercounted_worst": _row(t.loc[(t["true_low"] - t["counter"]).idxmax()])
            if len(t) and t["undercount"].any() else None,
            "db_below_true_low_users": int((t["db"] < t["true_low"] - tolerance(t["true_low"])).sum()) if len(t)
            else 0,
            "db_above_true_high_users": int((t["db"] > t["true_high"] + tolerance(t["true_high"])).sum()) if len(t)
            else 0,
            "first": None, "worst": None, "last": None,
        })
        if len(lk):
            out["first"] = _row(lk.loc[lk["t_leak_from"].idxmin()]) if lk["t_leak_from"].notna().any() else None
            out["worst"] = _row(lk.loc[lk["leaked"].idxmax()])
            out["last"] = _row(lk.loc[lk["t_leak_from"].idxmax()]) if lk["t_leak_from"].notna().any() else None
        return out


def check_drain(ctx: Context, inflation: InflationResult) -> DrainResult:
    rows = inflation.rows
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
    allowance = tolerance(reference) + in_flight * ctx.max_reservation
    leak = counter > reference + allowance
    table = pd.DataFrame({
        "code": codes, "end_user": ctx.names(codes), "t_rel": t - ctx.t0, "counter": counter,
        "db": db, "true_low": low, "true_high": high, "in_flight": in_flight,
        "leaked": np.where(leak, counter - reference, 0.0), "leak": leak,
        "undercount": counter < low - tolerance(low),
    })
    table["t_leak_from"] = np.nan
    if leak.any():
        table.loc[leak, "t_leak_from"] = _leak_start(rows, codes[leak]) - ctx.t0
    # end users with true spend whose counter is gone (expired or never sampled after the load)
    _, final_high = ctx.spend.final()
    spent = set(np.flatnonzero(final_high > 0).tolist())
    absent = len(spent - set(codes.tolist()))
    return DrainResult(ran=True, t_sample=t_last - ctx.t0, after_load_end_s=t_last - ctx.t_load_end, table=table,
                       counters_absent=absent)


def _leak_start(rows: SampleRows, codes: np.ndarray) -> np.ndarray:
    """Per leaked end user: start of the final run of samples with the counter above the true high bound."""
    sel = np.flatnonzero(np.isin(rows.code, codes))
    order = sel[np.lexsort((rows.t[sel], rows.code[sel]))]
    code, t = rows.code[order], rows.t[order]
    above = (rows.counter[order] - rows.high[order]) > tolerance(rows.high[order])   # NaN counter: False
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(code)]))
    last_not = np.maximum.reduceat(np.where(above, -np.inf, t), starts)
    first_after = np.minimum.reduceat(np.where(above & (t > last_not[group]), t, np.inf), starts)
    start_by_code = dict(zip(code[starts].tolist(), first_after.tolist(), strict=True))
    return np.array([start_by_code.get(int(c), np.nan) for c in codes], dtype=float)


# -- helpers -----------------------------------------------------------------------------------------
def _share(a: int, b: int) -> float | None:
    return round(a / b, 6) if b else None


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if not np.isfinite(v) else round(v, 9)


def _row(row: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k in ("code", "leak", "phantom", "undercount"):
            continue
        if isinstance(v, bool | np.bool_):
            out[str(k)] = bool(v)
        elif isinstance(v, int | np.integer):
            out[str(k)] = int(v)
        elif isinstance(v, float | np.floating):
            out[str(k)] = _f(v)
        else:
            out[str(k)] = str(v)
    return out
