"""End users and their budgets, created before the load (a new end user has no budget until its row exists); the
run's teams and virtual keys with theirs (`budget.teams`, `budget.keys`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg

from harness.errors import StackError
from harness.load import keys as keys_mod
from harness.scenario.model import Scenario
from harness.stack.base import Endpoints


def create_end_users(scenario: Scenario, endpoints: Endpoints) -> dict[str, int]:
    """Per-user budgets through the proxy's `/customer/new`; the default-budget population in one SQL insert.

    `/customer/new` with no budget inserts a bare `LiteLLM_EndUserTable` row (the default budget,
    `max_end_user_budget_id`, then applies to it): thousands of those are inserted in one statement
    instead of thousands of API calls. Returns counts by path.

    A deployment the harness did not start (`endpoints.read_only`: the external backend) is never written with
    SQL, and its default end-user budget is its own: there every end user of the run is created through the API
    with the scenario's budget as its own (`default_max_budget` unless `per_user` names another).
    """
    ids = scenario.end_users.ids()
    per_user = dict(scenario.budget.per_user)
    default = scenario.budget.default_max_budget
    if endpoints.read_only and scenario.budget.create_end_users and default is not None:
        per_user = {**{u: default for u in ids}, **per_user}
    counts = {"api": 0, "sql": 0}
    if per_user:
        headers = {"Authorization": f"Bearer {endpoints.master_key}"}
        urls = endpoints.proxy_urls

        def create(item: tuple[int, tuple[str, float]]) -> None:
            i, (user_id, budget) = item
            resp = http.post(f"{urls[i % len(urls)]}/customer/new", headers=headers,
                             json={"user_id": user_id, "max_budget": budget})
            if resp.status_code >= 300 and "already exists" not in resp.text:
                raise StackError(f"/customer/new for {user_id} failed: HTTP {resp.status_code} {resp.text[:200]}",
                                 "see the proxy logs in the run folder")

        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=16)) as http, \
                ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(create, enumerate(per_user.items())))
        counts["api"] = len(per_user)
    if scenario.budget.create_end_users and not endpoints.read_only:
        rest = [u for u in ids if u not in per_user]
        if rest:
            with psycopg.connect(endpoints.postgres_dsn, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(
                    'INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, blocked) '
                    "SELECT u, 0, false FROM unnest(%s::text[]) AS u ON CONFLICT (user_id) DO NOTHING",
                    (rest,))
            counts["sql"] = len(rest)
    return counts


def run_entities(scenario: Scenario, run_id: str) -> dict[str, Any]:
    """The teams and virtual keys a run with `scenario` creates, as meta.json `entities` records them (no secret:
    keys by hashed token, index and alias; their values come from harness.load.keys.virtual_key).

    {"salt": run_id, "tag", "teams": [{"index", "team_id", "max_budget"}], "keys": [{"index", "alias", "token",
    "team_id", "max_budget"}]}; "token" is filled in by `create_teams_and_keys` (it needs the master key).
    """
    tag = keys_mod.run_tag(run_id)
    kb = scenario.budget.keys
    teams = [{"index": j, "team_id": keys_mod.team_id(tag, j), "max_budget": t.max_budget}
             for j, t in enumerate(scenario.budget.teams)]
    out_keys = []
    for i in range(kb.count):
        j = keys_mod.team_index_for(i, len(teams)) if kb.in_teams else None
        out_keys.append({"index": i, "alias": keys_mod.key_alias(tag, i), "token": None,
                         "team_id": None if j is None else teams[j]["team_id"], "max_budget": kb.max_budget})
    return {"salt": run_id, "tag": tag, "teams": teams, "keys": out_keys}


def create_teams_and_keys(scenario: Scenario, endpoints: Endpoints, run_id: str,
                          transport: httpx.BaseTransport | None = None) -> dict[str, Any] | None:
    """`/team/new` for each team of `budget.teams` (with its max_budget), then `/key/generate` for each of the
    `budget.keys.count` keys (custom key value, max_budget, team_id, key_alias) through the proxies' API (also on
    a deployment the harness did not start: the API, never SQL). Returns `run_entities` with each key's hashed
    token; None when the scenario has no keys. `transport`: httpx's (tests)."""
    if scenario.budget.keys.count == 0:
        return None
    entities = run_entities(scenario, run_id)
    # a connection each: after an unhandled error (1.108.7, above) the server drops its keep-alive connection
    headers = {"Authorization": f"Bearer {endpoints.master_key}", "Connection": "close"}
    url = endpoints.proxy_urls[0]

    def post(http: httpx.Client, path: str, body: dict[str, Any], what: str, row: tuple[str, str, str]) -> None:
        try:
            resp = http.post(f"{url}{path}", headers=headers, json=body)
        except httpx.TransportError as exc:
            if _row_exists(endpoints, *row):
                entities.setdefault("api_errors", []).append(
                    {"path": path, "what": what, "status": type(exc).__name__, "row_exists": True})
                return
            raise StackError(f"{path} for {what} failed: {type(exc).__name__}: {exc}",
                             "see the proxy logs in the run folder") from None
        if resp.status_code < 300:
            return
        # 1.108.7 through the Prisma engine stand-in answers /team/new with a 500 after the team was created and
        # committed (FastAPI's response validation: `model_spend` came back as JSON text): the row decides
        if resp.status_code >= 500 and _row_exists(endpoints, *row):
            entities.setdefault("api_errors", []).append(
                {"path": path, "what": what, "status": resp.status_code, "row_exists": True})
            return
        raise StackError(f"{path} for {what} failed: HTTP {resp.status_code} {resp.text[:200]}",
                         "see the proxy logs in the run folder")

    with httpx.Client(timeout=60, transport=transport) as http:
        for team in entities["teams"]:
            body: dict[str, Any] = {"team_id": team["team_id"], "team_alias": team["team_id"]}
            if team["max_budget"] is not None:
                body["max_budget"] = team["max_budget"]
            post(http, "/team/new", body, team["team_id"], ("LiteLLM_TeamTable", "team_id", team["team_id"]))
        for key in entities["keys"]:
            value = keys_mod.virtual_key(endpoints.master_key, entities["salt"], key["index"])
            body = {"key": value, "key_alias": key["alias"]}
            if key["max_budget"] is not None:
                body["max_budget"] = key["max_budget"]
            if key["team_id"] is not None:
                body["team_id"] = key["team_id"]
            token = keys_mod.hashed_token(value)
            post(http, "/key/generate", body, key["alias"], ("LiteLLM_VerificationToken", "token", token))
            key["token"] = token
    return entities


def _row_exists(endpoints: Endpoints, table: str, column: str, value: str) -> bool:
    """Whether the row the API call should have created is in the DB (a read: also on a read-only deployment)."""
    try:
        with psycopg.connect(endpoints.postgres_dsn, autocommit=True, connect_timeout=5,
                             **endpoints.postgres_options) as conn, conn.cursor() as cur:
            cur.execute(f'SELECT 1 FROM "{table}" WHERE {column} = %s', (value,))
            return cur.fetchone() is not None
    except psycopg.Error:
        return False
