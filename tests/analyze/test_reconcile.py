"""Per-request billing reconciliation (harness/analyze/reconcile.py, checks/reconcile.py) on synthetic run folders:
each request id joined across requests.csv, ledger.csv and LiteLLM's spend logs (spend-logs.csv)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.analyze import analyze
from harness.run import runfolder as rf
from tests.analyze.rundirs import P_IN, P_OUT, T0, RunBuilder, base_scenario, cost, steady_users, write_csv

USERS = [f"eu-{i}" for i in range(5)]
LOAD_S, DRAIN_S = 60.0, 25.0
T_DUMP = T0 + LOAD_S + DRAIN_S          # the dump runs once the drain is over
SUMMARY = ("reconciled_requests", "overbilled_requests", "overbilled_usd", "underbilled_requests",
           "underbilled_usd", "unbilled_requests", "unbilled_usd")


def run(tmp_path: Path, name: str = "run", **scen: Any) -> RunBuilder:
    b = RunBuilder(tmp_path / name, scenario=base_scenario(expect="clean", **scen), load_s=LOAD_S, drain_s=DRAIN_S)
    steady_users(b, USERS)              # 50 ok requests, each billed cost() = $0.0021; last ends ~46.9 s
    return b


def billed_as_delivered(b: RunBuilder) -> dict[str, dict[str, Any]]:
    """One spend-log row per ok request, billing exactly what the upstream delivered (LiteLLM's response id)."""
    rows: dict[str, dict[str, Any]] = {}
    for r in b.requests:
        if r["status"] == 200:
            rows[r["request_id"]] = {"request_id": f"chatcmpl-{r['request_id']}", "litellm_call_id": "",
                                     "call_type": "acompletion", "status": "success", "end_user": r["end_user"],
                                     "spend": cost(), "prompt_tokens": 100, "completion_tokens": 200,
                                     "start_time": r["t_start"], "end_time": r["t_end"]}
    return rows


def write_spend_logs(b: RunBuilder, rows: list[dict[str, Any]], t: float = T_DUMP) -> Path:
    b.meta["spend_logs"] = {"file": rf.SPEND_LOGS_FILE, "rows": len(rows), "t": t, "columns_missing": [],
                            "reason": None}
    root = b.write()
    write_csv(root / rf.SPEND_LOGS_FILE, rf.SPEND_LOGS_COLUMNS, rows)
    return root


def rid_of(b: RunBuilder, user: str, nth: int) -> str:
    return [r["request_id"] for r in b.requests if r["end_user"] == user][nth]


def failure_row(call_id: str, user: str, spend: float = 0.0) -> dict[str, Any]:
    """A row LiteLLM writes for a request that got no response (e.g. a budget rejection): keyed by its call id."""
    return {"request_id": call_id, "litellm_call_id": call_id, "call_type": "acompletion", "status": "failure",
            "end_user": user, "spend": spend, "prompt_tokens": 0, "completion_tokens": 0,
            "start_time": T0 + 30, "end_time": T0 + 30.1}


def test_over_under_and_unbilled_requests_are_measured_and_never_change_the_verdict(tmp_path: Path) -> None:
    plain = run(tmp_path, "plain")
    before = analyze(plain.write(), plots=False)

    b = run(tmp_path)
    rows = billed_as_delivered(b)
    over_id, under_id, lost_id = rid_of(b, "eu-1", 3), rid_of(b, "eu-2", 5), rid_of(b, "eu-3", 7)
    rows[over_id]["spend"] = cost() + 0.0015                 # billed 150 output tokens too many
    rows[under_id]["spend"] = cost() - 0.0004
    del rows[lost_id]                                          # a completed call without a row: unbilled
    res = analyze(write_spend_logs(b, [*rows.values(), failure_row("0b7c-uuid", "eu-4"),
                                       failure_row("9f1d-uuid", "eu-0", spend=0.003)]), plots=False)
    rec = res.evidence["reconcile"]
    assert rec["measured"] is True
    assert rec["request_ids"] == 50 and rec["requests_judged"] == 49 and rec["agreed"] == 47
    assert rec["over_billed"]["requests"] == 1 and rec["over_billed"]["usd"] == pytest.approx(0.0015)
    assert rec["over_billed"]["largest"]["request_id"] == over_id
    assert rec["over_billed"]["largest"]["end_user"] == "eu-1"
    assert rec["under_billed"]["requests"] == 1 and rec["under_billed"]["usd"] == pytest.approx(0.0004)
    assert rec["under_billed"]["largest"]["request_id"] == under_id and rec["under_billed"]["partial"] == 0
    assert rec["unbilled"]["requests"] == 1 and rec["unbilled"]["completed"] == 1
    assert rec["unbilled"]["usd"] == pytest.approx(cost()) and rec["unbilled"]["examples"][0]["request_id"] == lost_id
    assert (rec["rows_unmatched"], rec["rows_unmatched_failures"], rec["rows_unmatched_billed"]) == (2, 2, 1)
    assert rec["rows_unmatched_usd"] == pytest.approx(0.003)
    assert rec["net_usd"] == pytest.approx(0.0015 - 0.0004)
    s = res.summary
    assert (s.reconciled_requests, s.overbilled_requests, s.underbilled_requests, s.unbilled_requests) == (49, 1, 1, 1)
    assert s.overbilled_usd == pytest.approx(0.0015) and s.unbilled_usd == pytest.approx(cost())
    notes = res.evidence["notes"]
    assert any("billing, not a leak" in n and "1 request(s) more" in n and over_id in n for n in notes)
    assert any("1 completed upstream call(s)" in n and "unbilled" in n for n in notes)
    # its own bug class: the verdict, its reasons and every other check's figures are what they were without it
    assert (res.verdict, res.reasons) == (before.verdict, before.reasons)
    assert res.evidence["drain"] == before.evidence["drain"]
    own = res.evidence["checks"]["reconcile"]
    assert own["findings"] == [] and own["blockers"] == [] and own["vetoes"] == []
    report = (b.root / rf.REPORT_FILE).read_text()
    assert "| billing per request | 49 request(s) reconciled" in report and "| over-billed requests | 1," in report


def test_partly_delivered_calls_are_named_as_such(tmp_path: Path) -> None:
    """A walk-away: LiteLLM bills what it streamed with its own token count — one token over the ledger is token
    rounding; fewer tokens is inside the true-spend band (its low bound is $0)."""
    b = run(tmp_path)
    rows = billed_as_delivered(b)
    for k, (user, billed_tokens) in enumerate((("eu-0", 51), ("eu-1", 30))):
        rid = b.request(50.0 + k, user, stream=1, disconnected=1, request_id=f"cut{k}")
        b.call(50.01 + k, user, promised=200, delivered=50, outcome="client_gone", request_id=rid, stream=1)
        rows[rid] = {**rows[rid_of(b, user, 0)], "request_id": f"chatcmpl-{rid}", "completion_tokens": billed_tokens,
                     "spend": 100 * P_IN + billed_tokens * P_OUT}
    rec = analyze(write_spend_logs(b, list(rows.values())), plots=False).evidence["reconcile"]
    assert rec["over_billed"]["requests"] == 1 and rec["over_billed"]["within_rounding"] == 1
    assert rec["over_billed"]["usd"] == pytest.approx(P_OUT)
    assert rec["over_billed"]["largest"]["billed_tokens"] == [100, 51]
    assert rec["over_billed"]["largest"]["ledger_tokens"] == [100, 50]
    assert rec["under_billed"]["requests"] == 1 and rec["under_billed"]["partial"] == 1
    assert rec["under_billed"]["usd"] == pytest.approx(20 * P_OUT)
    assert rec["under_billed"]["largest"]["outcome"] == "client_gone"


def test_the_join_reads_the_response_id_the_bare_id_and_the_call_id(tmp_path: Path) -> None:
    b = run(tmp_path)
    rows = billed_as_delivered(b)
    bare, by_call = rid_of(b, "eu-0", 0), rid_of(b, "eu-1", 0)
    rows[bare]["request_id"] = bare                                      # a version that logs the id itself
    rows[by_call].update(request_id="litellm-own-id", litellm_call_id=by_call)   # x-litellm-call-id
    rec = analyze(write_spend_logs(b, list(rows.values())), plots=False).evidence["reconcile"]
    assert rec["rows_matched"] == 50 and rec["rows_unmatched"] == 0 and rec["agreed"] == 50


def test_a_row_without_upstream_delivery_is_billed_for_nothing(tmp_path: Path) -> None:
    b = run(tmp_path)
    rows = billed_as_delivered(b)
    rid = b.request(40.0, "eu-2", request_id="never-upstream")        # answered, but the mock never saw it
    rows[rid] = {**rows[rid_of(b, "eu-2", 0)], "request_id": f"chatcmpl-{rid}"}
    rec = analyze(write_spend_logs(b, list(rows.values())), plots=False).evidence["reconcile"]
    assert rec["billed_without_upstream"] == 1
    assert rec["over_billed"]["requests"] == 1 and rec["over_billed"]["usd"] == pytest.approx(cost())
    assert rec["over_billed"]["largest"]["delivered"] == 0


def test_requests_too_late_for_the_dump_are_not_called_unbilled(tmp_path: Path) -> None:
    b = run(tmp_path)
    rows = billed_as_delivered(b)
    late = b.ok(LOAD_S + DRAIN_S - 3.0, "eu-0")        # ended 2.5 s before the dump: LiteLLM may not have flushed
    rec = analyze(write_spend_logs(b, list(rows.values())), plots=False).evidence["reconcile"]
    assert rec["not_caught_up"] == 1 and rec["unbilled"]["requests"] == 0
    assert late not in json.dumps(rec)


def test_several_upstream_calls_under_one_id_are_not_judged(tmp_path: Path) -> None:
    """A retry under the same id: LiteLLM keeps one row per id (skip_duplicates), so the row cannot be compared."""
    b = run(tmp_path)
    rows = billed_as_delivered(b)
    rid = rid_of(b, "eu-3", 2)
    b.call(44.0, "eu-3", request_id=rid)
    rec = analyze(write_spend_logs(b, list(rows.values())), plots=False).evidence["reconcile"]
    assert rec["several_upstream_calls"] == 1 and rec["requests_judged"] == 49
    assert rec["under_billed"]["requests"] == 0 and rec["over_billed"]["requests"] == 0


def test_a_row_billing_another_end_user_is_counted(tmp_path: Path) -> None:
    b = run(tmp_path)
    rows = billed_as_delivered(b)
    rows[rid_of(b, "eu-4", 1)]["end_user"] = "eu-0"
    rec = analyze(write_spend_logs(b, list(rows.values())), plots=False).evidence["reconcile"]
    assert rec["end_user_mismatch"] == 1 and rec["agreed"] == 50


# -- not measured: said as such, never "no disagreement" -----------------------------------------------
def _not_measured(root: Path) -> tuple[dict[str, Any], Any, Any]:
    res = analyze(root, plots=False)
    rec = res.evidence["reconcile"]
    assert rec["measured"] is False
    assert all(getattr(res.summary, f) is None for f in SUMMARY)
    assert not any("billing, not a leak" in n for n in res.evidence["notes"])
    return rec, res, (root / rf.REPORT_FILE).read_text()


def test_an_old_run_folder_without_spend_logs_analyses_as_before(tmp_path: Path) -> None:
    b = run(tmp_path)
    rec, res, report = _not_measured(b.write())
    assert "before the spend-log dump" in rec["why_not"]
    assert "| billing per request | not measured: no spend-logs.csv" in report
    assert res.verdict == "NOT REPRODUCED"
    assert [n for n in res.evidence["notes"] if "spend" in n or "billing per request" in n] == []


def test_a_version_without_the_spend_log_table(tmp_path: Path) -> None:
    b = run(tmp_path)
    b.meta["spend_logs"] = {"file": None, "rows": 0, "t": T_DUMP, "columns_missing": [],
                            "reason": 'the database has no "LiteLLM_SpendLogs" table: this LiteLLM version (or its '
                                      "schema) writes no per-request spend logs"}
    rec, _, report = _not_measured(b.write())
    assert rec["why_not"].startswith('no spend logs: the database has no "LiteLLM_SpendLogs" table')
    assert "not measured: no spend logs" in report


def test_an_empty_spend_log_table_is_not_measured(tmp_path: Path) -> None:
    b = run(tmp_path)
    rec, _, _ = _not_measured(write_spend_logs(b, []))
    assert "was empty after the drain" in rec["why_not"]


def test_spend_logs_switched_off_by_the_scenario(tmp_path: Path) -> None:
    b = run(tmp_path, litellm_settings={"extra": {"general_settings": {"disable_spend_logs": True}}})
    rows = billed_as_delivered(b)
    rec, _, _ = _not_measured(write_spend_logs(b, list(rows.values())))
    assert "disable_spend_logs" in rec["why_not"]


def test_rows_naming_no_request_of_the_run_are_not_a_measurement(tmp_path: Path) -> None:
    b = run(tmp_path)
    rec, _, _ = _not_measured(write_spend_logs(b, [failure_row(f"id-{i}", "eu-0", 0.001)
                                                             for i in range(3)]))
    assert "none of the 3 spend-log row(s) names a request id of this run" in rec["why_not"]
    assert rec["rows_unmatched"] == 3 and rec["rows_unmatched_usd"] == pytest.approx(0.003)


def test_a_reconciliation_that_raises_is_a_note_not_a_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.analyze.checks.reconcile as check

    b = run(tmp_path)
    root = write_spend_logs(b, list(billed_as_delivered(b).values()))
    before = analyze(root, plots=False)

    def boom(ctx: object) -> None:
        raise ValueError("a broken join")

    monkeypatch.setattr(check, "reconcile", boom)
    res = analyze(root, plots=False)
    assert (res.verdict, res.reasons) == (before.verdict, before.reasons)
    assert res.evidence["reconcile"] == {"measured": False,
                                         "why_not": "the reconciliation failed (ValueError: a broken join)"}
    assert "billing per request not measured: the reconciliation failed (ValueError: a broken join)" in \
        res.evidence["notes"]
    assert res.summary.reconciled_requests is None and before.summary.reconciled_requests == 50


def test_anthropic_response_ids_join_too(tmp_path: Path) -> None:
    """A response id `msg_<request id>` (the mock's Messages route) names its request as `chatcmpl-<request id>`
    does, when LiteLLM logs the upstream's id."""
    b = run(tmp_path)
    rows = billed_as_delivered(b)
    for row in list(rows.values())[::2]:
        row["request_id"] = "msg_" + row["request_id"].removeprefix("chatcmpl-")
    rec = analyze(write_spend_logs(b, list(rows.values())), plots=False).evidence["reconcile"]
    assert rec["measured"] is True and rec["agreed"] == 50 and rec["unbilled"]["requests"] == 0
