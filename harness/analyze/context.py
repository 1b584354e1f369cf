"""Everything the checks share: end-user codes, the time axis, budgets, the true-spend index, the float tolerance
and the billing allowance (`Context.billing`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.analyze.classify import BUDGET, OK, classify_requests
from harness.analyze.load import RunData
from harness.analyze.truespend import SpendIndex, encode_users, ledger_spend
from harness.run.probe import PROBE_BUDGET
from harness.run.runfolder import LEDGER_FILE

if TYPE_CHECKING:
    from harness.analyze.billing import Billing
    from harness.scenario.model import Scenario

DEFAULT_BATCH_WRITE_S = 10.0   # LiteLLM's proxy_batch_write_at default
# The release after a success runs after the response is sent (LiteLLM's logging worker): a request still
# holds its reservation for a while after the client saw its end — on a loaded machine, for about as long
# as the proxy's own queueing delays. The grace is the run's p95 latency of successful requests, within
# these bounds.
RELEASE_GRACE_S = 2.0
RELEASE_GRACE_MAX_S = 10.0
# The mock appends a ledger row when a call ends and flushes about every second: a cut ledger is complete
# only up to a little before its last row.
LEDGER_FLUSH_S = 2.0
REL_TOL = 1e-6     # float tolerance of comparisons with the true spend, relative to it
ABS_TOL = 1e-9


def tolerance(true_spend: np.ndarray | float) -> np.ndarray | float:
    return ABS_TOL + REL_TOL * np.abs(true_spend)


@dataclass
class Context:
    data: RunData
    users: pd.Index
    t0: float
    t0_source: str
    t_load_end: float
    t_load_end_source: str
    t_drain_end: float | None
    requests: pd.DataFrame          # classified; plus code, t_rel
    ledger: pd.DataFrame            # ledger_spend() rows; plus code
    samples: pd.DataFrame           # plus code
    spend: SpendIndex
    budget_by_code: np.ndarray      # NaN: no budget known
    max_reservation: float
    db_lag_s: float                 # how far DB spend may legitimately trail the truth
    ledger_horizon: float           # the ledger is complete up to here (inf unless ledger.csv was cut)
    warnings: list[str] = field(default_factory=list)
    # the largest reservation of an ordinary request (not `mix.first_requests`): what a rejected request itself
    # reserves; None: the same as max_reservation
    own_max_reservation: float | None = None
    # request id → when the proxy's upstream call for it ended (the mock's ledger)
    upstream_end: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    release_grace_s: float = RELEASE_GRACE_S
    # which budget rejections the codes judge (classify's `detail`): "end_user"; an entity view of another
    # counter kind (harness/analyze/entities.py) judges the rejections naming that kind's entities
    judged_detail: str = "end_user"

    @cached_property
    def billing(self) -> Billing:
        """How far LiteLLM's bill of each end user may sit from the ledger (harness/analyze/billing.py)."""
        from harness.analyze.billing import measure_billing

        return measure_billing(self)

    def rel(self, t: np.ndarray | pd.Series | float) -> np.ndarray | pd.Series | float:
        return t - self.t0

    def names(self, codes: np.ndarray) -> np.ndarray:
        """End-user ids of codes ("" for -1)."""
        codes = np.asarray(codes, dtype=np.int64)
        if not len(self.users):
            return np.full(len(codes), "", dtype=object)
        names = self.users.to_numpy(dtype=object)[np.maximum(codes, 0)]
        return np.where(codes >= 0, names, "")

    def user(self, code: int) -> str:
        return str(self.users[code]) if 0 <= code < len(self.users) else ""


