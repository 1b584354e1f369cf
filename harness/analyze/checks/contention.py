"""Contention: was the stack starved while the load ran? Never a finding or a blocker — the verdict stands on
its evidence — but a starved run says so in its notes and in the summary (`starved`), and the matrix/catalog
gate never fails on a flip seen only in starved runs (harness/matrix/cells.py). The rule, from meta.json's
`contention` figures (recorded by harness/run/contention.py):

- **other harness stacks**: any other harness stack running on the machine during the load (`other_stacks_max`
  ≥ 1) — two stacks on two cores starve each other (the matrix example that had to be re-judged);
- **foreign CPU**: processes outside this run plus hypervisor steal took ≥ `FOREIGN_STARVED` of the machine's
  CPU during the load. A quarter of the machine is half a core on the 2-core machines this harness targets:
  what one busy unit-test process or a CPU hog on one core at half duty takes; this run's own stack, Locust and
  harness are never counted.

Reported alongside, not judged: the load average (the run's own processes raise it too) and the latency of
streams that ran to the end against the mock's nominal stream time (first-token delay + chunk delays; the
proxy's own overhead adds to it, so there is no independent "normal" to compare with)."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.analyze.checker import Check, CheckResult, Results
from harness.analyze.classify import OK
from harness.analyze.context import Context
from harness.util.fmt import pct

FOREIGN_STARVED = 0.25


def judge(figures: dict[str, Any]) -> tuple[bool, list[str]]:
    """(starved, why) from meta.json's `contention` figures."""
    why: list[str] = []
    others = int(figures.get("other_stacks_max") or 0)
    if others:
        seen = ", ".join(figures.get("other_stacks_seen") or []) or "?"
        why.append(f"{others} other harness stack(s) ran at the same time ({seen})")
    foreign = float(figures.get("foreign_share") or 0.0) + float(figures.get("steal_share") or 0.0)
    if foreign >= FOREIGN_STARVED:
        top = ", ".join(f"{k} {v:g} s" for k, v in (figures.get("foreign_top") or {}).items()) or "?"
        why.append(f"processes outside this run (and hypervisor steal) took {pct(foreign)} of the machine's CPU "
                   f"during the load (≥ {pct(FOREIGN_STARVED)}; top: {top})")
    return bool(why), why


def stream_latency_ratio(ctx: Context) -> dict[str, Any] | None:
    """p50 / p95 of completed streams' latency ÷ the mock's nominal stream time; None when not measurable."""
    mock = ctx.data.scenario.mock
    nominal = mock.first_token_delay_s + max(0, mock.chunks - 1) * mock.chunk_delay_s
    req = ctx.requests
    if nominal <= 0 or not len(req):
        return None
    done = req[(req["cls"] == OK) & (req["stream"].astype(float) == 1)]
    lat = (done["t_end"].astype(float) - done["t_start"].astype(float)).to_numpy(dtype=float, na_value=np.nan)
    lat = lat[np.isfinite(lat)]
    if not len(lat):
        return None
    p50, p95 = (float(np.quantile(lat, q)) for q in (0.5, 0.95))
    return {"nominal_s": round(nominal, 3), "streams": int(len(lat)), "p50_s": round(p50, 3),
            "p95_s": round(p95, 3), "p50_ratio": round(p50 / nominal, 2), "p95_ratio": round(p95 / nominal, 2)}


class Contention(Check):
    name = "contention"
    section = "contention"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        figures = ctx.data.meta.get("contention")
        latency = stream_latency_ratio(ctx)
        if not isinstance(figures, dict):
            return CheckResult(notes=["contention: not recorded (a run folder from before meta.json had "
                                      "`contention`): whether the stack was starved is unknown"],
                               evidence={"recorded": False, "stream_latency": latency},
                               summary={"starved": None})
        starved, why = judge(figures)
        notes = [f"the stack was starved: {w} — a finding, or its absence, may be the starvation's; rerun on a "
                 "quiet machine (`--exclusive` waits for other harness stacks)" for w in why]
        evidence = {"recorded": True, "starved": starved, "why": why, "foreign_starved_at": FOREIGN_STARVED,
                    **figures, "stream_latency": latency}
        return CheckResult(notes=notes, evidence=evidence,
                           summary={"starved": starved,
                                    "foreign_cpu_share": float(figures.get("foreign_share") or 0.0)
                                    + float(figures.get("steal_share") or 0.0),
                                    "other_stacks": int(figures.get("other_stacks_max") or 0)})

    def report_rows(self, section: dict[str, Any]) -> list[tuple[str, str]]:
        lat = section.get("stream_latency")
        lat_text = (f"; completed streams p50 {lat['p50_s']:g} s = {lat['p50_ratio']:g}× the mock's nominal "
                    f"{lat['nominal_s']:g} s" if isinstance(lat, dict) else "")
        if not section.get("recorded"):
            return [("contention", "not recorded" + lat_text)]
        load = section.get("load_avg_1m") or {}
        word = "**STARVED**: " + "; ".join(section.get("why") or []) if section.get("starved") else "quiet"
        return [("contention", f"{word} — CPU outside this run {pct(float(section.get('foreign_share') or 0))}, "
                 f"steal {pct(float(section.get('steal_share') or 0))}, other harness stacks "
                 f"{section.get('other_stacks_max', 0)}, load average max {load.get('max', '?')} on "
                 f"{section.get('cpus', '?')} CPUs" + lat_text)]
