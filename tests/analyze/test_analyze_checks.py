"""Each computation of the analyzer on small synthetic run folders: phantom vs real rejections, leaks vs DB lag,
the true-spend band, inconclusive runs, truncated files, exit codes, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from harness.analyze import analyze, analyze_cli
from tests.analyze.rundirs import (
    T0,
    RunBuilder,
    base_scenario,
    budget_text,
    cost,
    read_time_text,
    steady_users,
)

USERS = [f"eu-{i}" for i in range(5)]
MAX_RES = (400 // 4 + 8) * 1e-6 + 256 * 1e-5      # the scenario's max_reservation() with choices [256]


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), width=120)  # noqa: SIM115


def clean_run(tmp_path: Path, expect: str = "clean", **scen: object) -> RunBuilder:
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect=expect, **scen))
    steady_users(b, USERS)
    return b


# -- phantom rejections ------------------------------------------------------------------------------
def test_phantom_rejection_reproduced(tmp_path: Path) -> None:
    b = clean_run(tmp_path, expect="reproduced")
    b.request(30.0, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))
    res = analyze(b.write())
    ph = res.evidence["phantom"]
    assert res.verdict == "REPRODUCED" and res.exit_code == 0
    assert ph["count"] == 1 and ph["affected_end_users"] == 1
    assert ph["share_of_rejections"] == 1.0
    assert ph["first"]["t_rel"] == pytest.approx(30.0)
    true_at = 6 * cost()    # eu-0's calls ending by t = 30.5: t = 1, 6, ..., 26
    assert ph["first"]["true_high"] == pytest.approx(true_at)
    assert ph["worst"]["excess"] == pytest.approx(1.25 - true_at)
    assert ph["worst"]["printed_counter"] == 1.25


def test_real_rejection_is_not_phantom(tmp_path: Path) -> None:
    b = clean_run(tmp_path, budget={"default_max_budget": 0.01})
    # eu-0 spent 10 calls × 0.0021 = 0.021 > 0.01 by the end; reject it after that, in both wordings
    b.request(55.0, "eu-0", status=429, error_text=budget_text("eu-0", 0.0237, 0.01))
    b.request(56.0, "eu-0", status=400, error_text=read_time_text("eu-0", 0.021, 0.01))
    res = analyze(b.write(), plots=False)
    ph = res.evidence["phantom"]
    assert ph["budget_rejections"] == 2 and ph["count"] == 0
    assert ph["wordings"] == {"reservation": 1, "read_time": 1}
    assert ph["budget_rejection_status_codes"] == {"429": 1, "400": 1}
    assert res.verdict == "NOT REPRODUCED" and res.exit_code == 0


def test_rejection_within_one_reservation_of_budget_is_not_phantom(tmp_path: Path) -> None:
    budget = 5 * cost() + MAX_RES / 2     # 5 calls spent: true spend is within one reservation of the budget
    b = clean_run(tmp_path, budget={"default_max_budget": budget})
    b.request(22.0, "eu-0", status=400, error_text=budget_text("eu-0", budget + MAX_RES, budget))
    res = analyze(b.write(), plots=False)
    assert res.evidence["phantom"]["count"] == 0


def test_in_flight_reservations_widen_the_margin(tmp_path: Path) -> None:
    budget = 0.0105 + 1.5 * MAX_RES     # 5 calls = 0.0105 true spend by t = 21.5
    b = clean_run(tmp_path, budget={"default_max_budget": budget})
    # eu-1's last call ended at 21.6 s (+ the release grace): nothing of its own is in flight at 24 s
    b.request(24.0, "eu-1", status=400, error_text=budget_text("eu-1", budget, budget))
    assert analyze(b.write(), plots=False).evidence["phantom"]["count"] == 1      # one reservation margin: phantom
    # the same rejection while eu-1 has another request in flight: two reservations legitimately held
    b.request(23.8, "eu-1", dur=3.0, stream=1)
    res = analyze(b.write(), plots=False)
    assert res.evidence["phantom"]["count"] == 0
    assert res.evidence["phantom"]["budget_rejections"] == 1


def test_per_user_budget_override(tmp_path: Path) -> None:
    b = clean_run(tmp_path, budget={"default_max_budget": 100.0, "per_user": {"eu-2": 0.005}})
    b.request(40.0, "eu-2", status=400, error_text=budget_text("eu-2", 0.02, 0.005))
    res = analyze(b.write(), plots=False)
    assert res.evidence["phantom"]["count"] == 0


# -- leaks, DB lag, the band -------------------------------------------------------------------------
def test_leaked_reservation_after_drain(tmp_path: Path) -> None:
    b = clean_run(tmp_path, expect="reproduced")
    for s in b.samples:
        t = s["t"] - T0
        if s["end_user"] == "eu-1" and t >= 20:
            s["redis_counter"] += 0.3
        if s["end_user"] == "eu-3" and t >= 35:
            s["redis_counter"] += 0.1
    res = analyze(b.write())
    dr = res.evidence["drain"]
    assert res.verdict == "REPRODUCED" and res.exit_code == 0
    assert dr["leaked_users"] == 2
    assert dr["leaked_total"] == pytest.approx(0.4)
    assert dr["worst"]["end_user"] == "eu-1" and dr["worst"]["leaked"] == pytest.approx(0.3)
    assert dr["first"]["end_user"] == "eu-1" and dr["first"]["t_leak_from"] == pytest.approx(20.0)
    assert dr["last"]["end_user"] == "eu-3" and dr["last"]["t_leak_from"] == pytest.approx(35.0)
    assert dr["users_checked"] == 5
    assert (b.root / "drain.png").stat().st_size > 0


def test_db_lag_is_not_a_leak(tmp_path: Path) -> None:
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect="clean"), load_s=48.0, drain_s=12.0)
    steady_users(b, USERS, samples_until=60.0)
    # DB spend trails the truth by 15 s (inside the batch-write allowance): at the last sample (12 s after the
    # load) it still misses the final calls, while the counter equals true spend: nothing leaked
    spend = {u: sorted((r["t_end"] - T0, 0.0) for r in b.ledger if r["end_user"] == u) for u in USERS}
    for s in b.samples:
        t = s["t"] - T0
        s["db_spend"] = sum(cost() for te, _ in spend[s["end_user"]] if te <= t - 15)
    res = analyze(b.write(), plots=False)
    infl, dr = res.evidence["inflation"], res.evidence["drain"]
    assert res.verdict == "NOT REPRODUCED"
    assert dr["leaked_users"] == 0 and dr["users_checked"] == 5
    assert dr["db_below_true_low_users"] == 5
    assert dr["db_caught_up"] is False
    assert infl["db_behind_lagged_truth_rows"] == 0
    assert infl["total_max_counter_minus_db"]["value"] > 0


def test_db_behind_beyond_the_lag_is_reported_not_leaked(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    for s in b.samples:
        if s["end_user"] == "eu-4":
            s["db_spend"] = 0.0
    res = analyze(b.write(), plots=False)
    assert res.verdict == "NOT REPRODUCED"
    assert res.evidence["inflation"]["db_behind_lagged_truth_rows"] > 0


def test_true_spend_band_partial_streams(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    # eu-0 walked away from a stream after 50 of 200 tokens: billed 0 (1.84) or the streamed part (1.108)
    rid = b.request(48.0, "eu-0", stream=1, disconnected=1, dur=0.3)
    b.call(48.01, "eu-0", promised=200, delivered=50, outcome="client_gone", request_id=rid, stream=1)
    partial = cost(100, 50)
    for s in b.samples:
        if s["end_user"] == "eu-0" and s["t"] - T0 >= 50:
            s["redis_counter"] += partial       # the streamed part was billed: inside the band
    res = analyze(b.write())
    assert res.evidence["drain"]["leaked_users"] == 0
    assert res.evidence["ledger"]["partial_calls"] == 1
    assert res.evidence["requests"]["by_class"]["disconnect"] == 1
    # a full reservation left behind is above the band
    for s in b.samples:
        if s["end_user"] == "eu-0" and s["t"] - T0 >= 50:
            s["redis_counter"] += MAX_RES
    res = analyze(b.write())
    assert res.evidence["drain"]["leaked_users"] == 1
    assert res.evidence["drain"]["leaked_total"] == pytest.approx(MAX_RES, rel=1e-6)


def test_ledger_end_user_filled_from_request_id(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    for row in b.ledger:
        row["end_user"] = ""
    res = analyze(b.write(), plots=False)
    assert res.verdict == "NOT REPRODUCED"
    assert res.evidence["ledger"]["end_users"] == 5


def test_float_noise_is_not_a_leak(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    for s in b.samples:
        if s["redis_counter"] is not None:
            s["redis_counter"] *= 1 + 1e-12
    assert analyze(b.write(), plots=False).evidence["drain"]["leaked_users"] == 0


# -- inconclusive --------------------------------------------------------------------------------------
def test_empty_run_is_inconclusive(tmp_path: Path) -> None:
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect="clean"))
    res = analyze(b.write())
    assert res.verdict == "INCONCLUSIVE" and res.exit_code == 1
    assert any("too few requests" in r for r in res.reasons)
    assert all((b.root / p).exists() for p in ("verdict.json", "report.md", "inflation.png", "rejections.png",
                                               "drain.png"))


def test_stack_errors_dominate(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    for i in range(120):
        b.request(10 + i * 0.2, USERS[i % 5], status=0, error_type="connection", error_text="refused")
    res = analyze(b.write(), plots=False)
    assert res.verdict == "INCONCLUSIVE"
    assert any("stack errors dominate" in r for r in res.reasons)


def test_no_counters_and_no_budget_rejections(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    for s in b.samples:
        s["redis_counter"] = None
    res = analyze(b.write(), plots=False)
    assert res.verdict == "INCONCLUSIVE"
    assert any("no Redis counter" in r and "no end user could be" in r for r in res.reasons)


def test_no_samples_after_load_end(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    b.samples = [s for s in b.samples if s["t"] - T0 < 60]
    res = analyze(b.write())
    assert res.verdict == "INCONCLUSIVE"
    assert any("drain check could not run" in r for r in res.reasons)


def test_reproduced_wins_over_blockers(tmp_path: Path) -> None:
    b = clean_run(tmp_path, expect="reproduced")
    b.samples = [s for s in b.samples if s["t"] - T0 < 60]
    b.request(30.0, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))
    res = analyze(b.write(), plots=False)
    assert res.verdict == "REPRODUCED"
    assert res.evidence["notes"]


# -- truncated files -----------------------------------------------------------------------------------
def _cut_tail(path: Path, n: int = 7) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - n])           # cut the last row mid-way


def test_truncated_requests_and_samples_are_analysable(tmp_path: Path) -> None:
    b = clean_run(tmp_path, expect="reproduced")
    b.request(30.0, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))
    b.request(59.0, "eu-2", status=200)              # the row that gets cut
    root = b.write()
    _cut_tail(root / "requests.csv")
    _cut_tail(root / "samples.csv")
    res = analyze(root)
    assert res.verdict == "REPRODUCED"
    assert res.evidence["requests"]["total"] == 51
    assert res.evidence["phantom"]["count"] == 1
    assert res.evidence["drain"]["ran"] and res.evidence["drain"]["leaked_users"] == 0
    warnings = res.evidence["warnings"]
    assert any("requests.csv" in w and "incomplete" in w for w in warnings)
    assert any("samples.csv" in w for w in warnings)


def test_truncated_ledger_gives_no_false_leak(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    root = b.write()
    _cut_tail(root / "ledger.csv")     # the last call is lost: its user's counter now looks too high
    res = analyze(root, plots=False)
    assert res.evidence["drain"]["leaked_users"] == 0
    assert res.verdict == "INCONCLUSIVE"
    assert any("ledger.csv was cut" in r for r in res.reasons)


def test_truncated_ledger_still_judges_earlier_rejections(tmp_path: Path) -> None:
    b = clean_run(tmp_path, expect="reproduced")
    b.request(30.0, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))
    b.request(47.5, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))   # after the cut: not judged
    root = b.write()
    _cut_tail(root / "ledger.csv")
    res = analyze(root, plots=False)
    assert res.verdict == "REPRODUCED"
    assert res.evidence["phantom"]["count"] == 1


def test_cut_inside_quoted_text_keeps_earlier_rows(tmp_path: Path) -> None:
    b = clean_run(tmp_path, expect="reproduced")
    b.request(30.0, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))
    b.request(31.0, "eu-1", status=400, error_text='line one\nline two "quoted" ' + "x" * 50)
    root = b.write()
    p = root / "requests.csv"
    raw = p.read_bytes()
    p.write_bytes(raw[: raw.rindex(b"line two") + 4])     # ends after a newline inside the quoted field
    res = analyze(root, plots=False)
    assert res.evidence["phantom"]["count"] == 1
    assert res.evidence["requests"]["total"] == 51
    assert any("requests.csv" in w for w in res.evidence["warnings"])


# -- exit codes, expectation per version -------------------------------------------------------------
def test_exit_codes(tmp_path: Path) -> None:
    b = clean_run(tmp_path, expect="clean", expect_by_version={"1.84.0": "reproduced"})
    root = b.write()
    assert analyze_cli(root, quiet()) == 1          # NOT REPRODUCED, expected reproduced on 1.84.0
    b.meta["litellm_version"] = "1.108.7"
    b.write()
    assert analyze_cli(root, quiet()) == 0          # clean expected on other versions
    (root / "scenario.yaml").unlink()
    assert analyze_cli(root, quiet()) == 2


def test_unusable_folders_exit_2(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    root = b.write(skip=("requests.csv",))
    out = tmp_path / "out.txt"
    with open(out, "w") as fh:
        assert analyze_cli(root, Console(file=fh, width=200)) == 2
    text = out.read_text()
    assert "requests.csv" in text and len(text.strip().splitlines()) == 1
    assert analyze_cli(tmp_path / "nope", quiet()) == 2
    (root / "requests.csv").write_text("t_start\n")
    (root / "scenario.yaml").write_text("name: x\nexpect: maybe\n")
    assert analyze_cli(root, quiet()) == 2


def test_cli_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    b = clean_run(tmp_path)
    result = CliRunner(mix_stderr=False).invoke(app, ["analyze", str(b.write())])
    assert result.exit_code == 0
    assert "NOT REPRODUCED" in result.stderr and "report.md" in result.stderr


# -- outputs -------------------------------------------------------------------------------------------
def test_verdict_and_report_have_no_secrets(tmp_path: Path) -> None:
    b = clean_run(tmp_path, expect="reproduced")
    b.meta["command"] = "LITELLM_MASTER_KEY=sk-abcdef123456 harness run scenarios/x.yaml"
    b.request(30.0, "eu-0", status=401, error_text="Authentication Error, invalid key sk-zzzzzzzz9999")
    root = b.write()
    analyze(root)
    report = (root / "report.md").read_text()
    verdict = (root / "verdict.json").read_text()
    assert "sk-abc" not in report and "sk-zzz" not in verdict and "sk-abc" not in verdict
    assert "harness run scenarios/x.yaml" in report
    for pic in ("inflation.png", "rejections.png", "drain.png"):
        assert f"]({pic})" in report
    assert "gh issue comment" in report and "<details>" in report
    data = json.loads(verdict)
    for key in ("verdict", "reasons", "expected", "matches_expectation", "exit_code", "phantom", "inflation",
                "drain", "requests", "ledger", "faults", "warnings"):
        assert key in data


def test_fault_windows_in_evidence(tmp_path: Path) -> None:
    b = clean_run(tmp_path)
    b.fault(10, "start", 0, "mock_error", "mock")
    b.fault(20, "end", 0, "mock_error", "mock")
    b.fault(30, "start", 1, "kill_replica", "1")      # never ended: the run was cut
    res = analyze(b.write())
    faults = res.evidence["faults"]
    assert faults[0] == {"kind": "mock_error", "target": "mock", "start": 10.0, "end": 20.0, "note": ""}
    assert faults[1]["end"] is None


def test_without_meta_times_fall_back_to_the_request_log(tmp_path: Path) -> None:
    b = clean_run(tmp_path, expect="reproduced")
    b.request(30.0, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))
    root = b.write(skip=("meta.json",))
    res = analyze(root, plots=False)
    assert res.verdict == "REPRODUCED"
    t = res.evidence["time"]
    assert t["t0_source"] == "first request" and t["t_load_end_source"] == "last request"
    assert res.evidence["phantom"]["first"]["t_rel"] == pytest.approx(29.0)    # first request at 1.0 s
    assert res.evidence["drain"]["ran"]
    assert any("meta.json missing" in w for w in res.evidence["warnings"])


def test_printed_budget_used_when_the_scenario_sets_none(tmp_path: Path) -> None:
    b = clean_run(tmp_path, expect="reproduced", budget={"default_max_budget": None})
    b.request(30.0, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))
    res = analyze(b.write(), plots=False)
    assert res.evidence["phantom"]["count"] == 1
    assert res.evidence["phantom"]["first"]["budget"] == 1.0


def test_a_walk_away_holds_its_reservation_until_the_proxy_ends_the_upstream_call(tmp_path: Path) -> None:
    budget = 0.0105 + 1.5 * MAX_RES
    b = clean_run(tmp_path, budget={"default_max_budget": budget})
    # eu-1 walks away at 20.2 s, but the proxy notices only when its upstream call ends at 23.9 s
    rid = b.request(20.0, "eu-1", dur=0.2, stream=1, disconnected=1)
    b.call(20.05, "eu-1", promised=200, delivered=10, outcome="client_gone", dur=3.85, request_id=rid, stream=1)
    b.request(24.0, "eu-1", status=400, error_text=budget_text("eu-1", budget, budget))
    res = analyze(b.write(), plots=False)
    assert res.evidence["phantom"]["count"] == 0
    # without the upstream call the same rejection is phantom: the client's own end is long past
    b.ledger = [row for row in b.ledger if row["request_id"] != rid]
    assert analyze(b.write(), plots=False).evidence["phantom"]["count"] == 1


def test_counter_equal_to_db_spend_above_the_ledger_is_billing_not_a_leak(tmp_path: Path) -> None:
    # LiteLLM billed eu-2 a little more than the mock's ledger (its own token count of a cut stream): counter
    # and DB agree, so no reservation is left on the counter
    b = clean_run(tmp_path)
    for s in b.samples:
        if s["end_user"] == "eu-2" and s["t"] - T0 >= 50:
            s["redis_counter"] += 0.0016
            s["db_spend"] = s["redis_counter"]
    res = analyze(b.write(), plots=False)
    assert res.evidence["drain"]["leaked_users"] == 0
    assert res.verdict == "NOT REPRODUCED"


def test_a_version_without_counters_is_clean_not_inconclusive(tmp_path: Path) -> None:
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect="clean"), meta={"litellm_version": "1.83.14"})
    steady_users(b, USERS)
    for s in b.samples:
        s["redis_counter"] = None
        s["counter_ttl"] = None
    res = analyze(b.write(), plots=False)
    assert res.verdict == "NOT REPRODUCED" and res.exit_code == 0
    assert any("keeps no spend:end_user counter" in n for n in res.evidence["notes"])
    # the same folder claiming a version with counters: nothing observed is not a clean result
    b.meta["litellm_version"] = "1.84.0"
    assert analyze(b.write(), plots=False).verdict == "INCONCLUSIVE"
