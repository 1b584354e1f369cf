"""Findings with a size (harness/analyze/billing.py: an excess billing disagreement can explain is a note, not a
finding) and orphaned reservations over time (harness/analyze/checks/orphans.py), on synthetic run folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.analyze import analyze
from tests.analyze.rundirs import P_IN, P_OUT, T0, RunBuilder, base_scenario, budget_text, cost, steady_users

USERS = [f"eu-{i}" for i in range(5)]
MAX_RES = (400 // 4 + 8) * 1e-6 + 256 * 1e-5      # the scenario's max_reservation() with choices [256]
MIN_RES = 10 * 1e-6 + 256 * 1e-5                  # min_reservation(): shortest prompt (40 chars = 10 tokens)
BILLED_OVER = 0.0008                             # eu-4's measured over-billing (a few tokens; < MIN_RES)


def run(tmp_path: Path, expect: str = "clean", **scen: object) -> RunBuilder:
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect=expect, **scen))
    steady_users(b, USERS)      # last calls end ~46.9 s; DB caught up (lag allowance 20 s) from ~67 s
    return b


def shift(b: RunBuilder, user: str, delta: float, t_from: float, t_to: float = 1e9, db: bool = False) -> None:
    for s in b.samples:
        if s["end_user"] == user and t_from <= s["t"] - T0 <= t_to and s["redis_counter"] is not None:
            s["redis_counter"] += delta
            if db:
                s["db_spend"] = s["redis_counter"]


def over_billed(b: RunBuilder) -> None:
    """LiteLLM billed eu-4 a little more than the ledger, counter and DB alike: measured billing disagreement."""
    shift(b, "eu-4", BILLED_OVER, 60.0, db=True)


def set_gone(b: RunBuilder, user: str, t_from: float) -> None:
    """The user's key expired: no counter from t_from on."""
    for s in b.samples:
        if s["end_user"] == user and s["t"] - T0 >= t_from:
            s["redis_counter"] = None


# -- the billing allowance ---------------------------------------------------------------------------
def test_excess_within_measured_billing_disagreement_is_a_note_with_its_size(tmp_path: Path) -> None:
    b = run(tmp_path)
    over_billed(b)
    shift(b, "eu-1", 0.0005, 79.0)          # the last sample only: smaller than eu-4's measured disagreement
    res = analyze(b.write(), plots=False)
    dr = res.evidence["drain"]
    assert res.verdict == "NOT REPRODUCED"
    assert dr["billing"]["measured_usd"] == pytest.approx(BILLED_OVER)
    assert dr["billing"]["measured_end_user"] == "eu-4"
    assert dr["leaked_users"] == 0
    assert dr["within_billing_users"] == 1 and dr["within_billing_max"] == pytest.approx(0.0005)
    assert any("by up to $0.0005" in n and "not a leaked reservation" in n for n in res.evidence["notes"])
    assert res.summary.billing_disagreement_usd == pytest.approx(BILLED_OVER)
    assert res.summary.within_billing_users == 1


def test_excess_beyond_billing_disagreement_is_a_leak(tmp_path: Path) -> None:
    b = run(tmp_path, expect="reproduced")
    over_billed(b)
    shift(b, "eu-1", 0.002, 79.0)           # more than billing explains, less than one reservation (MIN_RES)
    res = analyze(b.write(), plots=False)
    assert res.verdict == "REPRODUCED"
    dr = res.evidence["drain"]
    assert dr["leaked_users"] == 1 and dr["leaked_total"] == pytest.approx(0.002)
    assert dr["worst"]["billing_allowance"] == pytest.approx(BILLED_OVER)


def test_with_no_disagreement_measured_any_excess_is_a_leak(tmp_path: Path) -> None:
    # the "one cent decides" stays true where the run shows billing agrees with the ledger exactly
    b = run(tmp_path, expect="reproduced")
    shift(b, "eu-1", 0.0005, 79.0)
    res = analyze(b.write(), plots=False)
    assert res.evidence["drain"]["billing"]["measured_usd"] == 0
    assert res.verdict == "REPRODUCED" and res.evidence["drain"]["leaked_users"] == 1


