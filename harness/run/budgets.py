"""End users and their budgets, created before the load (a new end user has no budget until its row exists)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg

from harness.errors import StackError
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
