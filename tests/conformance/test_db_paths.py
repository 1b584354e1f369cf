"""LiteLLM's own database code paths, through the real generated Prisma client of each supported version
and the query-engine stand-in (or the native engine with HARNESS_PRISMA_ENGINE=native), against a real
Postgres. Every test asserts the rows Postgres holds afterwards (or seeds rows and asserts what LiteLLM
read back), not merely that no exception was raised.

Run: `pytest -m conformance tests/conformance` (versions whose environment is not built are skipped;
HARNESS_CONFORMANCE_VERSIONS=1.84.0,1.108.7 narrows the set).
"""

from __future__ import annotations

import hashlib

import pytest

from tests.conformance.conftest import execute, rows

pytestmark = pytest.mark.conformance

EXPECTED_VIEWS = {"LiteLLM_VerificationTokenView", "MonthlyGlobalSpend", "Last30dKeysBySpend",
                  "Last30dModelsBySpend", "MonthlyGlobalSpendPerKey", "MonthlyGlobalSpendPerUserPerKey",
                  "Last30dTopEndUsersSpend", "DailyTagSpend"}


def seed_budget(dsn: str, budget_id: str, max_budget: float) -> None:
    execute(dsn, 'INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by, '
                 'created_at, updated_at) VALUES (%s, %s, %s, %s, now(), now())',
            budget_id, max_budget, "seed", "seed")


def seed_end_user(dsn: str, user_id: str, spend: float, budget_id: str | None) -> None:
    execute(dsn, 'INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, budget_id, blocked) VALUES (%s, %s, %s, false)',
            user_id, spend, budget_id)


def test_startup_queries(drive, db: str) -> None:  # noqa: ANN001
    """connect, health check, check_view_exists (creates the views with execute_raw, then reads them back
    with a query_raw that ARRAY_AGGs a `name` column), config lookup."""
    result = drive("startup", db)
    in_db = {r["viewname"] for r in rows(db, "SELECT viewname FROM pg_views WHERE schemaname = 'public'")}
    assert in_db >= EXPECTED_VIEWS, f"views missing in Postgres: {EXPECTED_VIEWS - in_db}"
    assert set(result["views"]) == in_db
    first = result["raw_types"][0]
    assert first["nothing"] == "NoneType"
    assert first["all_views"] and all(t == "str" for t in first["all_views"])


def test_budget_new(drive, db: str) -> None:  # noqa: ANN001
    """/budget/new: LiteLLM's new_budget() endpoint function."""
    # (model_max_budget, the budget's Json field, needs an enterprise licence: Json writes are checked on
    # the spend logs instead)
    budget = {"budget_id": "conf-budget", "max_budget": 2.5, "budget_duration": "30d", "rpm_limit": 60}
    result = drive("budget_new", db, budget=budget)
    assert result["created"]["budget_id"] == "conf-budget"
    got = rows(db, 'SELECT budget_id, max_budget, budget_duration, rpm_limit, created_by, budget_reset_at '
                   'FROM "LiteLLM_BudgetTable" WHERE budget_id = %s', "conf-budget")
    assert len(got) == 1
    row = got[0]
    assert row["max_budget"] == 2.5
    assert row["budget_duration"] == "30d"
    assert row["rpm_limit"] == 60
    assert row["created_by"] == "conformance-admin"
    assert row["budget_reset_at"] is not None  # a DateTime written through the engine


def test_customer_new(drive, db: str) -> None:  # noqa: ANN001
    """/customer/new: LiteLLM's new_end_user() with its own max_budget (creates a budget row in the same
    call) and with an existing budget_id."""
    seed_budget(db, "shared-budget", 7.0)
    drive("customer_new", db, customers=[{"user_id": "conf-c1", "max_budget": 3.0},
                                         {"user_id": "conf-c2", "budget_id": "shared-budget"}])
    got = {r["user_id"]: r for r in rows(
        db, 'SELECT e.user_id, e.spend, e.blocked, e.budget_id, b.max_budget FROM "LiteLLM_EndUserTable" e '
            'LEFT JOIN "LiteLLM_BudgetTable" b ON b.budget_id = e.budget_id ORDER BY e.user_id')}
    assert set(got) == {"conf-c1", "conf-c2"}
    assert got["conf-c1"]["max_budget"] == 3.0 and got["conf-c1"]["spend"] == 0.0
    assert got["conf-c1"]["budget_id"] not in (None, "shared-budget")
    assert got["conf-c2"]["budget_id"] == "shared-budget" and got["conf-c2"]["max_budget"] == 7.0
    assert not got["conf-c1"]["blocked"]


