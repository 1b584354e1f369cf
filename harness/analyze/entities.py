"""Counter kinds other than end users — the run's own virtual keys and teams — as *entity views* of the Context.

Every end-user check judges rows by code: requests, ledger, samples and budgets are keyed by end-user code
(harness/analyze/context.py). An entity view is the same Context with the codes of one counter kind instead, so
the very same functions judge keys and teams (one home per rule): `measure_inflation`, `judge_rejections`
(phantom rejections, late releases), `judge_drain` (leaked reservations after the drain), `judge_orphans`
(orphaned reservations over time), and the billing allowance, measured on the entities' own DB spend.

In an entity view of kind K (key or team):

- the entities are the run's own (meta.json `entities`, written by the budgets stage: hashed tokens, aliases,
  team ids, budgets); `users` holds their display names (key alias, team id), `budget_by_code` their budgets;
- a request's entity is the key it was sent with (requests.csv `key`, the key's index) — or, in a folder without
  that column, the key its end user always uses (harness.load.keys.key_index_for, from the seed) — and for a
  team the team of that key;
- the ledger (what was really consumed) is attributed the same way, by end user (every request of one end user
  goes through one key), so an entity's true spend is the band of its end users' upstream calls;
- the samples are counters.csv's rows of kind K (`spend:key:<hashed token>`, `spend:team:<team_id>`) with the
  entity's DB spend (`LiteLLM_VerificationToken.spend`, `LiteLLM_TeamTable.spend`);
- a budget rejection is judged for K when its message names an entity of K (`Budget has been exceeded!
  Key=<hashed token or alias> …`, `… Team=<team_id> …`; 1.108.7 names a key by its alias), or names none
  (1.84.0's read-time key check: `Budget has been exceeded! Current cost: X, Max budget: Y`) while Y is the
  budget of the request's own entity of K and of no other budget the request was under;
- the reservation bound is the scenario's estimate *not* capped by the end-user budget (LiteLLM reserves on the
  key's and the team's counter before the end user's, and shrinks the reservation only to what is left of the
  first budget it overflows); judge_rejections caps it with each entity's own budget.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analyze.classify import BUDGET
from harness.analyze.context import Context, reservations
from harness.analyze.truespend import SpendIndex
from harness.load.keys import key_index_for

KINDS = ("key", "team")                  # the kinds a run creates and the analyzer judges
WORDS = {"key": "Key", "team": "Team"}   # how LiteLLM's budget messages name them

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# `Budget has been exceeded! <Entity>=<id> Current cost: X, [Estimated request cost: E, ]Max budget: Y`; a key
# may be named `<alias> (<masked key name>)` (1.108.7's read-time check)
NAMED_MESSAGE = re.compile(
    r"Budget has been exceeded!?\s*(?P<word>Key|Team|User|Organization|Tag|Project|TeamMember|EndUser)="
    r"(?P<id>.+?)\s+Current cost:\s*(?P<x>" + _NUM + r")\s*,?\s*(?:Estimated request cost:\s*" + _NUM +
    r"\s*,?\s*)?Max budget:\s*(?P<y>" + _NUM + r")")
UNNAMED_MESSAGE = re.compile(r"Budget has been exceeded!?\s*Current cost:\s*(?P<x>" + _NUM + r")\s*,?\s*"
                             r"Max budget:\s*(?P<y>" + _NUM + r")")


@dataclass(frozen=True)
class Entity:
    kind: str
    index: int
    counter_id: str           # what follows `spend:<kind>:` (a key's hashed token, a team's id)
    name: str                 # how reports name it (a key's alias, a team's id)
    budget: float | None
    team: str | None = None   # a key's team id


def run_entities(meta: dict[str, Any]) -> dict[str, list[Entity]]:
    """The run's own keys and teams from meta.json `entities` ({} when the run created none)."""
    ent = meta.get("entities")
    if not isinstance(ent, dict):
        return {}
    out: dict[str, list[Entity]] = {}
    keys = [k for k in ent.get("keys") or [] if isinstance(k, dict) and k.get("token")]
    if keys:
        out["key"] = [Entity("key", int(k["index"]), str(k["token"]), str(k.get("alias") or k["token"][:12]),
                             _budget(k.get("max_budget")), k.get("team_id")) for k in keys]
    teams = [t for t in ent.get("teams") or [] if isinstance(t, dict) and t.get("team_id")]
    if teams:
        out["team"] = [Entity("team", int(t["index"]), str(t["team_id"]), str(t["team_id"]),
                              _budget(t.get("max_budget"))) for t in teams]
    return out