def test_a_disagreement_of_a_whole_reservation_is_not_billing(tmp_path: Path) -> None:
    # eu-4's DB lost all its spend (a lost write, not a token count): not used as an allowance, only counted
    b = run(tmp_path, expect="reproduced")
    for s in b.samples:
        if s["end_user"] == "eu-4" and s["t"] - T0 >= 60:
            s["db_spend"] = 0.0
    shift(b, "eu-1", 0.0005, 79.0)
    res = analyze(b.write(), plots=False)
    bill = res.evidence["drain"]["billing"]
    assert 10 * cost() >= MIN_RES                 # what eu-4's DB lost is at least one reservation
    assert bill["measured_usd"] == 0 and bill["not_billing_sized_users"] == 1
    assert bill["min_reservation"] == pytest.approx(MIN_RES)
    assert res.verdict == "REPRODUCED"


def walk_away(b: RunBuilder, t: float, user: str, delivered: int = 50) -> float:
    """A stream the client cut: the mock delivered `delivered` tokens (in the true high bound only)."""
    rid = b.request(t, user, dur=0.3, stream=1, disconnected=1)
    b.call(t + 0.01, user, promised=200, delivered=delivered, outcome="client_gone", dur=0.3, request_id=rid,
           stream=1)
    return 100 * P_IN + delivered * P_OUT


@pytest.mark.parametrize(("extra", "leak"), [(0.0002, False), (0.0006, True)])
def test_token_rounding_of_a_partly_delivered_call(tmp_path: Path, extra: float, leak: bool) -> None:
    # LiteLLM counts a cut stream with its own tokenizer: one completion token + 3 × the ledger's prompt tokens
    rounding = P_OUT + 3 * 100 * P_IN
    b = run(tmp_path, expect="reproduced" if leak else "clean")
    partial = walk_away(b, 30.0, "eu-1")
    shift(b, "eu-1", partial + extra, 79.0)       # the counter billed the cut stream, plus `extra`
    res = analyze(b.write(), plots=False)
    dr = res.evidence["drain"]
    assert dr["billing"]["per_call_rounding_max_usd"] == pytest.approx(rounding)
    assert dr["leaked_users"] == int(leak)
    assert dr["within_billing_users"] == int(not leak)
    assert res.verdict == ("REPRODUCED" if leak else "NOT REPRODUCED")


def test_phantom_threshold_keeps_the_billing_allowance(tmp_path: Path) -> None:
    # eu-1's 5 calls = 0.0105 true spend by 24 s, nothing in flight then; the rejection leaves one reservation
    # + 0.0004 of room: phantom on exact billing, but not when the run shows 0.0008 of billing disagreement
    budget = 5 * cost() + MAX_RES + 0.0004
    exact = run(tmp_path / "exact", budget={"default_max_budget": budget})
    shift(exact, "eu-1", MAX_RES, 20.0)      # a reservation that never comes back (else: a late release)
    exact.request(24.0, "eu-1", status=400, error_text=budget_text("eu-1", budget, budget))
    assert analyze(exact.write(), plots=False).evidence["phantom"]["count"] == 1

    b = run(tmp_path / "noisy", budget={"default_max_budget": budget})
    over_billed(b)
    b.request(24.0, "eu-1", status=400, error_text=budget_text("eu-1", budget, budget))
    res = analyze(b.write(), plots=False)
    ph = res.evidence["phantom"]
    assert ph["count"] == 0 and ph["within_billing"] == 1
    assert any("within the billing disagreement" in n and "phantom threshold" in n for n in res.evidence["notes"])
    assert "1 budget rejection(s) phantom only without the billing allowance" in res.report_path.read_text()


# -- orphaned reservations over time -----------------------------------------------------------------
def test_orphan_that_expires_before_the_drain_is_a_leak(tmp_path: Path) -> None:
    # a reservation stays on eu-1's counter from 45 s until its key expires (eu-1's calls: 41.1–41.6 s, then
    # 46.1–46.6 s, each + 2 s release grace)
    b = run(tmp_path, expect="reproduced")
    shift(b, "eu-1", MAX_RES, 45.0)
    set_gone(b, "eu-1", 65.0)
    res = analyze(b.write(), plots=False)
    assert res.evidence["drain"]["leaked_users"] == 0          # the drain sample no longer sees it
    orph = res.evidence["orphans"]
    assert orph["orphaned_users"] == 1 and orph["expired_before_drain_users"] == 1
    assert orph["orphaned_usd"] == pytest.approx(MAX_RES)
    assert orph["first"]["end_user"] == "eu-1"
    assert orph["first"]["first"] == pytest.approx(45.0)       # first sample with nothing of eu-1 in flight
    assert orph["first"]["last"] == pytest.approx(60.0)
    assert res.verdict == "REPRODUCED"
    assert res.summary.orphaned_users == 1 and res.summary.orphaned_expired_users == 1
    assert any("orphaned reservations" in r for r in res.reasons)


