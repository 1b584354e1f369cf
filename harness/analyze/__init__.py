"""The analyzer (the checker): run folder → verdict.json, inflation/rejections/drain PNGs, report.md.

    analyze(run_dir) -> AnalysisResult          # raises HarnessError when the folder is unusable
    analyze_cli(run_dir, console) -> int        # 0 verdict matches the expectation, 1 not, 2 unusable folder

Modules, one concern each: load (tolerant reading), classify (request classes, budget messages),
truespend (ledger band), context (shared codes/times/budgets), checks (phantom, inflation, drain),
faults (fault windows), verdict (decision + verdict.json), plots, report, scrub.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.errors import HarnessError
from harness.run import runfolder as rf

PICTURES = ("inflation.png", "rejections.png", "drain.png")


@dataclass
class AnalysisResult:
    run_dir: Path
    verdict: str
    reasons: list[str]
    expected: str
    exit_code: int
    evidence: dict[str, Any]           # the content of verdict.json
    verdict_path: Path
    report_path: Path
    pictures: list[Path]
    timings: dict[str, float] = field(default_factory=dict)


def analyze(run_dir: Path, plots: bool = True) -> AnalysisResult:
    """Analyse one run folder and write verdict.json, the pictures and report.md into it."""
    from harness.analyze.checks import check_drain, check_inflation, check_phantom
    from harness.analyze.context import build_context
    from harness.analyze.load import load_run
    from harness.analyze.report import render_report
    from harness.analyze.scrub import scrub_obj
    from harness.analyze.verdict import build_verdict_json, decide

    run_dir = Path(run_dir)
    timings: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[name] = round(now - t, 4)
        t = now

    data = load_run(run_dir)
    lap("load")
    ctx = build_context(data)
    lap("prepare")
    phantom = check_phantom(ctx)
    inflation = check_inflation(ctx)
    drain = check_drain(ctx, inflation)
    verdict = decide(ctx, phantom, inflation, drain)
    lap("checks")

    pictures: list[Path] = []
    if plots:
        from harness.analyze.plots import plot_drain, plot_inflation, plot_rejections

        plot_inflation(ctx, inflation, phantom, run_dir / PICTURES[0])
        plot_rejections(ctx, phantom, run_dir / PICTURES[1])
        plot_drain(ctx, drain, run_dir / PICTURES[2])
        pictures = [run_dir / p for p in PICTURES]
    lap("plots")

    files = {"report": rf.REPORT_FILE, "verdict": rf.VERDICT_FILE, "pictures": [p.name for p in pictures]}
    evidence = scrub_obj(build_verdict_json(ctx, verdict, phantom, inflation, drain, files))
    verdict_path = run_dir / rf.VERDICT_FILE
    verdict_path.write_text(json.dumps(evidence, indent=2, allow_nan=False) + "\n")
    report_path = run_dir / rf.REPORT_FILE
    display = _display_path(run_dir)
    report_path.write_text(render_report(evidence, data.meta, data.scenario_text, [p.name for p in pictures],
                                         display))
    lap("write")
    timings["total"] = round(sum(timings.values()), 4)
    return AnalysisResult(run_dir=run_dir, verdict=verdict.verdict, reasons=verdict.reasons,
                          expected=verdict.expected, exit_code=verdict.exit_code, evidence=evidence,
                          verdict_path=verdict_path, report_path=report_path, pictures=pictures, timings=timings)


def analyze_cli(run_dir: Path, console: Console) -> int:
    """`harness analyze RUN`: print the verdict line, key numbers and where report.md is; return the exit code."""
    try:
        result = analyze(run_dir)
    except HarnessError as exc:
        console.print(f"[bold red]error:[/] {exc.line()}", highlight=False, soft_wrap=True)
        return exc.exit_code
    print_result(result, console)
    return result.exit_code


def print_result(result: AnalysisResult, console: Console) -> None:
    from rich.markup import escape

    from harness.util.fmt import money, pct

    ev = result.evidence

    def out(text: str) -> None:
        console.print(text, soft_wrap=True, highlight=False)

    color = {"REPRODUCED": "red", "NOT REPRODUCED": "green"}.get(result.verdict, "yellow")
    match = "[green]matches[/]" if ev["matches_expectation"] else "[bold red]does NOT match[/]"
    out(f"[bold {color}]{result.verdict}[/] — LiteLLM {escape(ev['litellm_version'])}, scenario "
        f"{escape(ev['scenario'])}; expected {ev['expected']}: {match} (exit {result.exit_code})")
    for reason in result.reasons:
        out(f"  • {escape(reason)}")
    req, ph, dr = ev["requests"], ev["phantom"], ev["drain"]
    bc = req["by_class"]
    out(f"  requests {req['total']:,}: ok {bc['ok']:,}, budget {bc['budget']:,}, upstream "
        f"{bc['upstream']:,}, walk-away {bc['disconnect']:,}, other {bc['other']:,}")
    first = (ph["first"] or {}).get("t_rel")
    tail = f", first at {first:.1f} s)" if first is not None else ")"
    out(f"  phantom rejections {ph['count']:,} ({pct(ph['share_of_rejections'])} of rejections, "
        f"{ph['affected_end_users']} end users{tail}")
    if dr["ran"]:
        out(f"  drain: {dr['leaked_users']} of {dr['users_checked']} counters leaked "
            f"{money(dr['leaked_total'])}; Redis {money(dr['counter_total'])} vs DB "
            f"{money(dr['db_total'])} vs true {money(dr['true_low_total'])}–"
            f"{money(dr['true_high_total'])}")
    else:
        out(f"  drain: not run ({escape(str(dr.get('why_not')))})")
    for w in ev.get("warnings", [])[:5]:
        out(f"  [yellow]warning:[/] {escape(w)}")
    out(f"  report: {result.report_path}")


def _display_path(run_dir: Path) -> str:
    try:
        return str(run_dir.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return f"results/{run_dir.name}"
