"""The verdict: a generic merge of the checks' results, its reasons and notes, the summary and verdict.json.

Decision: a veto (a blocker that voids every finding: the evidence all findings stand on is missing) →
INCONCLUSIVE, the findings become notes; else findings of a check the scenario counts (`checks`) → REPRODUCED
(every blocker then becomes a note); else any blocker → INCONCLUSIVE; else NOT REPRODUCED, with what the checks
verified as reasons. Findings of checks the scenario does not count become notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.analyze.checker import Check, Results
from harness.analyze.classify import CLASSES, OTHER
from harness.analyze.context import Context
from harness.analyze.jsonable import num
from harness.analyze.summary import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    SCHEMA_VERSION,
    Summary,
    outcome_of,
)


@dataclass
class Verdict:
    verdict: str
    reasons: list[str]
    expected: str
    matches: bool
    exit_code: int
    notes: list[str] = field(default_factory=list)


def decide(ctx: Context, checks: Sequence[Check], results: Results) -> Verdict:
    counted = set(ctx.data.scenario.checks)     # what counts as the bug (scenario `checks`)
    found: list[str] = []
    aside: list[str] = []                       # findings of checks the scenario does not count
    blockers: list[str] = []
    vetoes: list[str] = []
    notes: list[str] = []
    passed: list[str] = []
    for check in checks:
        r = results[check.name]
        (found if check.counted_as in counted else aside).extend(r.findings)
        blockers += r.blockers
        vetoes += r.vetoes
        notes += r.notes
        passed += r.passed
    if vetoes:
        verdict, reasons = INCONCLUSIVE, vetoes + blockers
        notes = [f"not concluded (the evidence it needs is missing): {f}" for f in found] + notes
        found = []
    elif found:
        verdict, reasons = REPRODUCED, found
    elif blockers:
        verdict, reasons = INCONCLUSIVE, blockers
    else:
        verdict, reasons = NOT_REPRODUCED, passed or ["no check found anything"]
    expected = ctx.data.scenario.expectation_for(ctx.data.version)
    matches = outcome_of(verdict) == expected
    notes = (blockers if found else []) + notes + [f"not counted by this scenario's checks: {a}" for a in aside]
    return Verdict(verdict=verdict, reasons=reasons, expected=expected, matches=matches,
                   exit_code=0 if matches else 1, notes=notes)


def summarize(ctx: Context, v: Verdict, checks: Sequence[Check], results: Results) -> Summary:
    """The flat summary: the verdict plus every check's summary fields."""
    fields: dict[str, Any] = {}
    for check in checks:
        fields.update(results[check.name].summary)
    return Summary(verdict=v.verdict, expected=v.expected, matches_expectation=v.matches, reason="; ".join(v.reasons),
                   scenario=ctx.data.scenario.name, litellm_version=ctx.data.version, **fields)


def request_summary(ctx: Context) -> dict[str, Any]:
    r = ctx.requests
    by_class = {c: int(v) for c, v in r["cls"].value_counts().reindex(CLASSES, fill_value=0).items()}
    statuses = {str(int(k)) if k == k else "none": int(v)
                for k, v in r["status"].value_counts(dropna=False).sort_index().items()}
    other_details = {str(k): int(v) for k, v in r.loc[r["cls"] == OTHER, "detail"].value_counts().head(8).items()}
    upstream_details = {str(int(k)) if k == k else "none": int(v)
                        for k, v in r.loc[r["cls"] == "upstream", "status"].value_counts(dropna=False).items()}
    dur = None
    if len(r):
        t_end = r["t_end"].max()
        dur = num(t_end - r["t_start"].min()) if t_end == t_end else None
    return {"total": len(r), "reached_proxy": int((r["status"].fillna(0) > 0).sum()), "by_class": by_class,
            "status_codes": statuses, "other_details": other_details, "upstream_status_codes": upstream_details,
            "streams": int((r["stream"] == 1).sum()), "client_disconnects": int((r["disconnected"] == 1).sum()),
            "duration_s": dur}


def build_verdict_json(ctx: Context, v: Verdict, checks: Sequence[Check], results: Results,
                       files: dict[str, Any]) -> dict[str, Any]:
    meta = ctx.data.meta
    scen = ctx.data.scenario
    counted = set(scen.checks)
    out: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "verdict": v.verdict,
        "reasons": v.reasons,
        "notes": v.notes,
        "expected": v.expected,
        "matches_expectation": v.matches,
        "exit_code": v.exit_code,
        "summary": summarize(ctx, v, checks, results).model_dump(),
        "run_id": meta.get("run_id") or ctx.data.run_dir.name,
        "scenario": scen.name,
        "litellm_version": ctx.data.version,
        "harness_version": meta.get("harness_version"),
        "time": {"t0": ctx.t0, "t0_source": ctx.t0_source, "t_load_end": ctx.t_load_end,
                 "t_load_end_source": ctx.t_load_end_source, "t_drain_end": ctx.t_drain_end,
                 "load_s": num(ctx.t_load_end - ctx.t0), "unit": "seconds after t0 unless named t0/t_*"},
        "budget": {"default_max_budget": scen.budget.default_max_budget,
                   "per_user_overrides": len(scen.budget.per_user),
                   "max_reservation": ctx.max_reservation,
                   "pricing": scen.pricing.model_dump()},
        "requests": request_summary(ctx),
        "ledger": {"calls": len(ctx.ledger), "partial_calls": int(ctx.ledger["partial"].sum()) if len(ctx.ledger)
                   else 0, "end_users": int(ctx.ledger["code"].nunique()) if len(ctx.ledger) else 0,
                   "true_low_total": num(ctx.ledger["low"].sum()) if len(ctx.ledger) else 0.0,
                   "true_high_total": num(ctx.ledger["high"].sum()) if len(ctx.ledger) else 0.0},
        "checks": {c.name: {"counted": c.counted_as in counted, "findings": results[c.name].findings,
                            "blockers": results[c.name].blockers,
                            "vetoes": results[c.name].vetoes, "notes": results[c.name].notes,
                            "error": results[c.name].error} for c in checks},
    }
    for c in checks:
        if c.section and results[c.name].evidence is not None:
            out[c.section] = results[c.name].evidence
    out.update({"faults": fault_summary(ctx), "proxy_log_signals": scan_proxy_logs(ctx.data.run_dir),
                "files": files, "warnings": ctx.warnings})
    return out


def scan_proxy_logs(run_dir: Any) -> dict[str, Any]:
    from harness.analyze.proxylogs import scan_proxy_logs as scan

    return scan(run_dir)


def fault_summary(ctx: Context) -> list[dict[str, Any]]:
    from harness.analyze.windows import fault_windows

    return [{"kind": w.kind, "target": w.target, "start": num(w.start - ctx.t0),
             "end": num(w.end - ctx.t0) if w.end is not None else None, "note": w.note}
            for w in fault_windows(ctx)]
