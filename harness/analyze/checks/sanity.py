"""Did the run show anything at all? Too few requests or stack errors dominating block every conclusion
(INCONCLUSIVE); the request counts go to the summary. Missing ground truth is the completeness check's."""

from __future__ import annotations

from harness.analyze.checker import Check, CheckResult, Results
from harness.analyze.classify import CLASSES, OTHER
from harness.analyze.context import Context
from harness.analyze.summary import Value

MIN_REQUESTS = 20            # fewer requests than this cannot show anything
STACK_ERROR_SHARE = 0.5      # above this share of requests failing for stack reasons, nothing is conclusive


class Sanity(Check):
    name = "sanity"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        r = ctx.requests
        n = len(r)
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
            blockers.append(f"stack errors dominate: {other / n:.0%} of requests failed for reasons that are "
                            f"neither budget nor upstream ({what})")
        by_class = r["cls"].value_counts().reindex(CLASSES, fill_value=0)
        load_s = ctx.t_load_end - ctx.t0
        summary: dict[str, Value] = {f"requests_{c}": int(v) for c, v in by_class.items()}
        summary.update(requests=n, load_s=round(load_s, 3),
                       req_per_s=round(n / load_s, 2) if load_s > 0 else None)
        return CheckResult(blockers=blockers, summary=summary)
