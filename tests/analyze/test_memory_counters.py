"""Runs whose proxies kept their counters in process memory (scenario `counters: memory`): the in-process probe's
reads (probes.csv) are the counter evidence of the run's keys; the load's rejections caused by the probe's
budget of 0 are no budget rejections; without any read, no clean verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.analyze import analyze
from harness.analyze.load import load_run, probe_counters
from harness.load.keys import hashed_token
from harness.run import runfolder as rf
from tests.analyze.rundirs import T0, RunBuilder, base_scenario, cost, steady_users, write_csv

USERS = [f"eu-{i}" for i in range(6)]
KEY_OF = {u: (0 if i < 3 else 1) for i, u in enumerate(USERS)}
TOKENS = [hashed_token(f"sk-mem-key-{i}") for i in range(2)]


def _run(tmp_path: Path, expect: str = "clean", probe: bool = True) -> RunBuilder:
    scen = base_scenario(expect=expect, replicas=2, counters="memory",
                         budget={"default_max_budget": 1.0, "keys": {"count": 2, "max_budget": 0.5,
                                                                     "in_teams": False}})
    if probe:
        scen["probe"] = {"every_s": 5}
    entities = {"salt": "run", "tag": "mem", "teams": [],
                "keys": [{"index": i, "alias": f"key-mem-{i}", "token": TOKENS[i], "team_id": None,
                          "max_budget": 0.5} for i in range(2)]}
    b = RunBuilder(tmp_path / "run", scenario=scen, meta={"entities": entities})
    steady_users(b, USERS)
    for row in b.samples:                # counters: memory — the sampler reads DB spend only
        row["redis_counter"] = row["counter_ttl"] = None
    for row in b.requests:
        row["key"] = KEY_OF[row["end_user"]]
    return b


def _true(b: RunBuilder, key: int, t: float) -> float:
    return sum(cost() for c in b.ledger if KEY_OF[c["end_user"]] == key and c["t_end"] - T0 <= t)


def _probes(b: RunBuilder, leak: dict[int, tuple[float, float]] | None = None, until: float = 80.0,
            bump: dict[int, tuple[float, float, float]] | None = None) -> None:
    """probes.csv every 5 s: through replica 0 each key's counter = its true spend (+ a leak from a time on, + a
    `bump` from a time to a time), through replica 1 a smaller one (its own counter saw less); DB spend = the true
    spend 10 s before."""
    leak = leak or {}
    bump = bump or {}
    rows: list[dict[str, Any]] = []
    for n, t in enumerate(range(5, int(until) + 1, 5)):
        for key in (0, 1):
            true = _true(b, key, t)
            extra_from, extra = leak.get(key, (float("inf"), 0.0))
            b_from, b_to, b_extra = bump.get(key, (float("inf"), 0.0, 0.0))
            extra_now = (extra if t >= extra_from else 0.0) + (b_extra if b_from <= t < b_to else 0.0)
            for replica, counter in ((0, true + extra_now), (1, true / 2)):
                rows.append({"t": T0 + t + 0.01 * replica, "round": n, "kind": "key", "id": TOKENS[key],
                             "name": f"key-mem-{key}", "replica": replica, "status": 400, "counter": counter,
                             "printed_budget": 0.0, "includes_reservation": 0, "db_spend": _true(b, key, t - 10),
                             "max_budget": 0.5, "admitted": 0, "latency_s": 0.01, "error": ""})
    write_csv(b.root / rf.PROBES_FILE, rf.PROBES_COLUMNS, rows)


def test_probe_counters_take_the_largest_replica_and_skip_what_is_no_read() -> None:
    import pandas as pd

    probes = pd.DataFrame([
        {"t": 10.0, "round": 0, "kind": "key", "id": "a", "replica": 0, "counter": 1.0, "db_spend": 0.5,
         "admitted": 0, "includes_reservation": 0},
        {"t": 10.5, "round": 0, "kind": "key", "id": "a", "replica": 1, "counter": 3.0, "db_spend": 0.5,
         "admitted": 0, "includes_reservation": 0},
        {"t": 11.0, "round": 0, "kind": "key", "id": "b", "replica": 0, "counter": None, "db_spend": 0.1,
         "admitted": 0, "includes_reservation": None},                         # nothing read
        {"t": 11.5, "round": 0, "kind": "key", "id": "b", "replica": 1, "counter": None, "db_spend": 0.1,
         "admitted": 1, "includes_reservation": None},                         # admitted: no read
        {"t": 20.0, "round": 1, "kind": "key", "id": "b", "replica": 0, "counter": 9.0, "db_spend": 0.2,
         "admitted": 0, "includes_reservation": 1},                            # counter + its own reservation
    ])
    out = probe_counters(probes)
    assert out.to_dict("records") == [{"t": 10.5, "sample": 0, "kind": "key", "id": "a", "redis_counter": 3.0,
                                       "db_spend": 0.5}]


def test_probed_key_counters_within_their_band_are_clean(tmp_path: Path) -> None:
    b = _run(tmp_path)
    # two load requests met a key whose budget the probe had just set to 0 (1.88.1's read-time wording)
    b.request(20.0, "eu-4", status=400, error_text="Budget has been exceeded! Current cost: 0.01, Max budget: 0.0")
    b.requests[-1]["key"] = 1
    b.request(40.0, "eu-0", status=429, error_text="Budget has been exceeded! Key=key-mem-0 (sk-...ab) Current "
                                                   "cost: 0.02, Max budget: 0.0")
    b.requests[-1]["key"] = 0
    run = b.write()
    _probes(b)
    data = load_run(run)
    assert data.counter_source == "probe" and len(data.counters) == 2 * 16
    res = analyze(run, plots=False)
    assert res.verdict == "NOT REPRODUCED" and res.exit_code == 0, res.reasons
    key = res.evidence["counter_kinds"]["kinds"]["key"]
    assert key["drain"]["ran"] and key["drain"]["users_checked"] == 2 and key["drain"]["leaked_users"] == 0
    assert res.evidence["counter_kinds"]["counter_source"] == "probe"
    probe = res.evidence["counter_kinds"]["probe"]
    assert (probe["reads"], probe["entities"], probe["replicas"], probe["load_rejections"]) == (64, 2, 2, 2)
    assert res.summary.counter_source == "probe" and res.summary.budget_rejections == 0
    assert res.summary.phantoms == 0 and res.summary.kind_phantoms == 0
    notes = " ".join(res.evidence["checks"]["inflation"]["notes"])
    assert "counters in process memory" in notes and "probes.csv" in notes
    assert not res.evidence["checks"]["drain"]["blockers"]       # the end users: not judged, not blocked
    report = (run / rf.REPORT_FILE).read_text()
    assert "process memory (counters: memory), read by the in-process probe: 64 reads of 2 key(s)" in report
    assert "2 load request(s) met a probed budget of 0" in report


def test_a_probed_key_counter_above_its_band_is_a_leak(tmp_path: Path) -> None:
    b = _run(tmp_path, expect="reproduced")
    run = b.write()
    _probes(b, leak={0: (30.0, 0.05)})
    res = analyze(run, plots=False)
    assert res.verdict == "REPRODUCED" and res.exit_code == 0
    assert any("key-mem-0" in r and "leaked reservations" in r for r in res.reasons)
    key = res.evidence["counter_kinds"]["kinds"]["key"]
    assert key["drain"]["leaked_total"] == pytest.approx(0.05)


def test_a_probed_counter_above_what_its_requests_in_flight_could_hold_is_a_leak(tmp_path: Path) -> None:
    # #40050's doubled seed: for two rounds the counter reads its DB spend too high, then a reseed brings it back
    # — nothing is left at the drain, and the load never stopped, so the orphan check has no free reading
    b = _run(tmp_path, expect="reproduced")
    run = b.write()
    _probes(b, bump={0: (30.0, 40.0, 5.0)})
    res = analyze(run, plots=False)
    assert res.verdict == "REPRODUCED" and res.exit_code == 0, res.reasons
    assert any("key-mem-0" in r and "owned by no request" in r for r in res.reasons)
    unheld = res.evidence["counter_kinds"]["kinds"]["key"]["unheld"]
    assert unheld["entities"] == 1 and unheld["worst"]["end_user"] == "key-mem-0"
    assert unheld["worst"]["beyond"] == pytest.approx(5.0 - unheld["worst"]["in_flight"]
                                                       * unheld["worst"]["per_reservation"], abs=0.02)
    assert res.evidence["counter_kinds"]["kinds"]["key"]["drain"]["leaked_users"] == 0
    assert res.summary.kind_unheld_entities == 1


def test_a_probed_excess_the_requests_in_flight_could_hold_is_not_a_leak(tmp_path: Path) -> None:
    b = _run(tmp_path)
    b.ok(28.0, "eu-0", dur=14.0)          # a long answer of key 0 in flight at the readings of 30 s and 35 s
    b.requests[-1]["key"] = 0
    run = b.write()
    per_res = min(0.5, base_scenario_reservation(b))
    _probes(b, bump={0: (30.0, 40.0, 0.9 * per_res)})     # less than the one reservation that request may hold
    res = analyze(run, plots=False)
    unheld = res.evidence["counter_kinds"]["kinds"]["key"]["unheld"]
    assert unheld["entities"] == 0 and unheld["samples_judged"] > 0
    assert res.verdict == "NOT REPRODUCED", res.reasons


def base_scenario_reservation(b: RunBuilder) -> float:
    from harness.analyze.load import load_run as _load

    return float(_load(b.root).scenario.max_reservation(end_user_cap=False))


def test_a_memory_run_without_any_probe_read_gives_no_clean_verdict(tmp_path: Path) -> None:
    b = _run(tmp_path, probe=False)
    run = b.write()
    res = analyze(run, plots=False)
    assert res.verdict == "INCONCLUSIVE"
    assert any("counters in process memory" in r and "probe read no counter" in r for r in res.reasons)


def test_a_redis_run_with_a_probe_keeps_redis_as_its_evidence(tmp_path: Path) -> None:
    b = _run(tmp_path)
    b.scenario["counters"] = "redis"
    run = b.write()
    _probes(b)
    data = load_run(run)
    assert data.counter_source == "redis" and len(data.probes) == 64 and not len(data.counters)
