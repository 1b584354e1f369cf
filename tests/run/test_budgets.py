"""The budgets stage's teams and virtual keys (harness/run/budgets.py) against a fake proxy API (httpx transport)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.errors import StackError
from harness.load.keys import hashed_token, virtual_key
from harness.run.budgets import create_teams_and_keys, run_entities
from harness.run.stages import sampled_entities
from harness.scenario.model import parse_scenario
from harness.stack.base import Endpoints

MASTER = "sk-master-for-tests-0123456789"


def _endpoints() -> Endpoints:
    return Endpoints(proxy_urls=["http://proxy-0", "http://proxy-1"], redis_url="redis://r", redis_direct_url="redis://r",
                     postgres_dsn="postgresql://p", mock_url="http://mock", master_key=MASTER)


def _scenario(**budget: Any) -> Any:
    return parse_scenario({"name": "kt", "expect": "reproduced", "budget": budget}, Path("kt.yaml"))


class FakeApi:
    """Records every management call; /key/generate answers like LiteLLM (the key back), or fails on demand."""

    def __init__(self, fail: str | None = None, status: int = 400) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.fail = fail
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.calls.append((request.url.path, request.headers["Authorization"], body))
        if request.url.path == self.fail:
            return httpx.Response(self.status, json={"error": {"message": "nope"}})
        if request.url.path == "/key/generate":
            return httpx.Response(200, json={"key": body["key"], "token": hashed_token(body["key"])})
        return httpx.Response(200, json={"team_id": body.get("team_id")})


def test_teams_then_keys_with_their_budgets_and_no_secret_in_the_result() -> None:
    sc = _scenario(teams=[{"max_budget": 12.0}, {}], keys={"count": 3, "max_budget": 5.0})
    api = FakeApi()
    entities = create_teams_and_keys(sc, _endpoints(), "run-1", transport=httpx.MockTransport(api))
    assert entities is not None
    paths = [p for p, _, _ in api.calls]
    assert paths == ["/team/new", "/team/new", "/key/generate", "/key/generate", "/key/generate"]
    assert all(auth == f"Bearer {MASTER}" for _, auth, _ in api.calls)
    teams = [b for p, _, b in api.calls if p == "/team/new"]
    tag = entities["tag"]
    assert teams == [{"team_id": f"team-{tag}-0", "team_alias": f"team-{tag}-0", "max_budget": 12.0},
                     {"team_id": f"team-{tag}-1", "team_alias": f"team-{tag}-1"}]     # no budget: none sent
    keys = [b for p, _, b in api.calls if p == "/key/generate"]
    assert [k["team_id"] for k in keys] == [f"team-{tag}-0", f"team-{tag}-1", f"team-{tag}-0"]   # i mod 2
    assert all(k["max_budget"] == 5.0 and k["key"].startswith("sk-") for k in keys)
    assert [k["key"] for k in keys] == [virtual_key(MASTER, "run-1", i) for i in range(3)]
    assert len({k["key"] for k in keys}) == 3
    # what meta.json gets: hashed tokens, aliases, teams — never a key value nor the master key
    text = json.dumps(entities)
    assert "sk-" not in text and MASTER not in text
    assert [k["token"] for k in entities["keys"]] == [hashed_token(k["key"]) for k in keys]
    assert entities["salt"] == "run-1"
    assert sampled_entities(entities) == {"key": [hashed_token(k["key"]) for k in keys],
                                          "team": [f"team-{tag}-0", f"team-{tag}-1"]}


def test_keys_without_teams_or_budget_and_no_keys_at_all() -> None:
    api = FakeApi()
    sc = _scenario(keys={"count": 2})
    entities = create_teams_and_keys(sc, _endpoints(), "run-2", transport=httpx.MockTransport(api))
    assert entities is not None and entities["teams"] == []
    tag = entities["tag"]
    assert [b for _, _, b in api.calls] == [{"key": virtual_key(MASTER, "run-2", i), "key_alias": f"key-{tag}-{i}"}
                                           for i in range(2)]
    assert create_teams_and_keys(_scenario(), _endpoints(), "run-3", transport=httpx.MockTransport(api)) is None
    assert len(api.calls) == 2
    assert sampled_entities(None) is None


def test_run_entities_are_what_the_analyzer_can_recompute() -> None:
    sc = _scenario(keys={"count": 2, "max_budget": 0.5, "in_teams": False})
    ent = run_entities(sc, "run-4")
    assert [k["team_id"] for k in ent["keys"]] == [None, None] and [k["token"] for k in ent["keys"]] == [None, None]
    assert run_entities(sc, "run-4") == ent and run_entities(sc, "run-5")["tag"] != ent["tag"]


def test_a_refused_key_is_one_line_naming_it() -> None:
    sc = _scenario(keys={"count": 1, "max_budget": 5.0})
    with pytest.raises(StackError, match=r"/key/generate for key-\w+-0 failed: HTTP 400"):
        create_teams_and_keys(sc, _endpoints(), "run-6", transport=httpx.MockTransport(FakeApi("/key/generate")))


def test_a_500_after_the_row_was_created_is_accepted_and_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """1.108.7 through the engine stand-in: /team/new creates the team, then fails its response validation."""
    import harness.run.budgets as budgets

    seen: list[tuple[str, str, str]] = []
    monkeypatch.setattr(budgets, "_row_exists", lambda ep, *row: seen.append(row) or True)
    sc = _scenario(teams=[{"max_budget": 3.0}], keys={"count": 1, "max_budget": 1.0})
    failing = httpx.MockTransport(FakeApi("/team/new", 500))
    entities = create_teams_and_keys(sc, _endpoints(), "run-7", transport=failing)
    assert entities is not None and entities["api_errors"] == [
        {"path": "/team/new", "what": f"team-{entities['tag']}-0", "status": 500, "row_exists": True}]
    assert seen == [("LiteLLM_TeamTable", "team_id", f"team-{entities['tag']}-0")]
    monkeypatch.setattr(budgets, "_row_exists", lambda ep, *row: False)
    with pytest.raises(StackError, match="HTTP 500"):
        create_teams_and_keys(sc, _endpoints(), "run-8", transport=httpx.MockTransport(FakeApi("/team/new", 500)))
