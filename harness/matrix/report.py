"""matrix.md and comparison.md (markdown; links relative to the matrix folder)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from harness.matrix.cells import Cell
from harness.matrix.compare import CHANGED, FLIP, GONE, NEW, NOISE, STARVED, CellDelta
from harness.matrix.execute import OK, CellResult
from harness.run.runfolder import REPORT_FILE
from harness.util.fmt import money

MATCH_TEXT = {True: "✅ yes", False: "❌ **NO**", None: "n/a"}


def num(v: float | None, fmt: str = ",.0f") -> str:
    return "–" if v is None else format(v, fmt)


def _ranged(cell: Cell, metric: str, fmt: str, dollars: bool = False) -> str:
    vals = cell.values(metric)
    if not vals:
        return "–"
    show = (lambda v: money(v)) if dollars else (lambda v: num(v, fmt))
    med = show(cell.median(metric))
    if len(vals) > 1 and max(vals) != min(vals):
        return f"{med} ({show(min(vals))}–{show(max(vals))})"
    return med


def rel_link(target: str, base: Path) -> str:
    if not target:
        return ""
    if not Path(target).is_absolute():
        return target
    try:
        return os.path.relpath(Path(target).resolve(), base.resolve())
    except ValueError:
        return target


def cell_links(cell: Cell, base: Path) -> str:
    links = []
    for r in cell.runs:
        if r.run_dir and r.status == OK:
            label = Path(r.run_dir).name if len(cell.runs) == 1 else f"#{r.repeat}"
            links.append(f"[{label}]({rel_link(r.run_dir, base)}/{REPORT_FILE})")
    return " ".join(links) or "–"


def matrix_table(cells: Iterable[Cell], base: Path) -> str:
    head = ("| scenario | LiteLLM | verdict | expected | match | phantom rejections | max inflation | "
            "leaked $ after drain | req/s | p50 / p99 s | wall | run |")
    lines = [head, "|" + "---|" * 12]
    for c in cells:
        p50, p99 = c.median("p50_s"), c.median("p99_s")
        wall = sum(r.wall_s or 0.0 for r in c.runs)
        lines.append(
            f"| {c.scenario} | {c.version} | **{c.verdict}** | {c.expected or '–'} | {MATCH_TEXT[c.matches]} | "
            f"{_ranged(c, 'phantoms', ',.0f')} | {_ranged(c, 'max_inflation_usd', '', True)} | "
            f"{_ranged(c, 'leaked_usd', '', True)} | {_ranged(c, 'req_per_s', '.1f')} | "
            f"{num(p50, '.2f')} / {num(p99, '.2f')} | {wall / 60:.1f} min | {cell_links(c, base)} |")
    return "\n".join(lines)


def render_matrix_md(cells: list[Cell], base: Path, title: str, command: str, exit_code: int | None,
                     picture: str | None, notes: list[str] | None = None) -> str:
    contradictions = [c for c in cells if c.fails_gate]
    starved = [c for c in cells if c.matches is False and c.starved]
    if exit_code is None:
        gate = "running …"
    elif contradictions:
        gate = (f"**FAIL** (exit {exit_code}): {len(contradictions)} cell(s) contradict their expectation: "
                + ", ".join(f"{c.scenario} × {c.version} ({c.verdict}, expected {c.expected})"
                            for c in contradictions))
    else:
        gate = f"**PASS** (exit {exit_code}): every cell that ran on a quiet machine matches its expectation"
    if starved and exit_code is not None:
        gate += (f"; **NOT JUDGED**: {len(starved)} cell(s) contradict their expectation only in starved runs "
                 "(another harness stack or foreign CPU during the load) — rerun them on a quiet machine "
                 "(`--exclusive`): " + ", ".join(f"{c.scenario} × {c.version} ({c.verdict})" for c in starved))
    parts = [f"# {title}", "", f"Release gate: {gate}", "", f"Command: `{command}`", ""]
    if picture:
        parts += [f"![summary]({picture})", ""]
    parts += [matrix_table(cells, base), ""]
    parts += ["Columns: *phantom rejections* — budget rejections of end users whose true spend was below budget − "
              "one reservation; *max inflation* — largest Σ Redis counters − Σ true spend over the run (includes the "
              "reservations of requests in flight at that moment); *leaked $* — "
              "reservations still on the counters after the drain; req/s over the load phase; p50/p99 latency of "
              "HTTP 200 requests; *wall* — env check/build + stack + load + drain + analysis. With repeats: median "
              "(min–max). INCONCLUSIVE, errors and uninstallable versions never count as a match; uninstallable / "
              "unsupported cells do not fail the gate (n/a).", ""]
    noted = [c for c in cells if c.note]
    if noted:
        parts += ["Starvation (the repeats' agreement rule: harness/matrix/cells.py):", ""]
        parts += [f"- {c.scenario} × {c.version}: {c.note}" for c in noted]
        parts.append("")
    why = [c for c in cells if c.reason]
    if why:
        parts += ["Why some cells did not decide:", ""]
        parts += [f"- {c.scenario} × {c.version} ({c.verdict}): {c.reason}" for c in why]
        parts.append("")
    for note in notes or []:
        parts += [note, ""]
    return "\n".join(parts)


def render_comparison_md(deltas: list[CellDelta], baseline: Path, current: Path) -> str:
    changes = [d for d in deltas if d.is_change]
    parts = [f"# Matrix comparison: {current.name} vs baseline {baseline.name}", "",
             f"{len(changes)} of {len(deltas)} cell(s) changed beyond noise.", "",
             "Rule: a verdict flip is always a change; a number changed when its median moved by more than "
             "max(spread across repeats of either side, 25 % of the larger value, an absolute floor); a flip or change "
             "where either side was starved in every run is reported as under starvation, not as a change.", "",
             "| scenario | LiteLLM | result | verdict before → now | details |", "|---|---|---|---|---|"]
    order = {FLIP: 0, CHANGED: 1, NEW: 2, GONE: 3, STARVED: 4, NOISE: 5}
    for d in sorted(deltas, key=lambda d: order.get(d.kind, 9)):
        before = d.before.verdict if d.before else "–"
        after = d.after.verdict if d.after else "–"
        shown = [x for x in d.deltas if x.changed] or ([] if d.kind != NOISE else d.deltas[:2])
        details = "; ".join(x.describe() for x in shown) or "–"
        label = f"**{d.kind}**" if d.is_change else d.kind
        parts.append(f"| {d.scenario} | {d.version} | {label} | {before} → {after} | {details} |")
    return "\n".join(parts) + "\n"


def comparison_lines(deltas: list[CellDelta]) -> list[str]:
    out = []
    for d in deltas:
        if not d.is_change:
            continue
        before = d.before.verdict if d.before else "–"
        after = d.after.verdict if d.after else "–"
        extra = "; ".join(x.describe() for x in d.deltas if x.changed)
        out.append(f"{d.scenario} × {d.version}: {d.kind} ({before} → {after}){': ' + extra if extra else ''}")
    return out


def summary_line(r: CellResult) -> str:
    if r.status != OK:
        return f"{r.status}: {r.reason}"
    return (f"{r.verdict} (expected {r.expected}), phantoms {num(r.phantoms)}, leaked {money(r.leaked_usd)}, "
            f"{num(r.req_per_s, '.1f')} req/s, wall {num(r.wall_s, '.0f')} s")
