"""True spend per end user over time, from the mock's ledger (the ground truth) and the scenario's prices.

True spend is a band, not a number: LiteLLM bills a stream the client walked away from as $0 on some
versions and as the streamed part on others.

- low  = completed calls only (outcome ok): prompt × input price + completion_tokens_promised × output price
- high = low + partly delivered calls (client_gone, stream cut, any fault that delivered tokens):
         prompt × input price + completion_tokens_delivered × output price

A call counts from its end (t_end; t_start when the run was cut before it ended). Queries are vectorised:
(end-user code, time) pairs are folded into one sortable int64 key and answered with one searchsorted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.scenario.model import Scenario

TICK_S = 1e-3   # time resolution of the folded keys


def encode_users(columns: list[pd.Series]) -> tuple[pd.Index, list[np.ndarray]]:
    """One shared, sorted index of all end-user ids seen, and int64 codes of each column (-1 for "")."""
    factors = [pd.factorize(col.astype(object), use_na_sentinel=True) if len(col) else
               (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)) for col in columns]
    seen: set[str] = set()
    for _, uniques in factors:
        seen.update(str(u) for u in uniques)
    seen.discard("")
    users = pd.Index(sorted(seen), dtype=object)
    out = []
    for codes, uniques in factors:
        if not len(codes):
            out.append(np.zeros(0, dtype=np.int64))
            continue
        remap = np.append(users.get_indexer(pd.Index(uniques, dtype=object).astype(str)), -1)
        out.append(remap[np.asarray(codes, dtype=np.int64)].astype(np.int64))   # code -1 (NaN) → remap[-1] = -1
    return users, out


def ledger_spend(ledger: pd.DataFrame, scenario: Scenario, requests: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per upstream call: end_user, t (when it counts), low and high increments, partial flag."""
    p_in = scenario.pricing.input_cost_per_token
    p_out = scenario.pricing.output_cost_per_token
    # few distinct outcomes: classify the distinct values, not the rows
    oc_codes, oc_uniques = pd.factorize(ledger["outcome"].astype(object), use_na_sentinel=False)
    oc = np.array([str(u).strip() for u in oc_uniques], dtype=object)
    is_ok_u = oc == "ok"
    partial_u = ~is_ok_u & np.array([u == "client_gone" or "cut" in u for u in oc], dtype=bool)
    prompt = ledger["prompt_tokens"].fillna(0).to_numpy(dtype=float)
    promised = ledger["completion_tokens_promised"].fillna(0).to_numpy(dtype=float)
    delivered = ledger["completion_tokens_delivered"].fillna(0).to_numpy(dtype=float)
    is_ok = is_ok_u[oc_codes] if len(oc) else np.zeros(len(ledger), dtype=bool)
    partial = (partial_u[oc_codes] if len(oc) else np.zeros(len(ledger), dtype=bool)) | (~is_ok & (delivered > 0))
    full_cost = prompt * p_in + promised * p_out
    part_cost = prompt * p_in + delivered * p_out
    low = np.where(is_ok, full_cost, 0.0)
    high = low + np.where(partial, part_cost, 0.0)
    t = ledger["t_end"].to_numpy(dtype=float, na_value=np.nan)
    t = np.where(np.isnan(t), ledger["t_start"].to_numpy(dtype=float, na_value=np.nan), t)

    end_user = ledger["end_user"].astype(str)
    missing = (end_user == "").to_numpy()
    if missing.any() and requests is not None and len(requests):
        by_id = (requests.loc[requests["request_id"].astype(str) != "", ["request_id", "end_user"]]
                 .drop_duplicates("request_id").set_index("request_id")["end_user"].astype(str))
        filled = ledger["request_id"].astype(str).map(by_id)
        end_user = end_user.where(~missing, filled.fillna(""))
    return pd.DataFrame({"end_user": end_user.to_numpy(), "t": t, "low": low, "high": high,
                         "partial": partial, "prompt_tokens": prompt})


