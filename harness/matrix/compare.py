"""A matrix against a baseline matrix: what changed beyond noise.

Rule, per cell (scenario × version) present in both:
- a verdict flip (the cell's verdict label differs, e.g. REPRODUCED → NOT REPRODUCED, or → uninstallable)
  is always a change;
- a number (phantom rejections, leaked $, max inflation, req/s, p99) changed when its median moved by more
  than its tolerance = max(spread seen across the repeats of either side, REL_TOL × the larger median,
  an absolute floor). With --repeat 1 on both sides there is no spread, so the relative and absolute floors
  are the noise band; with --repeat N the observed spread widens it;
- a flip or a change where either side's cell was starved in every run (harness/matrix/cells.py) is
  "under starvation": reported, never counted as a change — the comparison must be rerun on a quiet machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.matrix.cells import Cell

REL_TOL = 0.25


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    floor: float        # absolute change below this is always noise
    unit: str = ""


METRICS = (
    Metric("phantoms", "phantom rejections", 5.0),
    Metric("leaked_usd", "leaked $ after drain", 1.0, "$"),
    Metric("max_inflation_usd", "max inflation $", 1.0, "$"),
    Metric("req_per_s", "req/s", 1.0),
    Metric("p99_s", "p99 latency s", 0.25),
)

FLIP, CHANGED, NOISE, NEW, GONE = "verdict flip", "changed", "within noise", "new cell", "cell gone"
STARVED = "under starvation (not judged)"


@dataclass
class MetricDelta:
    metric: Metric
    before: float | None
    after: float | None
    tolerance: float | None
    changed: bool

    def describe(self) -> str:
        if self.before is None or self.after is None:
            return f"{self.metric.label}: {_num(self.before)} → {_num(self.after)} (not comparable)"
        word = "CHANGED" if self.changed else "noise"
        return (f"{self.metric.label}: {_num(self.before)} → {_num(self.after)} "
                f"(Δ {self.after - self.before:+,.4g}, band ±{self.tolerance:,.4g}: {word})")


@dataclass
class CellDelta:
    scenario: str
    version: str
    kind: str
    before: Cell | None
    after: Cell | None
    deltas: list[MetricDelta] = field(default_factory=list)

    @property
    def is_change(self) -> bool:
        return self.kind in (FLIP, CHANGED, NEW, GONE)


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:,.4g}"


def compare_metric(metric: Metric, before: Cell, after: Cell) -> MetricDelta:
    b, a = before.median(metric.name), after.median(metric.name)
    if b is None or a is None:
        return MetricDelta(metric, b, a, None, False)
    tolerance = max(before.spread(metric.name), after.spread(metric.name), REL_TOL * max(abs(a), abs(b)),
                    metric.floor)
    return MetricDelta(metric, b, a, tolerance, abs(a - b) > tolerance)


def compare(before: list[Cell], after: list[Cell]) -> list[CellDelta]:
    old = {c.key: c for c in before}
    out: list[CellDelta] = []
    for cell in after:
        prev = old.pop(cell.key, None)
        if prev is None:
            out.append(CellDelta(cell.scenario, cell.version, NEW, None, cell))
            continue
        deltas = [compare_metric(m, prev, cell) for m in METRICS]
        if prev.verdict != cell.verdict:
            kind = FLIP
        elif any(d.changed for d in deltas):
            kind = CHANGED
        else:
            kind = NOISE
        if kind != NOISE and (prev.starved or cell.starved):
            kind = STARVED
        out.append(CellDelta(cell.scenario, cell.version, kind, prev, cell, deltas))
    out.extend(CellDelta(c.scenario, c.version, GONE, c, None) for c in old.values())
    return out
