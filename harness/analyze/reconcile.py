"""Per-request reconciliation: what the proxy billed for each request against what the upstream delivered.

Three records of one request share the harness's request id (harness/load/client.py sends it as
`x-harness-request-id`): the client's row in requests.csv, the mock's ledger rows (ledger.csv) and LiteLLM's
own spend-log row (spend-logs.csv, dumped after the drain by harness/run/spendlogs.py), whose `request_id` is
the response id — the mock answers `chatcmpl-<request id>` (`msg_<request id>` on /v1/messages) — or, for a
request that never got a response (a failure row, e.g. a budget rejection), LiteLLM's own call id, which names
no request of the run. LiteLLM 1.94.0's rows of its /v1/messages route name no request either (`chatcmpl-<its own
uuid>`, or its call id for a stream: harness/mockllm/README.md), so such a run has no per-request billing.

Per request id (derivation and the LiteLLM facts: harness/analyze/README.md, *Per-request reconciliation*):

- **delivered** = Σ over its upstream calls of the true-spend band's high bound (truespend.ledger_spend: prompt
  + the completion tokens that went out, at the scenario's prices; $0 for a fault that delivered nothing);
- **billed** = Σ `spend` of its spend-log rows;
- **disagreement** = billed − delivered, beyond the float tolerance (context.tolerance): > 0 over-billed,
  < 0 under-billed. Under-billing of a partly delivered call (a walk-away, a cut stream) is inside the
  true-spend band (its low bound is $0): counted, and named as such. Over-billing of such a call up to the
  token-rounding bound of billing.py is LiteLLM counting the text with its own tokenizer: counted and named too.

Requests judged only once LiteLLM had time to write their row: their last upstream call ended at least
`db_lag_s` before the dump (`meta.spend_logs.t`). A request with upstream delivery but no row is *unbilled*;
one with a row but no upstream call is billed for nothing (over-billed by all of it); several upstream calls
that delivered under one id (a retry) are not judged: LiteLLM keeps one row per id (`skip_duplicates`).

This is billing — another bug class than a leaked reservation: it never changes the verdict (the check
`checks/reconcile.py` reports it as evidence and notes only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.analyze.billing import COMPLETION_BOUNDARY_TOKENS, PROMPT_OVERCOUNT
from harness.analyze.context import Context, tolerance
from harness.analyze.jsonable import num
from harness.analyze.load import read_csv_tolerant
from harness.run.runfolder import SPEND_LOGS_FILE

# the mock's response id: chatcmpl-<request id> (chat completions) or msg_<request id> (Anthropic Messages)
# (harness/mockllm/server.py, Wire.id_prefix)
RESPONSE_ID_PREFIXES = ("chatcmpl-", "msg_")
EXAMPLES = 5


@dataclass
class Reconciliation:
    measured: bool
    why_not: str | None = None              # when not measured: why (never read as "no disagreement")
    rows: int = 0                           # spend-log rows in the file
    table: pd.DataFrame = field(default_factory=pd.DataFrame)   # one row per judged request id
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def over(self) -> pd.DataFrame:
        return self.table.loc[self.table["diff"] > 0] if len(self.table) else self.table

    @property
    def under(self) -> pd.DataFrame:
        return self.table.loc[self.table["diff"] < 0] if len(self.table) else self.table

    def evidence(self) -> dict[str, Any]:
        if not self.measured:
            return {"measured": False, "why_not": self.why_not, "spend_log_rows": self.rows, **self.counts}
        over, under = self.over, self.under
        t = self.table
        return {
            "measured": True, "spend_log_rows": self.rows, **self.counts,
            "agreed": int((t["diff"] == 0).sum()) if len(t) else 0,
            "over_billed": _side(over, "within_rounding"),
            "under_billed": _side(under, "partial"),
            "billed_total": num(t["billed"].sum()) if len(t) else 0.0,
            "delivered_total": num(t["delivered"].sum()) if len(t) else 0.0,
            "net_usd": num(t["diff"].sum()) if len(t) else 0.0,
            "abs_usd": num(t["diff"].abs().sum()) if len(t) else 0.0,
        }


def _side(rows: pd.DataFrame, flag: str) -> dict[str, Any]:
    if not len(rows):
        return {"requests": 0, "usd": 0.0, flag: 0, "reservation_sized": 0, "largest": None, "examples": []}
    ordered = rows.reindex(rows["diff"].abs().sort_values(ascending=False, kind="stable").index)
    return {"requests": len(rows), "usd": num(rows["diff"].abs().sum()), flag: int(rows[flag].sum()),
            "reservation_sized": int(rows["reservation_sized"].sum()),
            "largest": _example(ordered.iloc[0]),
            "examples": [_example(r) for _, r in ordered.head(EXAMPLES).iterrows()]}


def _example(r: pd.Series) -> dict[str, Any]:
    return {"request_id": str(r["request_id"]), "end_user": str(r["end_user"]), "outcome": str(r["outcome"]),
            "billed": num(r["billed"]), "delivered": num(r["delivered"]), "diff": num(r["diff"]),
            "billed_tokens": [_int(r["billed_prompt"]), _int(r["billed_completion"])],
            "ledger_tokens": [_int(r["prompt_tokens"]), _int(r["delivered_tokens"])]}


def _int(v: Any) -> int | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if np.isfinite(f) else None


def spend_logs_disabled(ctx: Context) -> bool:
    """The scenario switched LiteLLM's spend logs off (`general_settings.disable_spend_logs` via `extra`)."""
    general = ctx.data.scenario.litellm_settings.extra.get("general_settings") or {}
    return bool(general.get("disable_spend_logs"))


