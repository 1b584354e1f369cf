"""Classify every request of requests.csv: ok, budget rejection, upstream error, client disconnect, other.

Budget rejections are recognised by their text, never by status (400 on 1.84.0, 429 on 1.89.1, 422 on
1.104.8), in either LiteLLM wording, also when wrapped in a JSON error body:

- reservation path: ``Budget has been exceeded! EndUser=<id> Current cost: X, Max budget: Y``
- read-time check:  ``ExceededBudget: End User=<id> over budget. Spend=X, Budget=Y``

X (the counter the proxy printed) and Y (the budget it compared against) are parsed.

In a run with the counter probe (harness/run/probe.py), a budget rejection that printed the probe's budget
(`Max budget: 0.0`, whatever the wording) is no budget rejection: the load's request met a key whose budget the
probe had set to 0 for a moment. It is classed `other`, detail `probe_budget`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

OK, BUDGET, UPSTREAM, DISCONNECT, OTHER = "ok", "budget", "upstream", "disconnect", "other"
CLASSES = (OK, BUDGET, UPSTREAM, DISCONNECT, OTHER)

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# Named groups differ per wording so that one pass extracts both.
BUDGET_MESSAGE = re.compile(
    r"Budget has been exceeded!?\s*EndUser=(?P<u1>\S+?)\s*,?\s+Current cost:\s*(?P<x1>" + _NUM + r")\s*,?"
    r"\s*Max budget:\s*(?P<y1>" + _NUM + r")"
    r"|ExceededBudget:\s*End ?User=(?P<u2>\S+?)\s*,?\s+over budget\.?\s*Spend=(?P<x2>" + _NUM + r")\s*,?"
    r"\s*Budget=(?P<y2>" + _NUM + r")"
)
# Any budget rejection (also of other entities: key, team, user) — a budget rejection even unparsed.
BUDGET_ANY = re.compile(r"Budget has been exceeded|ExceededBudget|over budget|budget_exceeded", re.IGNORECASE)
# LiteLLM wraps errors of the upstream in these exception names.
UPSTREAM_TEXT = re.compile(
    r"OpenAIException|APIConnectionError|InternalServerError|ServiceUnavailable|RateLimitError|BadGateway"
    r"|APIError|litellm\.Timeout|upstream", re.IGNORECASE)

# the budget any budget message printed last (`Max budget: Y`, `Budget=Y`)
PRINTED_BUDGET = re.compile(r"(?:Max budget:|Budget=)\s*(?P<y>" + _NUM + r")")
PROBE_ARTIFACT = "probe_budget"

WORDING_RESERVATION = "reservation"   # Budget has been exceeded! EndUser=...
WORDING_READ_TIME = "read_time"       # ExceededBudget: End User=... over budget


def classify_requests(requests: pd.DataFrame, fault_request_ids: set[str] | None = None,
                      probe_budget: float | None = None) -> pd.DataFrame:
    """Add columns cls, detail, wording, budget_user, printed_counter, printed_budget (in place; returned).

    probe_budget: the budget the run's counter probe sets (None: the run had no probe)."""
    df = requests
    n = len(df)
    status = df["status"].to_numpy(dtype=float, na_value=np.nan)
    disconnected = df["disconnected"].to_numpy(dtype=float, na_value=np.nan) == 1
    err_type = df["error_type"].to_numpy(dtype=object)
    text = df["error_text"]
    is_2xx = (status >= 200) & (status < 300)
    ok = is_2xx & (err_type == "") & ~disconnected

    cls = np.full(n, OTHER, dtype=object)
    cls[ok] = OK
    detail = np.full(n, "", dtype=object)
    wording = np.full(n, "", dtype=object)
    budget_user = np.full(n, "", dtype=object)
    printed_counter = np.full(n, np.nan)
    printed_budget = np.full(n, np.nan)

    failed_idx = np.flatnonzero(~ok)
    has_text = (text.to_numpy(dtype=object)[failed_idx] != "") if n else np.zeros(0, dtype=bool)
    cand_idx = failed_idx[has_text]
    budget_mask = np.zeros(n, dtype=bool)
    if len(cand_idx):
        cand = text.iloc[cand_idx]
        any_budget = cand.str.contains(BUDGET_ANY).to_numpy()
        b_idx = cand_idx[any_budget]
        if len(b_idx):
            budget_mask[b_idx] = True
            ex = text.iloc[b_idx].str.extract(BUDGET_MESSAGE)
            w1 = ex["u1"].notna().to_numpy()
            w2 = ex["u2"].notna().to_numpy()
            wording[b_idx[w1]] = WORDING_RESERVATION
            wording[b_idx[w2]] = WORDING_READ_TIME
            budget_user[b_idx] = np.where(w1, ex["u1"].to_numpy(dtype=object),
                                          np.where(w2, ex["u2"].to_numpy(dtype=object), ""))
            printed_counter[b_idx] = np.where(w1, _num(ex["x1"]), _num(ex["x2"]))
            printed_budget[b_idx] = np.where(w1, _num(ex["y1"]), _num(ex["y2"]))
            detail[b_idx] = np.where(w1 | w2, "end_user", "other_entity")
            if probe_budget is not None:
                y = _num(text.iloc[b_idx].str.extract(PRINTED_BUDGET)["y"])
                artifact = b_idx[np.isclose(y, probe_budget, rtol=0.0, atol=1e-12)]
                budget_mask[artifact] = False
                cls[artifact] = OTHER
                detail[artifact] = PROBE_ARTIFACT
                wording[artifact] = budget_user[artifact] = ""
                printed_counter[artifact] = printed_budget[artifact] = np.nan
    cls[budget_mask] = BUDGET

    rest = ~ok & ~budget_mask & (detail != PROBE_ARTIFACT)
    disc = rest & disconnected
    cls[disc] = DISCONNECT
    rest &= ~disc

    upstream = np.zeros(n, dtype=bool)
    if fault_request_ids and rest.any():
        idx = np.flatnonzero(rest)
        upstream[idx[df["request_id"].iloc[idx].isin(fault_request_ids).to_numpy()]] = True
    text_rest_idx = np.flatnonzero(rest & ~upstream & (status > 0))
    if len(text_rest_idx):
        hit = text.iloc[text_rest_idx].str.contains(UPSTREAM_TEXT).to_numpy()
        upstream[text_rest_idx[hit]] = True
    cls[upstream] = UPSTREAM
    rest &= ~upstream
    other_idx = np.flatnonzero(rest)
    if len(other_idx):
        st = status[other_idx]
        et = err_type[other_idx]
        detail[other_idx] = np.where(st > 0, np.char.add("http_", np.nan_to_num(st).astype(int).astype(str)),
                                     np.where(et != "", et, "no_response"))

    df["cls"] = pd.Categorical(cls, categories=CLASSES)
    df["detail"] = detail
    df["wording"] = wording
    df["budget_user"] = budget_user
    df["printed_counter"] = printed_counter
    df["printed_budget"] = printed_budget
    return df


def _num(col: pd.Series) -> np.ndarray:
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
