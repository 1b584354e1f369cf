"""Inflation over time: Redis counters and DB spend against the true-spend band, per sample round and per end
user. Finds nothing by itself (inflation during the load includes legitimate reservations); it blocks a verdict
when no counter was ever seen although the version keeps counters, and draws inflation.png."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.analyze.checker import Check, CheckResult, Results
from harness.analyze.checks.sanity import MIN_REQUESTS
from harness.analyze.classify import BUDGET
from harness.analyze.context import Context, tolerance
from harness.analyze.jsonable import num
from harness.analyze.report import secs
from harness.util.fmt import money


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
                               "db_behind_lagged_truth_max": num(self.db_behind_max)}
        if len(rd) and rd["counter"].notna().any():
            infl = rd["counter"] - rd["true_high"]
            i = infl.idxmax()
            out["total_max_counter_minus_true_high"] = {"value": num(infl[i]), "t": num(rd.at[i, "t_rel"])}
            last = rd.iloc[-1]
            out["total_final"] = {"t": num(last["t_rel"]), "counter": num(last["counter"]), "db": num(last["db"]),
                                  "true_low": num(last["true_low"]), "true_high": num(last["true_high"])}
            cmd = rd["counter"] - rd["db"]
            if cmd.notna().any():
                j = cmd.idxmax()
                out["total_max_counter_minus_db"] = {"value": num(cmd[j]), "t": num(rd.at[j, "t_rel"])}
        r = self.rows
        if self.counters_observed:
            infl = r.counter - r.high
            k = int(np.nanargmax(infl))
            out["user_max_counter_minus_true_high"] = {"value": num(infl[k]), "t": num(r.t[k] - ctx.t0),
                                                       "end_user": ctx.user(int(r.code[k]))}
        out["worst_end_users"] = [ctx.user(c) for c in self.worst_users]
        return out


def measure_inflation(ctx: Context, worst_n: int = 3) -> InflationResult:
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


def version_has_counters(version: str) -> bool:
    from harness.errors import HarnessError
    from harness.litellm.versions import resolve

    try:
        return resolve(version).has_budget_reservation
    except HarnessError:
        return True


class Inflation(Check):
    name = "inflation"
    section = "inflation"
    picture = "inflation.png"
    picture_alt = "Redis counter vs DB spend vs true spend over time"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        infl = measure_inflation(ctx)
        notes: list[str] = []
        blockers: list[str] = []
        counterless = not infl.counters_observed and not version_has_counters(ctx.data.version)
        if counterless:
            notes.append(f"LiteLLM {ctx.data.version} keeps no spend:end_user counter (budget reservations first "
                         "ship in 1.84.0): there is no reservation to leak")
        budget_rejections = int((ctx.requests["cls"] == BUDGET).sum())
        in_memory = ctx.data.counters_in_memory and not infl.counters_observed
        if in_memory and len(ctx.data.counters) and ctx.data.counters["redis_counter"].notna().any():
            notes.append(memory_note(ctx))
        elif in_memory and len(ctx.requests) >= MIN_REQUESTS:
            blockers.append(memory_note(ctx) + ": no counter shows whether a reservation leaked")
        if not infl.counters_observed and not budget_rejections and len(ctx.requests) >= MIN_REQUESTS \
                and not counterless and not in_memory:
            blockers.append(_no_counter_reason(ctx))
        ev = infl.evidence(ctx)
        ev["counter_source"] = ctx.data.counter_source
        summary: dict[str, Any] = {
            "counter_source": ctx.data.counter_source, "counters_observed": infl.counters_observed,
            "max_inflation_usd": (ev.get("total_max_counter_minus_true_high") or {}).get("value"),
            "user_max_inflation_usd": (ev.get("user_max_counter_minus_true_high") or {}).get("value")}
        return CheckResult(blockers=blockers, notes=notes, evidence=ev, summary=summary, data=infl)

    def plot(self, ctx: Context, done: Results, path: Path) -> None:
        from harness.analyze.checks.phantom import PhantomResult
        from harness.analyze.plots import plot_inflation

        phantom = done.get("phantom")
        plot_inflation(ctx, done[self.name].data,
                       phantom.data if phantom is not None and isinstance(phantom.data, PhantomResult) else None,
                       path)

    def report_rows(self, infl: dict[str, Any]) -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        mx = infl.get("total_max_counter_minus_true_high")
        if mx:
            rows.append(("max total counter − true spend", f"{money(mx['value'])} at {secs(mx['t'])}"))
        mu = infl.get("user_max_counter_minus_true_high")
        if mu:
            rows.append(("max per-user counter − true spend",
                         f"{money(mu['value'])} ({mu['end_user']}, {secs(mu['t'])})"))
        md = infl.get("total_max_counter_minus_db")
        if md:
            rows.append(("max total counter − DB spend", f"{money(md['value'])} at {secs(md['t'])}"))
        rows.append(("DB lag allowance", f"{infl['db_lag_allowance_s']:.0f} s; DB behind the lagged truth in "
                     f"{infl['db_behind_lagged_truth_rows']:,} sample(s), ahead of the truth in "
                     f"{infl['db_ahead_of_truth_rows']:,}"))
        return rows


def memory_note(ctx: Context) -> str:
    """What a run whose proxies kept their counters in process memory can say about the end users' counters."""
    reads = int(ctx.data.counters["redis_counter"].notna().sum()) if len(ctx.data.counters) else 0
    return ("counters in process memory (scenario counters: memory): no proxy has a Redis cache, so no end-user "
            "counter can be read from outside its process and the end users are judged by their rejections only; "
            + (f"the run's keys are judged by the in-process probe's reads (probes.csv: {reads} rounds × keys read)"
               if reads else "the in-process probe read no counter (scenario `probe`, probes.csv)"))


def _no_counter_reason(ctx: Context) -> str:
    _, final_high = ctx.spend.final()
    budgets = ctx.budget_by_code
    why = "no Redis counter was observed and no request was rejected for budget"
    if len(final_high) and np.isfinite(budgets).any():
        i = int(np.nanargmax(final_high / np.where(np.isfinite(budgets), budgets, np.inf)))
        why += (f"; with these settings no end user could be (largest true spend ${final_high[i]:.4g} "
                f"vs budget ${budgets[i]:.4g})" if final_high[i] < budgets[i] else
                f" although {ctx.user(i)} spent ${final_high[i]:.4g} of a ${budgets[i]:.4g} budget")
    elif not np.isfinite(budgets).any():
        why += "; the scenario sets no end-user budget"
    return why + " (is Redis caching configured? is this a version with counters?)"
