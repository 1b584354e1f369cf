"""Per-request billing reconciliation (harness/analyze/reconcile.py): LiteLLM's spend-log row of each request
against the upstream's delivery in the ledger. Billing disagreement — over-, under- or unbilled requests — is
another bug class than a leaked reservation: this check reports it as evidence, summary figures and notes, and
never decides the verdict (no findings, no blockers; a reconciliation that raises is a note). Not measured (no
spend logs, an older run folder) is said as such — in the evidence and the report, never as "no disagreement" —
and adds no note, so older run folders analyse exactly as before."""

from __future__ import annotations

from typing import Any

from harness.analyze.checker import Check, CheckResult, Results
from harness.analyze.context import Context
from harness.analyze.reconcile import reconcile
from harness.util.fmt import money

SUMMARY_FIELDS = ("reconciled_requests", "overbilled_requests", "overbilled_usd", "underbilled_requests",
                  "underbilled_usd", "unbilled_requests", "unbilled_usd")


class Reconcile(Check):
    name = "reconcile"
    section = "reconcile"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        try:
            rec = reconcile(ctx)
        except Exception as exc:  # noqa: BLE001 — a check that never decides must not decide by crashing either
            what = " ".join(str(exc).split())[:300]
            why = f"the reconciliation failed ({type(exc).__name__}: {what})"
            return CheckResult(notes=[f"billing per request not measured: {why}"],
                               evidence={"measured": False, "why_not": why}, summary=dict.fromkeys(SUMMARY_FIELDS))
        ev = rec.evidence()
        if not rec.measured:
            return CheckResult(evidence=ev, summary=dict.fromkeys(SUMMARY_FIELDS), data=rec)
        over, under, unbilled = ev["over_billed"], ev["under_billed"], ev["unbilled"]
        notes: list[str] = []
        if over["requests"]:
            notes.append(f"billing, not a leak: LiteLLM billed {over['requests']} request(s) more than the upstream "
                         f"delivered, Σ {money(over['usd'])} (largest {_largest(over)}"
                         + (f"; {over['within_rounding']} of them partly delivered calls within token rounding"
                            if over["within_rounding"] else "") + ")")
        if under["requests"]:
            notes.append(f"billing, not a leak: LiteLLM billed {under['requests']} request(s) less than the upstream "
                         f"delivered, Σ {money(under['usd'])} (largest {_largest(under)}"
                         + (f"; {under['partial']} of them partly delivered calls, inside the true-spend band"
                            if under["partial"] else "") + ")")
        if unbilled["completed"]:
            notes.append(f"billing, not a leak: {unbilled['completed']} completed upstream call(s) worth "
                         f"{money(unbilled['completed_usd'])} have no spend-log row after the drain (unbilled)")
        if ev["rows_unmatched_billed"]:
            notes.append(f"billing: {ev['rows_unmatched_billed']} spend-log row(s) billing "
                         f"{money(ev['rows_unmatched_usd'])} name no request of this run")
        summary = {"reconciled_requests": ev["requests_judged"], "overbilled_requests": over["requests"],
                   "overbilled_usd": over["usd"], "underbilled_requests": under["requests"],
                   "underbilled_usd": under["usd"], "unbilled_requests": unbilled["requests"],
                   "unbilled_usd": unbilled["usd"]}
        return CheckResult(notes=notes, evidence=ev, summary=summary, data=rec)

    def report_rows(self, ev: dict[str, Any]) -> list[tuple[str, str]]:
        if not ev.get("measured"):
            return [("billing per request", f"not measured: {ev.get('why_not')}")]
        over, under, unbilled = ev["over_billed"], ev["under_billed"], ev["unbilled"]
        rows = [("billing per request",
                 f"{ev['requests_judged']:,} request(s) reconciled: LiteLLM's spend-log rows "
                 f"({ev['spend_log_rows']:,}; "
                 f"{ev['rows_unmatched']:,} name no request of the run, {ev['rows_unmatched_failures']:,} of them "
                 f"failures, billing {money(ev['rows_unmatched_usd'])}) vs the upstream's ledger; "
                 f"{ev['agreed']:,} agree; billed {money(ev['billed_total'])} vs delivered "
                 f"{money(ev['delivered_total'])} (net {money(ev['net_usd'])}); billing disagreement, "
                 "not a leaked reservation")]
        if over["requests"]:
            rows.append(("over-billed requests", f"{over['requests']:,}, Σ {money(over['usd'])}, largest "
                         f"{_largest(over)}; {over['within_rounding']:,} partly delivered within token rounding, "
                         f"{over['reservation_sized']:,} by a reservation or more"))
        if under["requests"]:
            rows.append(("under-billed requests", f"{under['requests']:,}, Σ {money(under['usd'])}, largest "
                         f"{_largest(under)}; {under['partial']:,} partly delivered (inside the band), "
                         f"{under['reservation_sized']:,} by a reservation or more"))
        if unbilled["requests"] or ev.get("not_caught_up"):
            rows.append(("unbilled requests", f"{unbilled['requests']:,} delivered upstream without a spend-log "
                         f"row ({money(unbilled['usd'])}; {unbilled['completed']:,} completed, "
                         f"{unbilled['partial']:,} partly delivered); {ev.get('not_caught_up', 0):,} too late for "
                         "the dump, not judged"))
        return rows


def _largest(side: dict[str, Any]) -> str:
    x = side.get("largest") or {}
    return (f"{money(abs(x.get('diff') or 0))}: {x.get('request_id', '?')} of {x.get('end_user') or '?'}, billed "
            f"{money(x.get('billed'))} vs delivered {money(x.get('delivered'))}")
