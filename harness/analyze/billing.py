"""Billing disagreement: how far LiteLLM's own bill of an end user may sit from the mock's ledger without any
reservation being involved. An excess of that size is a note with its size, never a leaked reservation or a
phantom rejection (derivation: harness/analyze/README.md, *Findings with a size*).

Per end user *u* the allowance is the larger of

- **token rounding** (from the scenario and the ledger): Σ over u's partly delivered calls (walk-aways, cut
  streams, faults that delivered tokens) of one completion token × output price + 3 × the ledger's prompt tokens
  × input price. A completed call is normally billed from the usage the mock sends (the ledger's numbers; where
  it is not, the measured term covers it); a call that usage never reached is counted by LiteLLM's own
  tokenizer, while the ledger counts a text as ceil(chars / 4) tokens. A token is at least one character, so
  LiteLLM's count of a prompt lies between 0 and 4 × the ledger's (at most 3 × the ledger's count above it);
  the mock's completion text is one tokenizer token per ledger token plus its boundary (the trailing space):
  one token;
- **measured disagreement** (from the run): the largest distance of an end user's DB spend outside its
  true-spend band once the DB has caught up with that user (its last request ended `db_lag_s` before the
  sample). A tokenizer that counts one end user's text short counts another's long, so the worst end user's
  disagreement bounds everyone's. A distance of a whole reservation or more (`Scenario.min_reservation`) is
  not a token count: a lost write or a request billed whole — another bug class. It is counted
  (`not_billing_sized`), never used as an allowance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analyze.context import Context, holders, tolerance
from harness.analyze.jsonable import num

# A token is at least one character and the ledger counts ceil(chars / 4): LiteLLM's count of a prompt exceeds
# the ledger's by at most 3 × the ledger's count.
PROMPT_OVERCOUNT = 3
# The mock's completion text is one tokenizer token per ledger token plus the text's boundary (its trailing
# space, harness/mockllm/tokens.py TOKEN_TEXT): LiteLLM counts a streamed completion one token off.
COMPLETION_BOUNDARY_TOKENS = 1


@dataclass
class Billing:
    rounding_by_code: np.ndarray    # per end-user code: Σ token-rounding bound of its partly delivered calls ($)
    measured: float                 # the largest billing-sized disagreement measured on one end user ($)
    measured_user: str
    users_measured: int             # end users whose DB had caught up (the measurement's base)
    not_billing_sized: int          # of those, disagreeing by at least one min reservation (not used)
    min_reservation: float
    per_call_rounding_max: float

    def allowance(self, codes: np.ndarray) -> np.ndarray:
        """Per end-user code: the excess billing disagreement can explain ($)."""
        codes = np.asarray(codes, dtype=np.int64)
        rounding = np.zeros(len(codes))
        if len(self.rounding_by_code):
            known = (codes >= 0) & (codes < len(self.rounding_by_code))
            rounding[known] = self.rounding_by_code[codes[known]]
        return np.maximum(self.measured, rounding)

    def evidence(self) -> dict[str, Any]:
        return {"measured_usd": num(self.measured), "measured_end_user": self.measured_user or None,
                "users_measured": self.users_measured, "not_billing_sized_users": self.not_billing_sized,
                "min_reservation": num(self.min_reservation),
                "per_call_rounding_max_usd": num(self.per_call_rounding_max)}


def measure_billing(ctx: Context) -> Billing:
    scen = ctx.data.scenario
    p_in, p_out = scen.pricing.input_cost_per_token, scen.pricing.output_cost_per_token
    ledger = ctx.ledger
    n = len(ctx.users)
    rounding = np.zeros(n)
    per_call_max = 0.0
    min_res = scen.min_reservation()
    if len(ledger):
        codes = ledger["code"].to_numpy(dtype=np.int64)
        prompt = ledger["prompt_tokens"].to_numpy(dtype=float)
        per_call = COMPLETION_BOUNDARY_TOKENS * p_out + PROMPT_OVERCOUNT * prompt * p_in
        # only calls the mock's usage never reached are counted by LiteLLM's tokenizer
        keep = (codes >= 0) & ledger["partial"].to_numpy(dtype=bool)
        np.add.at(rounding, codes[keep], per_call[keep])
        per_call_max = float(per_call[keep].max()) if keep.any() else 0.0
        if prompt.min() > 0:
            min_res = min(min_res, scen.min_reservation(int(prompt.min())))
    measured, user, base, too_big = _measured(ctx, min_res)
    return Billing(rounding_by_code=rounding, measured=measured, measured_user=user, users_measured=base,
                   not_billing_sized=too_big, min_reservation=float(min_res), per_call_rounding_max=per_call_max)


def _measured(ctx: Context, min_res: float) -> tuple[float, str, int, int]:
    """The largest distance of a caught-up end user's DB spend outside its true-spend band."""
    s = ctx.samples
    if not len(s) or not len(ctx.users):
        return 0.0, "", 0, 0
    n = len(ctx.users)
    # when each end user's last request (or upstream call) ended; a request that never ended: never caught up
    last_end = np.full(n, -np.inf)
    h = holders(ctx)
    for codes, ends in ((h["code"].to_numpy(dtype=np.int64), h["t_end"].to_numpy(dtype=float, na_value=np.inf)),
                        (ctx.ledger["code"].to_numpy(dtype=np.int64), ctx.ledger["t"].to_numpy(dtype=float))):
        keep = codes >= 0
        np.maximum.at(last_end, codes[keep], np.nan_to_num(ends[keep], nan=np.inf))
    codes = s["code"].to_numpy(dtype=np.int64)
    t = s["t"].to_numpy(dtype=float)
    db = s["db_spend"].to_numpy(dtype=float, na_value=np.nan)
    settled = (codes >= 0) & ~np.isnan(db) & (t <= ctx.ledger_horizon)
    settled[settled] &= t[settled] >= last_end[codes[settled]] + ctx.db_lag_s
    if not settled.any():
        return 0.0, "", 0, 0
    rows = pd.DataFrame({"code": codes[settled], "t": t[settled], "db": db[settled]})
    last = rows.sort_values("t", kind="stable").drop_duplicates("code", keep="last")
    c = last["code"].to_numpy(dtype=np.int64)
    low, high = ctx.spend.at(c, last["t"].to_numpy())
    d = last["db"].to_numpy()
    dist = np.maximum(np.maximum(d - high, low - d), 0.0)
    dist[dist <= tolerance(high)] = 0.0         # float noise of the sums is no disagreement
    sized = dist < min_res
    if not sized.any() or not dist[sized].max() > 0:
        return 0.0, "", len(c), int((~sized).sum())
    i = int(np.argmax(np.where(sized, dist, -1.0)))
    return float(dist[i]), ctx.user(int(c[i])), len(c), int((~sized).sum())
