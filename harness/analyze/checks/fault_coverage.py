"""Fault coverage: did the scenario's faults happen? A fault window whose action failed (meta.json
`nemesis_errors`, written by the runner) or that never started (no start event in faults.csv) means the run
did not test what the scenario describes: a blocker (INCONCLUSIVE unless the bug was found anyway). Run folders
from before `nemesis_errors` existed get a note instead."""

from __future__ import annotations

from typing import Any

from harness.analyze.checker import Check, CheckResult, Results
from harness.analyze.context import Context


class FaultCoverage(Check):
    name = "fault_coverage"
    section = "fault_coverage"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        windows = ctx.data.scenario.faults
        if not windows:
            return CheckResult(evidence={"windows": 0}, summary={"fault_problems": 0})
        f = ctx.data.faults
        started = {str(w).strip() for w in f.loc[f["event"].astype(str).str.strip().str.lower() == "start",
                                                   "window"]} if len(f) else set()
        blockers = [f"fault window {i} ({w.kind} at {w.at_s:g} s) never started: the scenario's fault did not "
                    "happen" for i, w in enumerate(windows) if str(i) not in started]
        errors = ctx.data.meta.get("nemesis_errors")
        evidence: dict[str, Any] = {"windows": len(windows), "never_started": len(blockers)}
        if not isinstance(errors, list):
            evidence["errors_recorded"] = False
            return CheckResult(blockers=blockers, notes=["nemesis errors: not recorded (a run folder from before "
                                                         "meta.json had nemesis_errors)"],
                               evidence=evidence, summary={"fault_problems": None})
        for e in errors:
            e = e if isinstance(e, dict) else {"error": str(e)}
            if e.get("window") is None:     # the stop-time reset: a fault may have outlived the load
                blockers.append(f"the nemesis's final reset failed: {e.get('error', '?')} — a fault may have "
                                "lasted into the drain")
                continue
            blockers.append(f"fault window {e['window']} ({e.get('kind', '?')}) failed at its "
                            f"{e.get('phase', '?')}: {e.get('error', '?')} — the scenario's fault did not happen "
                            "as described")
        evidence.update(errors_recorded=True, errors=errors)
        return CheckResult(blockers=blockers, evidence=evidence, summary={"fault_problems": len(blockers)})

    def report_rows(self, section: dict[str, Any]) -> list[tuple[str, str]]:
        if not section.get("windows"):
            return []
        errors = section.get("errors") or []
        recorded = "not recorded" if not section.get("errors_recorded") else f"{len(errors)} error(s)"
        return [("fault coverage", f"{section['windows']} window(s), {section.get('never_started', 0)} never "
                 f"started; nemesis: {recorded}")]
