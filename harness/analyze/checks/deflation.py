"""Deflation: counters below the true spend (low bound) after the drain — their end users can overspend their
budget (e.g. Redis restarted from an old snapshot). Opt-in: counted only when a scenario's `checks` name
`deflation`. Its numbers live in the drain section (`undercounted_*`)."""

from __future__ import annotations

from harness.analyze.checker import Check, CheckResult, Results, prerequisite
from harness.analyze.checks.drain import DrainResult
from harness.analyze.context import Context
from harness.analyze.jsonable import num


class Deflation(Check):
    name = "deflation"
    counted_as = "deflation"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        drain = prerequisite(done, "drain", DrainResult)
        if not drain.ran:
            return CheckResult()
        t = drain.table
        under = t.loc[t["undercount"]] if len(t) else t
        usd = float((under["true_low"] - under["counter"]).sum()) if len(under) else 0.0
        findings = [f"{len(under)} end user(s) have a counter ${usd:.4g} below their true spend after the drain "
                    "(deflation: they can overspend their budget)"] if len(under) else []
        return CheckResult(findings=findings, summary={"deflated_users": len(under), "deflated_usd": num(usd)})
