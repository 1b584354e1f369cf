"""The completeness check: each gap in the evidence turns a clean verdict INCONCLUSIVE with its reason; only
missing ground truth also voids findings."""

from __future__ import annotations

from pathlib import Path

from harness.analyze import analyze
from harness.analyze.checks.completeness import GAP_INTERVALS
from tests.analyze.rundirs import T0, RunBuilder, base_scenario, budget_text, cost, steady_users

USERS = [f"eu-{i}" for i in range(5)]


def clean_run(tmp_path: Path, expect: str = "clean", meta: dict | None = None, **scen: object) -> RunBuilder:
    # samples every 5 s on a 1 s interval would be gaps of 5 intervals: sample as often as the scenario says
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect=expect, **scen), meta=meta)
    steady_users(b, USERS, samples_until=85.0, sample_every=1.0)
    return b


def skip_rounds(b: RunBuilder, after: float, before: float) -> None:
    """The sampler skipped its rounds in (after, before) (a read error): the sequence number does not advance."""
    b.samples = [s for s in b.samples if not after < s["t"] - T0 < before]
    rounds = sorted({s["t"] for s in b.samples})
    for s in b.samples:
        s["sample"] = rounds.index(s["t"])


def with_phantom(b: RunBuilder) -> RunBuilder:
    b.request(30.0, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))
    return b


def test_complete_clean_run_is_not_reproduced_and_says_so(tmp_path: Path) -> None:
    res = analyze(clean_run(tmp_path).write(), plots=False)
    assert res.verdict == "NOT REPRODUCED"
    ev = res.evidence["completeness"]
    assert ev["status"] is None and ev["drain_finished"] is True
    assert ev["unmatched_ledger_rows"] == 0 and ev["sampler_gaps"] == []
    assert ev["max_sampler_gap_s"] <= ev["sampler_gap_limit_s"] == GAP_INTERVALS * 1.0
    assert res.summary.evidence_problems == 0 and res.summary.unmatched_ledger_rows == 0


def test_interrupted_run_is_inconclusive(tmp_path: Path) -> None:
    res = analyze(clean_run(tmp_path, meta={"status": "interrupted"}).write(), plots=False)
    assert res.verdict == "INCONCLUSIVE" and res.exit_code == 1
    assert any("the run was interrupted" in r for r in res.reasons)
    assert res.summary.evidence_problems == 1


def test_failed_run_names_its_step(tmp_path: Path) -> None:
    res = analyze(clean_run(tmp_path, meta={"status": "failed", "failed_at": "nemesis.stop"}).write(), plots=False)
    assert res.verdict == "INCONCLUSIVE"
    assert any("the run was failed at nemesis.stop" in r for r in res.reasons)


def test_run_without_drain_end_is_inconclusive(tmp_path: Path) -> None:
    res = analyze(clean_run(tmp_path, meta={"t_drain_end": None}).write(), plots=False)
    assert res.verdict == "INCONCLUSIVE"
    assert any("never finished its drain" in r for r in res.reasons)


def test_interrupted_run_keeps_its_findings(tmp_path: Path) -> None:
    b = with_phantom(clean_run(tmp_path, expect="reproduced", meta={"status": "interrupted"}))
    res = analyze(b.write(), plots=False)
    assert res.verdict == "REPRODUCED"
    assert any("the run was interrupted" in n for n in res.evidence["notes"])


def test_empty_ledger_voids_a_phantom_finding(tmp_path: Path) -> None:
    b = with_phantom(clean_run(tmp_path, expect="reproduced"))
    b.ledger.clear()
    res = analyze(b.write(), plots=False)
    assert res.evidence["phantom"]["count"] == 1          # the phantom check still counts it ...
    assert res.verdict == "INCONCLUSIVE" and res.exit_code == 1     # ... but it cannot stand without truth
    assert "no ground truth" in res.reasons[0]
    assert any(n.startswith("not concluded") and "phantom" in n for n in res.evidence["notes"])
    assert res.evidence["checks"]["completeness"]["vetoes"] == [res.reasons[0]]