def test_auth_lookups(drive, db: str) -> None:  # noqa: ANN001
    """The request path: get_end_user_object (with and without its own budget, default budget applied),
    the combined key view (query_raw with joins), get_key_object and get_user_object."""
    seed_budget(db, "eu-budget", 4.0)
    seed_budget(db, "default-budget", 2.0)
    seed_end_user(db, "eu-with-budget", 1.25, "eu-budget")
    seed_end_user(db, "eu-no-budget", 0.5, None)
    execute(db, 'INSERT INTO "LiteLLM_UserTable" (user_id, spend, max_budget, models) VALUES (%s, %s, %s, %s)',
            "conf-user", 0.75, 10.0, [])
    token = hashlib.sha256(b"sk-conformance-key").hexdigest()
    execute(db, 'INSERT INTO "LiteLLM_VerificationToken" (token, key_name, spend, max_budget, user_id, models, '
                'metadata, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, now(), now())',
            token, "sk-...key", 0.2, 5.0, "conf-user", [], '{"team": "conf"}')
    result = drive("auth_lookups", db, end_users=["eu-with-budget", "eu-no-budget", "eu-missing"],
                   default_budget_id="default-budget", hashed_token=token, user_id="conf-user")
    eu = result["end_users"]
    assert eu["eu-with-budget"]["spend"] == 1.25
    assert eu["eu-with-budget"]["litellm_budget_table"]["max_budget"] == 4.0
    assert eu["eu-missing"] is None
    no_budget = eu["eu-no-budget"]
    assert no_budget["spend"] == 0.5
    if no_budget.get("litellm_budget_table") is not None:  # versions that apply max_end_user_budget_id
        assert no_budget["litellm_budget_table"]["max_budget"] == 2.0
    view = result["key_view"]
    assert view["token"] == token and view["spend"] == 0.2 and view["max_budget"] == 5.0
    assert view["user_id"] == "conf-user"
    assert view["metadata"] == {"team": "conf"}
    assert result["key_object"]["token"] == token
    assert result["user_object"]["user_id"] == "conf-user" and result["user_object"]["spend"] == 0.75


def test_spend_writer(drive, db: str) -> None:  # noqa: ANN001
    """The spend writer: update_database() with the kwargs of a real (mocked upstream) completion, then the
    update_spend() job: SpendLogs create_many, EndUserTable upserts in a tx+batch, DailyEndUserSpend batch
    upserts; a second round takes the update branch of every upsert."""
    seed_end_user(db, "eu-existing", 1.0, None)
    rounds = [[{"end_user": "eu-existing", "cost": 0.25}, {"end_user": "eu-new", "cost": 0.5}],
              [{"end_user": "eu-existing", "cost": 0.125}, {"end_user": "eu-new", "cost": 0.0625}]]
    result = drive("spend_write", db, rounds=rounds)
    assert len(result["sent"]) == 4
    end_users = {r["user_id"]: r["spend"] for r in rows(db, 'SELECT user_id, spend FROM "LiteLLM_EndUserTable"')}
    assert end_users["eu-existing"] == pytest.approx(1.375)
    assert end_users["eu-new"] == pytest.approx(0.5625)
    logs = rows(db, 'SELECT request_id, end_user, spend, status, jsonb_typeof(metadata) AS metadata_type, '
                    'metadata FROM "LiteLLM_SpendLogs" ORDER BY "startTime"')
    assert len(logs) == 4
    # Json fields must be stored as JSON objects, not as a JSON string holding JSON (double encoding)
    assert all(log["metadata_type"] == "object" for log in logs), logs[0]["metadata"]
    assert len({log["request_id"] for log in logs}) == 4
    by_user: dict[str, float] = {}
    for log in logs:
        by_user[log["end_user"]] = by_user.get(log["end_user"], 0.0) + log["spend"]
    assert by_user == pytest.approx({"eu-existing": 0.375, "eu-new": 0.5625})
    daily = rows(db, 'SELECT end_user_id, sum(spend) AS spend, sum(api_requests) AS requests '
                     'FROM "LiteLLM_DailyEndUserSpend" GROUP BY end_user_id')
    assert {d["end_user_id"]: (d["spend"], d["requests"]) for d in daily} == {
        "eu-existing": (pytest.approx(0.375), 2), "eu-new": (pytest.approx(0.5625), 2)}


def test_raw_result_shapes(drive, db: str) -> None:  # noqa: ANN001
    """query_raw / query_first / execute_raw / group_by results have the Python types the native engine
    gave: NULL -> None, arrays of any element type, jsonb -> dict, float8 -> float even when integral."""
    seed_budget(db, "b1", 1.0)
    seed_end_user(db, "raw-a", 2.0, "b1")
    seed_end_user(db, "raw-b", 0.5, None)
    result = drive("raw_shapes", db, user_id="raw-a")
    assert [r["user_id"] for r in result["rows"]] == ["raw-a", "raw-b"]
    types = result["types"][0]
    assert types["nothing"] == "NoneType"
    assert types["spend"] == "float" and types["one"] == "float" and types["big"] == "int"
    assert types["doc"] == {"a": ["int", "float"]}
    assert types["everyone"] == ["str", "str"]
    assert result["rows"][1]["budget_id"] is None
    assert result["affected"] == 1 and result["affected_type"] == "int"
    assert result["first"] == {"spend": 2.5} and result["first_types"] == {"spend": "float"}
    assert rows(db, 'SELECT spend FROM "LiteLLM_EndUserTable" WHERE user_id = %s', "raw-a")[0]["spend"] == 2.5
    sums = {g["budget_id"]: g["_sum"]["spend"] for g in result["grouped"]}
    assert sums == {"b1": 2.5, None: 0.5}
    assert all(g["_sum"]["spend"] == "float" for g in result["grouped_types"])
    assert result["count"] == 2