@dataclass
class SpendIndex:
    """Cumulative true-spend band per end user (and in total), answerable at any (user, time)."""

    t_ref: float
    scale: int
    keys: np.ndarray        # sorted code * scale + tick
    codes: np.ndarray       # code of each key
    cum_low: np.ndarray
    cum_high: np.ndarray
    t_sorted: np.ndarray    # all calls by time, for totals
    tot_low: np.ndarray
    tot_high: np.ndarray
    n_users: int

    @classmethod
    def build(cls, codes: np.ndarray, t: np.ndarray, low: np.ndarray, high: np.ndarray, n_users: int,
              t_ref: float) -> SpendIndex:
        keep = (codes >= 0) & ~np.isnan(t)
        codes, t, low, high = codes[keep], t[keep], low[keep], high[keep]
        ticks = np.floor((t - t_ref) / TICK_S).astype(np.int64)
        ticks = np.maximum(ticks, 1)
        scale = int(ticks.max()) + 2 if len(ticks) else 2
        keys = codes * scale + ticks
        order = np.argsort(keys, kind="stable")
        keys, codes_s = keys[order], codes[order]
        cum_low = _group_cumsum(low[order], codes_s)
        cum_high = _group_cumsum(high[order], codes_s)
        t_order = np.argsort(t, kind="stable")
        return cls(t_ref=t_ref, scale=scale, keys=keys, codes=codes_s, cum_low=cum_low, cum_high=cum_high,
                   t_sorted=t[t_order], tot_low=np.cumsum(low[t_order]), tot_high=np.cumsum(high[t_order]),
                   n_users=n_users)

    def at(self, codes: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) cumulative true spend of each end user up to (and including) each time."""
        codes = np.asarray(codes, dtype=np.int64)
        t = np.asarray(t, dtype=float)
        low = np.zeros(len(codes))
        high = np.zeros(len(codes))
        if not len(self.keys) or not len(codes):
            return low, high
        ticks = np.floor((np.nan_to_num(t, nan=-1e18) - self.t_ref) / TICK_S)
        ticks = np.clip(ticks, 0, self.scale - 1).astype(np.int64)
        q = np.where(codes >= 0, codes, 0) * self.scale + ticks
        idx = np.searchsorted(self.keys, q, side="right") - 1
        valid = (idx >= 0) & (codes >= 0)
        idx_c = np.where(valid, idx, 0)
        valid &= self.codes[idx_c] == codes
        low[valid] = self.cum_low[idx_c[valid]]
        high[valid] = self.cum_high[idx_c[valid]]
        return low, high

    def total_at(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) summed over all end users up to each time."""
        t = np.asarray(t, dtype=float)
        if not len(self.t_sorted):
            return np.zeros(len(t)), np.zeros(len(t))
        idx = np.searchsorted(self.t_sorted, t, side="right") - 1
        valid = idx >= 0
        low = np.where(valid, self.tot_low[np.maximum(idx, 0)], 0.0)
        high = np.where(valid, self.tot_high[np.maximum(idx, 0)], 0.0)
        return low, high

    def final(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) per end-user code at the end of the ledger (arrays of length n_users)."""
        low = np.zeros(self.n_users)
        high = np.zeros(self.n_users)
        if len(self.keys):
            last = np.r_[self.codes[1:] != self.codes[:-1], True]
            low[self.codes[last]] = self.cum_low[last]
            high[self.codes[last]] = self.cum_high[last]
        return low, high


def _group_cumsum(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each group (accumulated per group: no cancellation error)."""
    if not len(values):
        return values.copy()
    return pd.Series(values).groupby(groups, sort=False).cumsum().to_numpy()


def count_overlapping(codes_a: np.ndarray, start_a: np.ndarray, end_a: np.ndarray,
                      codes_q: np.ndarray, start_q: np.ndarray, end_q: np.ndarray, t_ref: float) -> np.ndarray:
    """For each query, how many intervals of set A of the same code overlap [start_q, end_q]."""
    if not len(codes_q):
        return np.zeros(0, dtype=np.int64)
    if not len(codes_a):
        return np.zeros(len(codes_q), dtype=np.int64)
    hi = max(np.nanmax(end_a), np.nanmax(end_q), np.nanmax(start_a), np.nanmax(start_q))
    scale = int(np.floor((hi - t_ref) / TICK_S)) + 3

    def fold(codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        ticks = np.clip(np.floor((np.nan_to_num(t, nan=hi) - t_ref) / TICK_S), 0, scale - 1).astype(np.int64)
        return codes.astype(np.int64) * scale + ticks

    starts = np.sort(fold(codes_a, start_a))
    ends = np.sort(fold(codes_a, end_a))
    # started no later than the query's end, minus those that ended before the query's start
    started = np.searchsorted(starts, fold(codes_q, end_q), side="right") - np.searchsorted(
        starts, codes_q.astype(np.int64) * scale, side="left")
    ended = np.searchsorted(ends, fold(codes_q, start_q), side="left") - np.searchsorted(
        ends, codes_q.astype(np.int64) * scale, side="left")
    return np.maximum(started - ended, 0)
