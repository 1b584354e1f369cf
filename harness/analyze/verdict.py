"""The verdict (REPRODUCED / NOT REPRODUCED / INCONCLUSIVE), its reasons, the exit code and verdict.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.analyze.checks import DrainResult, InflationResult, PhantomResult, _f
from harness.analyze.classify import CLASSES, OK, OTHER
from harness.analyze.context import Context

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "REPRODUCED", "NOT REPRODUCED", "INCONCLUSIVE"
MIN_REQUESTS = 20            # fewer requests than this cannot show anything
STACK_ERROR_SHARE = 0.5      # above this share of requests failing for stack reasons, nothing is conclusive
SCHEMA_VERSION = 1


@dataclass
class Verdict:
    verdict: str
    reasons: list[str]
    expected: str
    matches: bool
    exit_code: int
    notes: list[str] = field(default_factory=list)


def decide(ctx: Context, phantom: PhantomResult, inflation: InflationResult, drain: DrainResult) -> Verdict:
    r = ctx.requests
    n = len(r)
    found: list[str] = []
    checks = set(ctx.data.scenario.checks)      # what counts as the bug (scenario `checks`)
    aside: list[str] = []                       # findings of checks the scenario does not count
    if phantom.count:
        first = phantom.table.loc[phantom.table["phantom"], "t_rel"].min()
        (found if "phantom" in checks else aside).append(
            f"{phantom.count} phantom budget rejection(s) of {len(phantom.affected_users)} end user(s), "
            f"first at {first:.1f} s")
    leaked = drain.leaked
    if len(leaked):
        total = float(leaked["leaked"].sum())
        (found if "leak" in checks else aside).append(
            f"{len(leaked)} end user(s) kept ${total:,.2f} of leaked reservations after the drain"
            if total >= 1 else f"{len(leaked)} end user(s) kept ${total:.4g} of leaked reservations after the drain")
    if "deflation" in checks and drain.ran and len(drain.table) and drain.table["undercount"].any():
        t = drain.table.loc[drain.table["undercount"]]
        found.append(f"{len(t)} end user(s) have a counter ${float((t['true_low'] - t['counter']).sum()):.4g} "
                     "below their true spend after the drain (deflation: they can overspend their budget)")

    blockers: list[str] = []
    reached = int((r["status"].fillna(0) > 0).sum())
    if n < MIN_REQUESTS:
        blockers.append(f"too few requests ({n} < {MIN_REQUESTS})")
    elif reached < MIN_REQUESTS:
        blockers.append(f"too few requests reached the proxy ({reached} of {n} got an HTTP answer)")
    other = int((r["cls"] == OTHER).sum())
    if n and other / n > STACK_ERROR_SHARE:
        top = r.loc[r["cls"] == OTHER, "detail"].value_counts().head(3)
        what = ", ".join(f"{k} ×{v}" for k, v in top.items())
        blockers.append(f"stack errors dominate: {other / n:.0%} of requests failed for reasons that are neither "
                        f"budget nor upstream ({what})")
    ok = int((r["cls"] == OK).sum())
    if ok and not len(ctx.ledger):
        blockers.append(f"the mock's ledger is empty although {ok} request(s) succeeded: no ground truth")
    counterless = not inflation.counters_observed and not _version_has_counters(ctx.data.version)
    if counterless:
        aside_notes = [f"LiteLLM {ctx.data.version} keeps no spend:end_user counter (budget reservations first ship "
                       "in 1.84.0): there is no reservation to leak"]
    else:
        aside_notes = []
    if not inflation.counters_observed and not phantom.budget_rejections and n >= MIN_REQUESTS and not counterless:
        _, final_high = ctx.spend.final()
        budgets = ctx.budget_by_code
        why = "no Redis counter was observed and no request was rejected for budget"
        if len(final_high) and np.isfinite(budgets).any():
            i = int(np.nanargmax(final_high / np.where(np.isfinite(budgets), budgets, np.inf)))
            why += (f"; with these settings no end user could be (largest true spend ${final_high[i]:.4g} "
                    f"vs budget ${budgets[i]:.4g})" if final_high[i] < budgets[i] else
                    f" although {ctx.user(i)} spent ${final_high[i]:.4g} of a ${budgets[i]:.4g} budget")
        elif not np.isfinite(budgets).any():
            why += "; the scenario sets no end-user budget"
        blockers.append(why + " (is Redis caching configured? is this a version with counters?)")
    if not drain.ran and n >= MIN_REQUESTS:
        blockers.append(f"the drain check could not run: {drain.why_not}")
    elif drain.ran and not len(drain.table) and drain.counters_absent and inflation.counters_observed:
        # counters existed during the run but none was left to check (expired: 60 s TTL), e.g. a fault window that
        # kept the load from ending (a replica restart) until the TTL had run out
        blockers.append(f"the drain check had nothing to judge: counters were seen during the run but none was left "
                        f"at the drain sample ({drain.after_load_end_s or 0:.0f} s after the load ended) although "
                        f"{drain.counters_absent} end user(s) spent")

    if found:
        verdict, reasons = REPRODUCED, found
    elif blockers:
        verdict, reasons = INCONCLUSIVE, blockers
    else:
        checked = len(drain.table)
        verdict = NOT_REPRODUCED
        reasons = [f"0 phantom rejections among {phantom.budget_rejections} budget rejection(s)",
                   f"after the drain all {checked} remaining counter(s) lie within the true-spend band"]
    expected = ctx.data.scenario.expectation_for(ctx.data.version)
    matches = (expected == "reproduced" and verdict == REPRODUCED) or (
        expected == "clean" and verdict == NOT_REPRODUCED)
    notes = (blockers if found else []) + aside_notes + [f"not counted by this scenario's checks: {a}"
                                                         for a in aside]
    return Verdict(verdict=verdict, reasons=reasons, expected=expected, matches=matches,
                   exit_code=0 if matches else 1, notes=notes)


def _version_has_counters(version: str) -> bool:
    from harness.errors import HarnessError
    from harness.litellm.versions import resolve

    try:
        return resolve(version).has_budget_reservation
    except HarnessError:
        return True


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
        dur = _f(t_end - r["t_start"].min()) if t_end == t_end else None
    return {"total": len(r), "reached_proxy": int((r["status"].fillna(0) > 0).sum()), "by_class": by_class,
            "status_codes": statuses, "other_details": other_details, "upstream_status_codes": upstream_details,
            "streams": int((r["stream"] == 1).sum()), "client_disconnects": int((r["disconnected"] == 1).sum()),
            "duration_s": dur}


def build_verdict_json(ctx: Context, v: Verdict, phantom: PhantomResult, inflation: InflationResult,
                       drain: DrainResult, files: dict[str, str]) -> dict[str, Any]:
    meta = ctx.data.meta
    scen = ctx.data.scenario
    return {
        "schema": SCHEMA_VERSION,
        "verdict": v.verdict,
        "reasons": v.reasons,
        "notes": v.notes,
        "expected": v.expected,
        "matches_expectation": v.matches,
        "exit_code": v.exit_code,
        "run_id": meta.get("run_id") or ctx.data.run_dir.name,
        "scenario": scen.name,
        "litellm_version": ctx.data.version,
        "harness_version": meta.get("harness_version"),
        "time": {"t0": ctx.t0, "t0_source": ctx.t0_source, "t_load_end": ctx.t_load_end,
                 "t_load_end_source": ctx.t_load_end_source, "t_drain_end": ctx.t_drain_end,
                 "load_s": _f(ctx.t_load_end - ctx.t0), "unit": "seconds after t0 unless named t0/t_*"},
        "budget": {"default_max_budget": scen.budget.default_max_budget,
                   "per_user_overrides": len(scen.budget.per_user),
                   "max_reservation": ctx.max_reservation,
                   "pricing": scen.pricing.model_dump()},
        "requests": request_summary(ctx),
        "ledger": {"calls": len(ctx.ledger), "partial_calls": int(ctx.ledger["partial"].sum()) if len(ctx.ledger)
                   else 0, "end_users": int(ctx.ledger["code"].nunique()) if len(ctx.ledger) else 0,
                   "true_low_total": _f(ctx.ledger["low"].sum()) if len(ctx.ledger) else 0.0,
                   "true_high_total": _f(ctx.ledger["high"].sum()) if len(ctx.ledger) else 0.0},
        "phantom": phantom.evidence(ctx),
        "inflation": inflation.evidence(ctx),
        "drain": drain.evidence(ctx),
        "faults": fault_summary(ctx),
        "proxy_log_signals": scan_proxy_logs(ctx.data.run_dir),
        "files": files,
        "warnings": ctx.warnings,
    }


def scan_proxy_logs(run_dir: Any) -> dict[str, Any]:
    from harness.analyze.proxylogs import scan_proxy_logs as scan

    return scan(run_dir)


def fault_summary(ctx: Context) -> list[dict[str, Any]]:
    from harness.analyze.windows import fault_windows

    return [{"kind": w.kind, "target": w.target, "start": _f(w.start - ctx.t0),
             "end": _f(w.end - ctx.t0) if w.end is not None else None, "note": w.note}
            for w in fault_windows(ctx)]