def reconcile(ctx: Context) -> Reconciliation:
    data = ctx.data
    info = data.meta.get("spend_logs")
    path = data.run_dir / SPEND_LOGS_FILE
    if spend_logs_disabled(ctx):
        return Reconciliation(False, "the scenario switches LiteLLM's spend logs off (disable_spend_logs)")
    if not path.is_file():
        if isinstance(info, dict) and info.get("reason"):
            return Reconciliation(False, f"no spend logs: {info['reason']}")
        return Reconciliation(False, "no spend-logs.csv (a run folder from before the spend-log dump)")
    warnings: list[str] = []
    logs = read_csv_tolerant(path, warnings)
    ctx.warnings.extend(warnings)
    if not len(logs):
        return Reconciliation(False, "LiteLLM_SpendLogs was empty after the drain: the version wrote no spend "
                              "logs (switched off?) or had not flushed them")
    t_dump = _float(info.get("t")) if isinstance(info, dict) else None
    t_dump = t_dump if t_dump is not None else ctx.t_drain_end
    return _join(ctx, logs, t_dump)


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _join(ctx: Context, logs: pd.DataFrame, t_dump: float | None) -> Reconciliation:
    scen = ctx.data.scenario
    p_in, p_out = scen.pricing.input_cost_per_token, scen.pricing.output_cost_per_token
    req = ctx.data.requests
    raw = ctx.data.ledger
    led = ctx.ledger            # ledger_spend rows, in raw's order: high, partial, t

    req_ids = req.loc[req["request_id"].astype(str) != "", "request_id"].astype(str)
    req_user = req.loc[req_ids.index].groupby(req_ids)["end_user"].first().astype(str)
    calls = pd.DataFrame({"request_id": raw["request_id"].astype(str).to_numpy(),
                          "high": led["high"].to_numpy(dtype=float), "partial": led["partial"].to_numpy(dtype=bool),
                          "t": led["t"].to_numpy(dtype=float), "end_user": led["end_user"].astype(str).to_numpy(),
                          "outcome": raw["outcome"].astype(str).str.strip().to_numpy(),
                          "prompt_tokens": raw["prompt_tokens"].fillna(0).to_numpy(dtype=float),
                          "delivered_tokens": raw["completion_tokens_delivered"].fillna(0).to_numpy(dtype=float)})
    calls = calls.loc[calls["request_id"] != ""]
    known = set(req_ids) | set(calls["request_id"])

    # which request id each spend-log row names: the response id chatcmpl-<id> / msg_<id>, the id itself, the call id
    rid = logs["request_id"].astype(str).str.strip()
    stripped = rid
    for prefix in RESPONSE_ID_PREFIXES:
        stripped = stripped.str.removeprefix(prefix)
    call_id = logs["litellm_call_id"].astype(str).str.strip()
    named = np.where(stripped.isin(known), stripped, np.where(rid.isin(known), rid,
                                                              np.where(call_id.isin(known), call_id, "")))
    logs = logs.assign(rid=named, spend=pd.to_numeric(logs["spend"], errors="coerce").fillna(0.0))
    matched = logs.loc[logs["rid"] != ""]
    loose = logs.loc[logs["rid"] == ""]
    status = loose["status"].astype(str).str.strip().str.lower()
    counts: dict[str, Any] = {
        "request_ids": len(known),
        "rows_unmatched": len(loose),
        "rows_unmatched_usd": num(loose["spend"].sum()),
        "rows_unmatched_billed": int((loose["spend"] > 0).sum()),
        "rows_unmatched_failures": int((status == "failure").sum()),
    }
    if not len(matched):
        delivered_ok = int((calls["outcome"] == "ok").sum())
        if delivered_ok:
            return Reconciliation(False, f"none of the {len(logs)} spend-log row(s) names a request id of this run "
                                  f"although the upstream completed {delivered_ok} call(s)", rows=len(logs),
                                  counts=counts)

    # per request id: the upstream's side
    delivered_calls = calls.loc[calls["high"] > 0]
    up = calls.groupby("request_id").agg(delivered=("high", "sum"), partial=("partial", "any"), t=("t", "max"),
                                         calls=("high", "size"), end_user=("end_user", "first"),
                                         outcome=("outcome", "last"), prompt_tokens=("prompt_tokens", "sum"),
                                         delivered_tokens=("delivered_tokens", "sum"))
    up["delivering_calls"] = delivered_calls.groupby("request_id").size().reindex(up.index, fill_value=0)
    # per request id: the proxy's side
    bill = matched.groupby("rid").agg(billed=("spend", "sum"), rows=("spend", "size"),
                                      log_user=("end_user", "first"),
                                      billed_prompt=("prompt_tokens", "sum"),
                                      billed_completion=("completion_tokens", "sum"))
    t = up.join(bill, how="outer")
    t.index.name = "request_id"
    t = t.reset_index()
    has_up = t["calls"].notna()
    has_bill = t["rows"].notna()
    t["delivered"] = t["delivered"].fillna(0.0)
    t["billed"] = t["billed"].fillna(0.0)
    t["partial"] = t["partial"].astype("boolean").fillna(False).astype(bool)
    t["outcome"] = t["outcome"].fillna("")
    t["end_user"] = t["end_user"].fillna("").astype(str)
    fill = t["end_user"] == ""
    t.loc[fill, "end_user"] = t.loc[fill, "request_id"].map(req_user).fillna("")
    fill = t["end_user"] == ""
    t.loc[fill, "end_user"] = t.loc[fill, "log_user"].fillna("").astype(str)

    # judged only when LiteLLM had time to write the row, and the ledger is complete there
    horizon = ctx.ledger_horizon
    if t_dump is not None:
        horizon = min(horizon, t_dump - ctx.db_lag_s)
    late = has_up & (t["t"].fillna(np.inf) > horizon)
    several = t["delivering_calls"].fillna(0) > 1
    unbilled = has_up & ~has_bill & ~late & (t["delivered"] > 0)
    nothing = has_up & ~has_bill & (t["delivered"] <= 0)
    # a row is judged whenever it exists (it was written); billed for nothing only where the ledger is complete
    judged = has_bill & ~several & (has_up | np.isinf(ctx.ledger_horizon))
    mismatch = has_bill & has_up & (t["log_user"].fillna("").astype(str) != "") & (
        t["log_user"].fillna("").astype(str) != t["end_user"])
    unb = t.loc[unbilled]
    counts.update({
        "rows_matched": len(matched),
        "requests_billed": int(has_bill.sum()),
        "requests_delivered": int((has_up & (t["delivered"] > 0)).sum()),
        "requests_matched": int((has_bill & has_up).sum()),
        "requests_judged": int(judged.sum()),
        "not_caught_up": int((late & ~has_bill & (t["delivered"] > 0)).sum()),
        "several_upstream_calls": int((several & has_bill).sum()),
        "requests_several_rows": int((t["rows"].fillna(0) > 1).sum()),
        "billed_without_upstream": int((has_bill & ~has_up & judged).sum()),
        "nothing_to_bill": int(nothing.sum()),
        "unbilled": {"requests": len(unb), "usd": num(unb["delivered"].sum()),
                     "completed": int((~unb["partial"]).sum()),
                     "completed_usd": num(unb.loc[~unb["partial"], "delivered"].sum()),
                     "partial": int(unb["partial"].sum()),
                     "examples": [{"request_id": str(r["request_id"]), "end_user": str(r["end_user"]),
                                   "outcome": str(r["outcome"]), "delivered": num(r["delivered"])}
                                  for _, r in unb.sort_values("delivered", ascending=False).head(EXAMPLES).iterrows()]},
        "end_user_mismatch": int(mismatch.sum()),
    })
    j = t.loc[judged].copy()
    diff = j["billed"].to_numpy() - j["delivered"].to_numpy()
    diff[np.abs(diff) <= tolerance(np.maximum(j["delivered"].to_numpy(), j["billed"].to_numpy()))] = 0.0
    j["diff"] = diff
    # LiteLLM counts a partly delivered call's text with its own tokenizer: up to this much above the ledger
    rounding = COMPLETION_BOUNDARY_TOKENS * p_out + PROMPT_OVERCOUNT * j["prompt_tokens"].fillna(0) * p_in
    j["within_rounding"] = (j["diff"] > 0) & j["partial"] & (j["diff"] <= rounding + tolerance(rounding))
    min_res = ctx.billing.min_reservation
    j["reservation_sized"] = j["diff"].abs() >= min_res
    counts["min_reservation"] = num(min_res)
    return Reconciliation(True, rows=len(logs), table=j, counts=counts)
