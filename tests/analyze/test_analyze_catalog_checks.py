"""Analyzer additions for the scenario catalog: `checks` (deflation opt-in) and `mix.first_requests` (the rejected
request's own reservation is an ordinary one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.analyze import analyze
from tests.analyze.rundirs import T0, RunBuilder, base_scenario, budget_text, steady_users

USERS = [f"eu-{i}" for i in range(5)]


def _deflated(tmp_path: Path, checks: list[str] | None) -> RunBuilder:
    extra = {} if checks is None else {"checks": checks}
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect="reproduced", **extra))
    steady_users(b, USERS)
    for s in b.samples:           # eu-2's counter went back by $0.005 at 30 s (Redis restarted from an old snapshot)
        if s["end_user"] == "eu-2" and s["t"] - T0 >= 30:
            s["redis_counter"] -= 0.005
    return b


def test_deflation_is_reported_but_not_the_bug_by_default(tmp_path: Path) -> None:
    res = analyze(_deflated(tmp_path, None).write(), plots=False)
    dr = res.evidence["drain"]
    assert res.verdict == "NOT REPRODUCED"
    assert dr["undercounted_users"] == 1
    assert dr["undercounted_total"] == pytest.approx(0.005)
    assert dr["undercounted_worst"]["end_user"] == "eu-2"


def test_deflation_counts_when_the_scenario_checks_it(tmp_path: Path) -> None:
    res = analyze(_deflated(tmp_path, ["phantom", "leak", "deflation"]).write(), plots=False)
    assert res.verdict == "REPRODUCED" and res.exit_code == 0
    assert any("below their true spend" in r for r in res.reasons)


def test_a_check_left_out_is_a_note_not_the_verdict(tmp_path: Path) -> None:
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect="clean", checks=["phantom"]))
    steady_users(b, USERS)
    for s in b.samples:
        if s["end_user"] == "eu-1" and s["t"] - T0 >= 20:
            s["redis_counter"] += 0.3
    res = analyze(b.write(), plots=False)
    assert res.verdict == "NOT REPRODUCED"
    assert res.evidence["drain"]["leaked_users"] == 1
    assert any("not counted by this scenario's checks" in n for n in res.evidence["notes"])


def test_first_request_reserving_the_whole_budget_does_not_hide_phantoms(tmp_path: Path) -> None:
    """The minimal case: one cut stream reserved the whole $1 budget; the small requests after it are phantoms."""
    scen = base_scenario(budget={"default_max_budget": 1.0}, end_users={"count": 1},
                         pricing={"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-4},
                         mix={"max_tokens": {"choices": [8]},
                              "first_requests": {"count": 1, "max_tokens": None, "disconnect_after_chunks": 1}})
    b = RunBuilder(tmp_path / "run", scenario=scen)
    rid = b.request(1.0, "eu-0000", stream=1, disconnected=1, dur=0.3)
    b.call(1.01, "eu-0000", promised=16384, delivered=1, outcome="client_disconnect", request_id=rid, stream=1)
    for k in range(25):
        b.request(5.0 + k, "eu-0000", status=400, error_text=budget_text("eu-0000", 1.0001, 1.0), dur=0.05)
    for t in range(0, 80, 5):
        b.sample(float(t), "eu-0000", 1.0 if t >= 1 else None, 0.0)
    res = analyze(b.write(), plots=False)
    ph = res.evidence["phantom"]
    assert res.verdict == "REPRODUCED"
    assert ph["count"] == 25
    assert ph["max_reservation"] == pytest.approx(1.0)      # the first request could reserve the whole budget


def test_counters_all_expired_before_the_drain_is_inconclusive(tmp_path: Path) -> None:
    """A clean verdict needs something to check: counters seen during the run, none left at the drain sample."""
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect="clean"))
    steady_users(b, USERS)
    for s in b.samples:
        if s["t"] - T0 >= 60:        # the load ended at 60 s; every counter has expired by then
            s["redis_counter"] = None
    res = analyze(b.write(), plots=False)
    assert res.verdict == "INCONCLUSIVE"
    assert any("nothing to judge" in r for r in res.reasons)