def _budget(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def key_of_end_users(ctx: Context, n_keys: int) -> dict[str, int]:
    """End user → the index of the key all its requests used: requests.csv `key` where recorded, else the
    load's deterministic choice (key_index_for with the scenario's seed)."""
    seed = ctx.data.scenario.seed
    users = set(ctx.requests["end_user"].astype(str)) | set(ctx.ledger["end_user"].astype(str))
    users.discard("")
    out = {u: key_index_for(u, seed, n_keys) for u in users}
    r = ctx.requests
    if "key" in r.columns:
        recorded = pd.to_numeric(r["key"], errors="coerce")
        has = recorded.notna().to_numpy()
        if has.any():
            out.update(dict(zip(r["end_user"].astype(str).to_numpy()[has], recorded.to_numpy()[has].astype(int),
                                strict=True)))
    return out


def parse_rejections(text: pd.Series) -> pd.DataFrame:
    """Per budget-rejection text: the entity word it names (Key, Team, …; "" unnamed, NaN-free), the id, and the
    printed counter X and budget Y (NaN when the text is neither wording)."""
    named = text.str.extract(NAMED_MESSAGE)
    unnamed = text.str.extract(UNNAMED_MESSAGE)
    word = named["word"].fillna("")
    ident = named["id"].fillna("").str.replace(r"\s+\(.*\)$", "", regex=True)
    x = pd.to_numeric(named["x"].fillna(unnamed["x"]), errors="coerce")
    y = pd.to_numeric(named["y"].fillna(unnamed["y"]), errors="coerce")
    return pd.DataFrame({"word": word, "id": ident, "x": x, "y": y,
                         "unnamed": named["word"].isna() & unnamed["x"].notna()}, index=text.index)


def entity_view(ctx: Context, kind: str, entities: dict[str, list[Entity]]) -> Context | None:
    """The Context of counter kind `kind` (key | team) over the run's own entities; None when it has none."""
    own = sorted(entities.get(kind) or [], key=lambda e: e.index)
    keys = sorted(entities.get("key") or [], key=lambda e: e.index)
    if not own or not keys:
        return None
    names = pd.Index([e.name for e in own], dtype=object)
    code_of_key = np.arange(len(keys), dtype=np.int64)
    if kind == "team":
        team_code = {e.counter_id: i for i, e in enumerate(own)}
        code_of_key = np.array([team_code.get(k.team or "", -1) for k in keys], dtype=np.int64)
    key_pos = {k.index: i for i, k in enumerate(keys)}
    by_user = {u: key_pos.get(i, -1) for u, i in key_of_end_users(ctx, len(keys)).items()}

    def codes_of(end_users: pd.Series) -> np.ndarray:
        pos = end_users.astype(str).map(by_user).fillna(-1).to_numpy(dtype=np.int64)
        return np.where(pos >= 0, code_of_key[np.maximum(pos, 0)], -1)

    requests = ctx.requests.copy()
    requests["code"] = codes_of(requests["end_user"])
    if "key" in requests.columns:            # the key the request was really sent with, where recorded
        recorded = pd.to_numeric(requests["key"], errors="coerce").to_numpy()
        has = ~np.isnan(recorded)
        if has.any():
            pos = np.array([key_pos.get(int(i), -1) for i in recorded[has]], dtype=np.int64)
            requests.loc[has, "code"] = np.where(pos >= 0, code_of_key[np.maximum(pos, 0)], -1)
    _judge_rejections_of(ctx, requests, kind, entities, key_pos)

    ledger = ctx.ledger.copy()
    ledger["code"] = codes_of(ledger["end_user"])
    samples = _samples(ctx.data.counters, kind, own)
    t_ref = ctx.spend.t_ref
    spend = SpendIndex.build(ledger["code"].to_numpy(), ledger["t"].to_numpy(dtype=float), ledger["low"].to_numpy(),
                             ledger["high"].to_numpy(), len(own), t_ref)
    budget = np.array([np.nan if e.budget is None else e.budget for e in own], dtype=float)
    max_res, own_res = reservations(ctx.data.scenario, ledger, end_user_cap=False)
    return dataclasses.replace(ctx, users=names, requests=requests, ledger=ledger, samples=samples, spend=spend,
                               budget_by_code=budget, max_reservation=max_res, own_max_reservation=own_res,
                               warnings=[], judged_detail=kind)


def _judge_rejections_of(ctx: Context, requests: pd.DataFrame, kind: str, entities: dict[str, list[Entity]],
                         key_pos: dict[int, int]) -> None:
    """Mark (in place) the budget rejections this view judges: detail = kind, code = the entity named (or, for
    an unnamed message, the request's own), printed counter and budget from the message. Other rows keep theirs."""
    own = sorted(entities.get(kind) or [], key=lambda e: e.index)
    b = requests.index[(requests["cls"] == BUDGET).to_numpy()]
    if not len(b):
        return
    parsed = parse_rejections(requests.loc[b, "error_text"].astype(str))
    by_id = {e.counter_id: i for i, e in enumerate(own)} | {e.name: i for i, e in enumerate(own)}
    code = parsed["id"].map(by_id).where(parsed["word"] == WORDS[kind])
    if parsed["unnamed"].any():
        own_code = requests.loc[b, "code"].to_numpy(dtype=np.int64)
        y = parsed["y"].to_numpy(dtype=float)
        for j in np.flatnonzero(parsed["unnamed"].to_numpy() & (own_code >= 0)):
            mine = own[own_code[j]].budget
            others = _other_budgets(ctx, requests.loc[b[j]], kind, entities, key_pos)
            if mine is not None and np.isclose(y[j], mine) and not any(np.isclose(y[j], o) for o in others):
                code.iloc[j] = float(own_code[j])
    judged = code.notna().to_numpy()
    rows = b[judged]
    requests.loc[rows, "detail"] = kind
    requests.loc[rows, "wording"] = np.where(parsed.loc[rows, "unnamed"].to_numpy(dtype=bool), "unnamed", "named")
    requests.loc[rows, "code"] = code[judged].astype(np.int64).to_numpy()
    requests.loc[rows, "printed_counter"] = parsed.loc[rows, "x"].to_numpy()
    requests.loc[rows, "printed_budget"] = parsed.loc[rows, "y"].to_numpy()


def _other_budgets(ctx: Context, row: pd.Series, kind: str, entities: dict[str, list[Entity]],
                   key_pos: dict[int, int]) -> list[float]:
    """The budgets a request was under besides its `kind` entity's: its end user's, its key's, its key's team's."""
    budget = ctx.data.scenario.budget
    user = str(row["end_user"])
    out = [budget.per_user.get(user, budget.default_max_budget)]
    keys = sorted(entities.get("key") or [], key=lambda e: e.index)
    pos = key_pos.get(_key_index(ctx, row, len(keys)), -1)
    if pos >= 0:
        key = keys[pos]
        if kind != "key":
            out.append(key.budget)
        if kind != "team":
            out += [t.budget for t in entities.get("team") or [] if t.counter_id == key.team]
    return [float(v) for v in out if v is not None]


def _key_index(ctx: Context, row: pd.Series, n_keys: int) -> int:
    recorded = pd.to_numeric(pd.Series([row.get("key", "")]), errors="coerce").iloc[0]
    if pd.notna(recorded):
        return int(recorded)
    user = str(row["end_user"])
    return key_index_for(user, ctx.data.scenario.seed, n_keys) if user else -1


def _samples(counters: pd.DataFrame, kind: str, own: list[Entity]) -> pd.DataFrame:
    """counters.csv rows of `kind` for the run's own entities, as samples rows (end_user = the entity's name)."""
    rows = counters.loc[counters["kind"].astype(str) == kind] if len(counters) else counters
    code_of = {e.counter_id: i for i, e in enumerate(own)}
    code = rows["id"].astype(str).map(code_of).fillna(-1).to_numpy(dtype=np.int64) if len(rows) else \
        np.zeros(0, dtype=np.int64)
    keep = code >= 0
    out = pd.DataFrame({"t": rows["t"].to_numpy(dtype=float)[keep] if len(rows) else np.zeros(0),
                        "sample": rows["sample"].to_numpy(dtype=float)[keep] if len(rows) else np.zeros(0),
                        "end_user": np.array([own[c].name for c in code[keep]], dtype=object),
                        "redis_counter": rows["redis_counter"].to_numpy(dtype=float)[keep] if len(rows)
                        else np.zeros(0),
                        "db_spend": rows["db_spend"].to_numpy(dtype=float)[keep] if len(rows) else np.zeros(0),
                        "code": code[keep]})
    return out.reset_index(drop=True)


def observed_kinds(counters: pd.DataFrame, t_after: float) -> dict[str, dict[str, Any]]:
    """Per counter kind in counters.csv (any entity, the run's own or not): how many counters, and at the last
    sample after `t_after` the Σ counter, Σ DB spend and the largest counter − DB spend (evidence, never judged:
    an entity the run did not create has no ground truth here)."""
    out: dict[str, dict[str, Any]] = {}
    if not len(counters):
        return out
    for kind, rows in counters.groupby(counters["kind"].astype(str), sort=True):
        has = rows["redis_counter"].notna()
        last = rows.loc[rows["t"] >= t_after]
        last = last.sort_values("t", kind="stable").drop_duplicates("id", keep="last")
        gap = (last["redis_counter"] - last["db_spend"]).dropna()
        out[str(kind)] = {"entities": int(rows["id"].nunique()), "counters_observed": int(has.sum()),
                          "final_counter_total": float(last["redis_counter"].sum()) if len(last) else None,
                          "final_db_total": float(last["db_spend"].sum()) if len(last) else None,
                          "final_max_counter_minus_db": float(gap.max()) if len(gap) else None}
    return out