def test_ledger_naming_no_scenario_user_is_no_ground_truth(tmp_path: Path) -> None:
    b = with_phantom(clean_run(tmp_path, expect="reproduced"))
    for row in b.ledger:
        row["end_user"], row["request_id"] = "ns1:" + row["end_user"], ""
    res = analyze(b.write(), plots=False)
    assert res.verdict == "INCONCLUSIVE"
    assert "no ground truth for any end user" in res.reasons[0]
    assert res.summary.unmatched_ledger_rows == len(b.ledger)


def test_material_unmatched_ledger_rows_block_a_clean_verdict(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    for t in (10.0, 20.0):           # two calls: more than one max reservation of spend that is no one's
        b.call(t, "stranger")
    res = analyze(b.write(), plots=False)
    assert res.verdict == "INCONCLUSIVE"
    assert any("2 of 52 ledger row(s)" in r and "'stranger'" in r for r in res.reasons)
    assert res.evidence["completeness"]["unmatched_ledger_usd"] == 2 * cost()


def test_unmatched_ledger_rows_are_counted_even_when_immaterial(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    b.call(10.0, "", prompt=10, promised=10, request_id="not-sent")    # tiny, and no request to take a user from
    res = analyze(b.write(), plots=False)
    assert res.verdict == "NOT REPRODUCED"
    assert res.summary.unmatched_ledger_rows == 1
    assert any("1 of 51 ledger row(s)" in n and "inside the margin" in n for n in res.evidence["notes"])


def test_sampler_gap_during_the_load_is_inconclusive(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    skip_rounds(b, 20.0, 30.0)
    res = analyze(b.write(), plots=False)
    assert res.verdict == "INCONCLUSIVE"
    gaps = res.evidence["completeness"]["sampler_gaps"]
    assert len(gaps) == 1 and gaps[0]["from"] == 20.0 and gaps[0]["s"] == 10.0
    assert any(r.startswith("sampler gap: no sample for 10.0 s") for r in res.reasons)


def test_gap_just_under_the_limit_is_jitter(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    skip_rounds(b, 20.0, 25.0)      # 5 s = the limit
    res = analyze(b.write(), plots=False)
    assert res.verdict == "NOT REPRODUCED"


def test_sampler_stopping_before_the_drain_ended_is_a_gap(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    b.samples = [s for s in b.samples if s["t"] - T0 <= 70.0]     # drain ends at 85 s
    res = analyze(b.write(), plots=False)
    assert res.verdict == "INCONCLUSIVE"
    assert res.evidence["completeness"]["sampler_gaps"][-1]["to"] == 85.0


def test_rounds_with_nothing_to_write_are_not_gaps(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    # rounds 20..29 ran (their sequence numbers are used) but wrote no row: nothing existed to sample
    b.samples = [s for s in b.samples if not 20.0 < s["t"] - T0 < 30.0]
    for s in b.samples:
        s["sample"] = int(s["t"] - T0)
    res = analyze(b.write(), plots=False)
    assert res.evidence["completeness"]["sampler_gaps"] == []
    assert res.verdict == "NOT REPRODUCED"


def test_sampler_gap_inside_a_fault_window_is_a_note(tmp_path: Path) -> None:
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(
        expect="clean", faults=[{"at_s": 19.0, "kind": "restart_redis", "duration_s": 5.0}]), meta={
        "nemesis_errors": []})
    steady_users(b, USERS, samples_until=85.0, sample_every=1.0)
    b.fault(19.0, "start", 0, "restart_redis")
    b.fault(24.0, "end", 0, "restart_redis")
    skip_rounds(b, 20.0, 30.0)
    res = analyze(b.write(), plots=False)
    assert res.verdict == "NOT REPRODUCED", res.reasons
    assert any("during a fault window" in n for n in res.evidence["notes"])
