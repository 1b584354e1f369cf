"""Every counter kind (checks/counter_kinds.py, analyze/entities.py) on synthetic run folders: a key whose counter
leaked → REPRODUCED naming the key; a team whose counter equals its true spend → clean; phantom rejections naming a
key (also 1.84.0's unnamed read-time message); folders without keys of their own analyse as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.analyze import analyze
from harness.load.keys import hashed_token
from harness.run import runfolder as rf
from tests.analyze.rundirs import RunBuilder, base_scenario, cost, steady_users, write_csv

USERS = [f"eu-{i}" for i in range(6)]
KEY_OF = {u: (0 if i < 3 else 1) for i, u in enumerate(USERS)}      # the key each end user's requests used
TOKENS = [hashed_token(f"sk-synthetic-key-{i}") for i in range(2)]
TEAM = "team-synth-0"


def _entities(key_budget: float | None, team_budget: float | None) -> dict[str, Any]:
    return {"salt": "run", "tag": "synth",
            "teams": [{"index": 0, "team_id": TEAM, "max_budget": team_budget}],
            "keys": [{"index": i, "alias": f"key-synth-{i}", "token": TOKENS[i], "team_id": TEAM,
                      "max_budget": key_budget} for i in range(2)]}


def _run(tmp_path: Path, *, key_budget: float | None = 0.5, team_budget: float | None = 2.0,
         expect: str = "clean") -> tuple[RunBuilder, dict[str, float]]:
    scen = base_scenario(expect=expect, budget={"default_max_budget": 1.0, "teams": [{"max_budget": team_budget}],
                                               "keys": {"count": 2, "max_budget": key_budget}})
    b = RunBuilder(tmp_path / "run", scenario=scen, meta={"entities": _entities(key_budget, team_budget)})
    final = steady_users(b, USERS)
    for row in b.requests:
        row["key"] = KEY_OF[row["end_user"]]
    return b, final


def _true(b: RunBuilder, users: list[str], t: float) -> float:
    """The entity's true spend at t (s after T0): its end users' calls that ended by then."""
    from tests.analyze.rundirs import T0

    return sum(cost() for c in b.ledger if c["end_user"] in users and c["t_end"] - T0 <= t)


def _counters(b: RunBuilder, leak: dict[tuple[str, str], tuple[float, float]] | None = None) -> None:
    """counters.csv every 5 s to 80 s: each key's and the team's counter = its true spend (+ a leak from a time
    on), DB spend = the true spend 10 s before."""
    leak = leak or {}
    rows: list[dict[str, Any]] = []
    from tests.analyze.rundirs import T0

    entities = [("key", TOKENS[i], [u for u in USERS if KEY_OF[u] == i]) for i in range(2)] + [("team", TEAM, USERS)]
    for k, t in enumerate(range(5, 81, 5)):
        for kind, ident, users in entities:
            true, db = _true(b, users, t), _true(b, users, t - 10)
            extra_from, extra = leak.get((kind, ident), (float("inf"), 0.0))
            counter = true + (extra if t >= extra_from else 0.0)
            rows.append({"t": T0 + t, "sample": k, "kind": kind, "id": ident,
                         "redis_counter": counter if counter > 0 else None, "counter_ttl": 55.0 if counter > 0
                         else None, "db_spend": db})
    write_csv(b.root / rf.COUNTERS_FILE, rf.COUNTERS_COLUMNS, rows)


def test_a_leaked_key_counter_is_reproduced_with_the_key_named(tmp_path: Path) -> None:
    b, _ = _run(tmp_path, expect="reproduced")
    run = b.write()
    _counters(b, leak={("key", TOKENS[0]): (30.0, 0.05)})     # key 0 kept 5 cents the run cannot explain
    res = analyze(run, plots=False)
    assert res.verdict == "REPRODUCED" and res.exit_code == 0
    assert any("key-synth-0" in r and "spend:key:*" in r and "leaked reservations" in r for r in res.reasons)
    assert not any("key-synth-1" in r for r in res.reasons)
    ck = res.evidence["counter_kinds"]["kinds"]
    key = ck["key"]
    assert key["drain"]["leaked_users"] == 1 and key["drain"]["leaked_total"] == pytest.approx(0.05)
    assert key["drain"]["worst"]["end_user"] == "key-synth-0"
    rows = {r["name"]: r for r in key["per_entity"]}
    assert rows["key-synth-0"]["counter_id"] == TOKENS[0] and rows["key-synth-0"]["leaked"] == pytest.approx(0.05)
    assert rows["key-synth-1"]["leaked"] == 0.0 and rows["key-synth-0"]["team"] == TEAM
    assert key["orphans"]["orphaned_users"] == 1            # nothing of key 0 in flight after 46 s: orphaned
    assert ck["team"]["drain"]["leaked_users"] == 0          # the team counter carries no leak
    s = res.summary
    assert (s.kinds_judged, s.kind_leaked_entities, s.key_leaked_usd, s.team_leaked_usd) == ("key,team", 1,
                                                                                               pytest.approx(0.05), 0.0)
    assert s.kind_max_ratio is not None and s.kind_max_ratio > 1
    # the end users themselves are clean: only the key found it
    assert s.leaked_users == 0 and s.phantoms == 0
    report = (run / rf.REPORT_FILE).read_text()
    assert "key counters (2 of the run's)" in report and "key-synth-0" in report


def test_a_team_counter_equal_to_its_true_spend_is_clean(tmp_path: Path) -> None:
    b, final = _run(tmp_path, team_budget=5.0)
    run = b.write()
    _counters(b)
    res = analyze(run, plots=False)
    assert res.verdict == "NOT REPRODUCED" and res.exit_code == 0
    team = res.evidence["counter_kinds"]["kinds"]["team"]
    assert team["drain"]["ran"] and team["drain"]["leaked_users"] == 0 and team["drain"]["users_checked"] == 1
    assert team["per_entity"][0]["counter"] == pytest.approx(sum(final.values()))
    assert team["per_entity"][0]["ratio"] == pytest.approx(1.0)
    assert any("spend:team:*" in p for p in res.evidence["checks"]["counter_kinds"]["findings"] + res.reasons)
    s = res.summary
    assert (s.kind_leaked_entities, s.kind_phantoms, s.kind_orphaned_entities) == (0, 0, 0)


def test_phantom_rejections_naming_a_key_named_and_unnamed(tmp_path: Path) -> None:
    b, _ = _run(tmp_path, expect="reproduced")
    # 1.84.0's reservation path names the key by its hashed token; its read-time key check names nothing
    b.request(30.0, "eu-0", status=400, error_text=f"Budget has been exceeded! Key={TOKENS[0]} Current cost: "
                                                   "0.52, Max budget: 0.5")
    b.requests[-1]["key"] = 0
    b.request(31.0, "eu-1", status=429, error_text="Budget has been exceeded! Current cost: 0.51, Max budget: 0.5")
    b.requests[-1]["key"] = 0
    # a team's budget of 2.0: 1.108.7's wording with the estimate, true spend far below → phantom of the team
    b.request(32.0, "eu-4", status=429, error_text=f"Budget has been exceeded! Team={TEAM} Current cost: 2.1, "
                                                   "Estimated request cost: 0.003, Max budget: 2.0")
    b.requests[-1]["key"] = 1
    run = b.write()
    _counters(b)
    res = analyze(run, plots=False)
    assert res.verdict == "REPRODUCED"
    key_ph = res.evidence["counter_kinds"]["kinds"]["key"]["phantom"]
    assert key_ph["count"] == 2 and key_ph["affected_end_users_sample"] == ["key-synth-0"]
    assert key_ph["first"]["printed_counter"] == 0.52 and key_ph["first"]["budget"] == 0.5
    team_ph = res.evidence["counter_kinds"]["kinds"]["team"]["phantom"]
    assert team_ph["count"] == 1 and team_ph["first"]["printed_counter"] == 2.1
    assert any("phantom budget rejection(s) naming 1 key of the run, first at 30.0 s (key-synth-0" in r
               for r in res.reasons)
    s = res.summary
    assert (s.key_phantoms, s.team_phantoms, s.kind_phantoms, s.kind_phantom_entities) == (2, 1, 3, 2)
    assert s.first_kind_phantom_s == pytest.approx(30.0)
    assert s.phantoms == 0         # none of them names an end user


def test_an_unnamed_rejection_matching_two_budgets_is_not_judged(tmp_path: Path) -> None:
    """1.84.0's unnamed message printing 1.0: the end users' budget is 1.0 too — whose counter it was is unknown."""
    b, _ = _run(tmp_path, key_budget=1.0)
    b.request(30.0, "eu-0", status=429, error_text="Budget has been exceeded! Current cost: 1.01, Max budget: 1.0")
    b.requests[-1]["key"] = 0
    run = b.write()
    _counters(b)
    res = analyze(run, plots=False)
    assert res.evidence["counter_kinds"]["kinds"]["key"]["phantom"]["count"] == 0
    assert res.verdict == "NOT REPRODUCED"


def test_without_keys_of_its_own_counter_kinds_are_evidence_only(tmp_path: Path) -> None:
    """A run with counters.csv but no entities (the master key's counter): observed, never judged."""
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect="clean"))
    steady_users(b, USERS)
    run = b.write()
    from tests.analyze.rundirs import T0

    write_csv(run / rf.COUNTERS_FILE, rf.COUNTERS_COLUMNS,
              [{"t": T0 + t, "sample": k, "kind": "key", "id": "masterhash", "redis_counter": 99.0, "counter_ttl": 50.0,
                "db_spend": 0.1} for k, t in enumerate(range(5, 81, 5))])
    res = analyze(run, plots=False)
    assert res.verdict == "NOT REPRODUCED"
    ev = res.evidence["counter_kinds"]
    assert ev["kinds"] == {} and ev["observed"]["key"]["final_max_counter_minus_db"] == pytest.approx(98.9)
    assert res.summary.kinds_judged is None and res.evidence["checks"]["counter_kinds"]["findings"] == []


def test_a_folder_without_counter_kinds_analyses_as_before(tmp_path: Path) -> None:
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect="clean"))
    steady_users(b, USERS)
    res = analyze(b.write(), plots=False)
    assert "counter_kinds" not in res.evidence
    assert all(not res.evidence["checks"][c]["findings"] and not res.evidence["checks"][c]["notes"]
               for c in ("counter_kinds", "kind_phantom"))
    assert not any("key" in r or "team" in r for r in res.reasons)
    s = res.summary
    assert (s.kinds_judged, s.kind_phantoms, s.kind_leaked_usd) == (None, None, None)