def build_context(data: RunData) -> Context:
    scen = data.scenario
    meta = data.meta
    warnings = list(data.warnings)

    ledger_rows = data.ledger
    fault_ids: set[str] = set()
    if len(ledger_rows):
        oc_codes, oc_uniques = pd.factorize(ledger_rows["outcome"].astype(object), use_na_sentinel=False)
        is_fault = np.array([str(u).startswith("fault") for u in oc_uniques], dtype=bool)
        if is_fault.any():
            fault_ids = set(ledger_rows["request_id"].to_numpy(dtype=object)[is_fault[oc_codes]].tolist()) - {""}
    requests = classify_requests(data.requests, fault_ids, probe_budget=PROBE_BUDGET if len(data.probes) else None)
    ledger = ledger_spend(ledger_rows, scen, requests)
    samples = data.samples

    users, (req_code, named_codes, ledger_code, sample_code) = encode_users(
        [requests["end_user"], requests["budget_user"], ledger["end_user"], samples["end_user"]])
    # a budget message names the end user it judged: trust it over the id we sent
    req_code = np.where(named_codes >= 0, named_codes, req_code)
    requests["code"] = req_code
    ledger["code"] = ledger_code
    samples["code"] = sample_code

    t_first = _nanmin(requests["t_start"].to_numpy(dtype=float, na_value=np.nan))
    t0, t0_source = _meta_time(meta, "t_load_start"), "meta.t_load_start"
    if t0 is None:
        t0, t0_source = t_first, "first request"
    if t0 is None:
        t0 = _nanmin(np.r_[ledger["t"].to_numpy(dtype=float), samples["t"].to_numpy(dtype=float)])
        t0_source = "first record"
    if t0 is None:
        t0, t0_source = 0.0, "none"
    t_end = _meta_time(meta, "t_load_end")
    t_end_source = "meta.t_load_end"
    if t_end is None:
        t_end = _nanmax(requests["t_end"].to_numpy(dtype=float, na_value=np.nan))
        t_end = t_end if t_end is not None else _nanmax(requests["t_start"].to_numpy(dtype=float, na_value=np.nan))
        t_end_source = "last request"
        if t_end is None:
            t_end, t_end_source = t0, "none"
    requests["t_rel"] = requests["t_start"] - t0

    t_ref = min(x for x in (t0, _nanmin(ledger["t"].to_numpy(dtype=float)), _nanmin(
        samples["t"].to_numpy(dtype=float)), t_first) if x is not None) - 1.0
    spend = SpendIndex.build(ledger["code"].to_numpy(), ledger["t"].to_numpy(dtype=float),
                             ledger["low"].to_numpy(), ledger["high"].to_numpy(), len(users), t_ref)

    budget = np.full(len(users), np.nan)
    if scen.budget.default_max_budget is not None:
        budget[:] = scen.budget.default_max_budget
    if scen.budget.per_user:
        pos = users.get_indexer(list(scen.budget.per_user))
        vals = np.array(list(scen.budget.per_user.values()), dtype=float)
        budget[pos[pos >= 0]] = vals[pos >= 0]

    max_res, own_res = reservations(scen, ledger)

    horizon = float("inf")
    if LEDGER_FILE in data.truncated:
        last = _nanmax(ledger["t"].to_numpy(dtype=float))
        horizon = (last if last is not None else t0) - LEDGER_FLUSH_S
        warnings.append(f"ledger.csv was cut {horizon - t0 + LEDGER_FLUSH_S:.1f} s after load start: rejections "
                        "after that are not judged and the drain check cannot run")
    batch = float(scen.litellm_settings.proxy_batch_write_at or DEFAULT_BATCH_WRITE_S)
    # the interval plus its jitter (up to about half the interval) plus a few seconds for the write itself
    db_lag = 1.5 * batch + 5.0
    return Context(data=data, users=users, t0=float(t0), t0_source=t0_source, t_load_end=float(t_end),
                   t_load_end_source=t_end_source, t_drain_end=_meta_time(meta, "t_drain_end"),
                   requests=requests, ledger=ledger, samples=samples, spend=spend, budget_by_code=budget,
                   max_reservation=float(max_res), db_lag_s=db_lag, ledger_horizon=horizon,
                   warnings=warnings, own_max_reservation=float(own_res),
                   upstream_end=_upstream_end(ledger_rows), release_grace_s=_release_grace(requests))


def reservations(scen: Scenario, ledger: pd.DataFrame, end_user_cap: bool = True) -> tuple[float, float]:
    """(max_reservation, own_max_reservation): the scenario's estimate, and the same with the ledger's largest
    prompt, whichever is larger. end_user_cap=False: not capped by the default end-user budget (the reservation on
    a key's or team's counter, which LiteLLM reserves before the end user's)."""
    max_res = scen.max_reservation(end_user_cap=end_user_cap)
    own_res = scen.max_reservation(first_requests=False, end_user_cap=end_user_cap)
    if len(ledger) and ledger["prompt_tokens"].max() > 0:
        prompt = int(ledger["prompt_tokens"].max())
        max_res = max(max_res, scen.max_reservation(prompt, end_user_cap=end_user_cap))
        own_res = max(own_res, scen.max_reservation(prompt, first_requests=False, end_user_cap=end_user_cap))
    return float(max_res), float(own_res)


def _release_grace(requests: pd.DataFrame) -> float:
    done = requests.loc[requests["cls"] == OK]
    ok = (pd.to_numeric(done["t_end"], errors="coerce") - pd.to_numeric(done["t_start"], errors="coerce")).dropna()
    if len(ok) < 20:
        return RELEASE_GRACE_S
    return float(min(RELEASE_GRACE_MAX_S, max(RELEASE_GRACE_S, ok.quantile(0.95))))


def _upstream_end(ledger_rows: pd.DataFrame) -> pd.Series:
    if not len(ledger_rows) or "request_id" not in ledger_rows.columns:
        return pd.Series(dtype=float)
    rows = ledger_rows.loc[ledger_rows["request_id"].astype(object).fillna("") != "", ["request_id", "t_end"]]
    return rows.groupby("request_id")["t_end"].max().astype(float)


def holders(ctx: Context) -> pd.DataFrame:
    """Requests that may hold a reservation while they run (everything but budget rejections, which hold one
    only for the moment between adding it and taking it back at auth time).

    A request holds its reservation until the proxy is done with it, which can be after the client's end:
    a client that walks away is noticed by the proxy only later (under load, seconds later), and the
    proxy's upstream call (the mock's ledger row with the same request id) tells when that was. So a
    holder's end is the later of the client's end and its upstream call's end.
    """
    r = ctx.requests
    h = r.loc[r["cls"] != BUDGET]
    upstream_end = ctx.upstream_end
    if not len(h) or not len(upstream_end) or "request_id" not in h.columns:
        return h
    joined = h["request_id"].map(upstream_end)
    h = h.copy()
    h["t_end"] = np.fmax(h["t_end"].to_numpy(dtype=float, na_value=np.nan), joined.to_numpy(dtype=float,
                                                                                            na_value=np.nan))
    return h


def _meta_time(meta: dict, key: str) -> float | None:
    value = meta.get(key)
    try:
        out = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return out if out is not None and np.isfinite(out) else None


def _nanmin(a: np.ndarray) -> float | None:
    a = a[~np.isnan(a)] if len(a) else a
    return float(a.min()) if len(a) else None


def _nanmax(a: np.ndarray) -> float | None:
    a = a[~np.isnan(a)] if len(a) else a
    return float(a.max()) if len(a) else None