def test_orphan_counts_for_the_leak_check_selection_only(tmp_path: Path) -> None:
    b = run(tmp_path, checks=["phantom"])
    shift(b, "eu-1", MAX_RES, 45.0)
    set_gone(b, "eu-1", 65.0)
    res = analyze(b.write(), plots=False)
    assert res.evidence["orphans"]["orphaned_users"] == 1
    assert res.verdict == "NOT REPRODUCED"
    assert any(n.startswith("not counted by this scenario's checks") and "orphaned" in n
               for n in res.evidence["notes"])


def test_a_late_release_is_not_an_orphan(tmp_path: Path) -> None:
    # the excess came back down while the key existed: a request still held it and released it late
    b = run(tmp_path)
    shift(b, "eu-1", MAX_RES, 45.0, 60.0)
    res = analyze(b.write(), plots=False)
    assert res.evidence["orphans"]["orphaned_users"] == 0
    assert res.verdict == "NOT REPRODUCED"


def test_a_reservation_held_by_a_request_in_flight_is_not_an_orphan(tmp_path: Path) -> None:
    # a long stream of eu-1 runs until 66 s: its reservation is legitimately held, then the key expires
    b = run(tmp_path)
    b.request(44.0, "eu-1", dur=22.0, stream=1)
    shift(b, "eu-1", MAX_RES, 45.0)
    set_gone(b, "eu-1", 70.0)
    res = analyze(b.write(), plots=False)
    assert res.evidence["orphans"]["orphaned_users"] == 0
    assert res.verdict == "NOT REPRODUCED"


def test_orphan_within_billing_disagreement_is_a_note(tmp_path: Path) -> None:
    b = run(tmp_path)
    over_billed(b)
    shift(b, "eu-1", 0.0005, 50.0)
    set_gone(b, "eu-1", 65.0)
    res = analyze(b.write(), plots=False)
    orph = res.evidence["orphans"]
    assert orph["orphaned_users"] == 0
    assert orph["within_billing_users"] == 1 and orph["within_billing_max"] == pytest.approx(0.0005)
    assert res.verdict == "NOT REPRODUCED"


# -- late releases are not phantoms -------------------------------------------------------------------
def _rejected_while_held(tmp_path: Path, held_until: float) -> RunBuilder:
    """eu-1 is rejected at 24 s while a reservation (no request of eu-1 in flight) sits on its counter from
    20 s to `held_until`; its key exists throughout."""
    budget = 5 * cost() + MAX_RES + 0.0004
    b = run(tmp_path, expect="clean", budget={"default_max_budget": budget})
    shift(b, "eu-1", MAX_RES, 20.0, held_until)
    b.request(24.0, "eu-1", status=400, error_text=budget_text("eu-1", budget + MAX_RES, budget))
    return b


def test_a_rejection_whose_reservation_came_back_later_is_a_late_release(tmp_path: Path) -> None:
    res = analyze(_rejected_while_held(tmp_path, held_until=40.0).write(), plots=False)
    ph = res.evidence["phantom"]
    assert ph["count"] == 0 and ph["released_late"] == 1 and 15.0 <= ph["released_late_max_s"] <= 30.0
    assert res.summary.late_release_rejections == 1 and res.verdict == "NOT REPRODUCED"
    assert any("late releases, not phantoms" in n for n in res.evidence["notes"])


def test_a_rejection_whose_reservation_never_came_back_is_a_phantom(tmp_path: Path) -> None:
    b = _rejected_while_held(tmp_path, held_until=1e9)
    res = analyze(b.write(), plots=False)
    assert res.evidence["phantom"]["count"] == 1 and res.evidence["phantom"]["released_late"] == 0
    assert res.verdict == "REPRODUCED"


def test_a_counter_that_expired_is_no_release(tmp_path: Path) -> None:
    # the excess stays until the key expires at 50 s: the drop to "no key" is a TTL, not a release
    b = _rejected_while_held(tmp_path, held_until=1e9)
    set_gone(b, "eu-1", 50.0)
    res = analyze(b.write(), plots=False)
    assert res.evidence["phantom"]["count"] == 1 and res.evidence["phantom"]["released_late"] == 0
