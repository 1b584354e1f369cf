"""The analyzer (the checker): run folder → verdict.json, one PNG per check that draws one, report.md.

    analyze(run_dir) -> AnalysisResult          # raises HarnessError when the folder is unusable
    analyze_cli(run_dir, console) -> int        # 0 verdict matches the expectation, 1 not, 2 unusable folder

Modules, one concern each: load (tolerant reading), classify (request classes, budget messages),
truespend (ledger band), context (shared codes/times/budgets), checker (what a check is, check_safe),
checks/ (one module per check + the registration list), verdict (the merge + verdict.json), summary (the
verdict.json contract other stages read), windows (fault windows), plots, report, scrub, proxylogs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from harness.analyze.summary import Summary
from harness.errors import HarnessError
from harness.run import runfolder as rf

if TYPE_CHECKING:
    from harness.analyze.checker import Results
    from harness.analyze.context import Context


@dataclass
class AnalysisResult:
    run_dir: Path
    verdict: str
    reasons: list[str]
    expected: str
    exit_code: int
    evidence: dict[str, Any]           # the content of verdict.json
    summary: Summary                   # its `summary`
    verdict_path: Path
    report_path: Path
    pictures: list[Path]
    timings: dict[str, float] = field(default_factory=dict)


def analyze(run_dir: Path, plots: bool = True) -> AnalysisResult:
    """Analyse one run folder and write verdict.json, the pictures and report.md into it."""
    from harness.analyze.checker import CheckResult, check_safe
    from harness.analyze.checks import CHECKS
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
    results: dict[str, CheckResult] = {}
    for check in CHECKS:
        results[check.name] = check_safe(check, ctx, results)
    verdict = decide(ctx, CHECKS, results)
    lap("checks")

    pictures: list[Path] = []
    if plots:
        for check in CHECKS:
            if not check.picture:
                continue
            if results[check.name].error:
                ctx.warnings.append(f"{check.picture} not drawn: {results[check.name].error}")
                continue
            try:
                check.plot(ctx, results, run_dir / check.picture)
            except Exception as exc:  # noqa: BLE001 — a picture that fails must not lose the verdict
                ctx.warnings.append(f"{check.picture} not drawn ({type(exc).__name__}: {exc})")
                continue
            pictures.append(run_dir / check.picture)
    lap("plots")

    chart = _mermaid_chart(ctx, results, [p.name for p in pictures])
    files = {"report": rf.REPORT_FILE, "verdict": rf.VERDICT_FILE, "pictures": [p.name for p in pictures]}
    evidence = scrub_obj(build_verdict_json(ctx, verdict, CHECKS, results, files))
    verdict_path = run_dir / rf.VERDICT_FILE
    verdict_path.write_text(json.dumps(evidence, indent=2, allow_nan=False) + "\n")
    report_path = run_dir / rf.REPORT_FILE
    display = _display_path(run_dir)
    report_path.write_text(render_report(evidence, data.meta, data.scenario_text, [p.name for p in pictures],
                                         display, chart=chart))
    lap("write")
    timings["total"] = round(sum(timings.values()), 4)
    return AnalysisResult(run_dir=run_dir, verdict=verdict.verdict, reasons=verdict.reasons,
                          expected=verdict.expected, exit_code=verdict.exit_code, evidence=evidence,
                          summary=Summary.from_verdict(evidence), verdict_path=verdict_path,
                          report_path=report_path, pictures=pictures, timings=timings)


def _mermaid_chart(ctx: Context, results: Results, pictures: list[str]) -> list[str] | None:
    """report.md's Mermaid version of the headline chart (harness/analyze/mermaid.py); None when there is none.
    A chart that fails is a warning: the verdict and the rest of the report stand."""
    from harness.analyze.checks.inflation import Inflation, InflationResult
    from harness.analyze.mermaid import inflation_chart

    infl = results.get(Inflation.name)
    if infl is None or not isinstance(infl.data, InflationResult):
        return None
    try:
        return inflation_chart(infl.data.rounds, picture=Inflation.picture if Inflation.picture in pictures else None)
    except Exception as exc:  # noqa: BLE001 — like a picture: never loses the verdict
        ctx.warnings.append(f"Mermaid chart not drawn ({type(exc).__name__}: {exc})")
        return None


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

    from harness.analyze.summary import NOT_REPRODUCED, REPRODUCED
    from harness.util.fmt import money, pct

    s = result.summary

    def out(text: str) -> None:       # emoji=False: `spend:key:*` is not an emoji code
        console.print(text, soft_wrap=True, highlight=False, emoji=False)

    def n(v: int | None) -> str:
        return "?" if v is None else f"{v:,}"

    color = {REPRODUCED: "red", NOT_REPRODUCED: "green"}.get(result.verdict, "yellow")
    match = "[green]matches[/]" if s.matches_expectation else "[bold red]does NOT match[/]"
    out(f"[bold {color}]{result.verdict}[/] — LiteLLM {escape(str(s.litellm_version))}, scenario "
        f"{escape(str(s.scenario))}; expected {s.expected}: {match} (exit {result.exit_code})")
    for reason in result.reasons:
        out(f"  • {escape(reason)}")
    out(f"  requests {n(s.requests)}: ok {n(s.requests_ok)}, budget {n(s.requests_budget)}, upstream "
        f"{n(s.requests_upstream)}, walk-away {n(s.requests_disconnect)}, other {n(s.requests_other)}")
    tail = f", first at {s.first_phantom_s:.1f} s)" if s.first_phantom_s is not None else ")"
    out(f"  phantom rejections {n(s.phantoms)} ({pct(s.phantom_share_of_rejections)} of rejections, "
        f"{n(s.phantom_users)} end users{tail}")
    if s.drain_ran:
        out(f"  drain: {n(s.leaked_users)} of {n(s.users_checked)} counters leaked "
            f"{money(s.leaked_usd)}; Redis {money(s.counter_total_usd)} vs DB "
            f"{money(s.db_total_usd)} vs true {money(s.true_low_total_usd)}–"
            f"{money(s.true_high_total_usd)}")
    else:
        out(f"  drain: not run ({escape(str(s.drain_why_not))})")
    if s.kinds_judged:
        first = f", first at {s.first_kind_phantom_s:.1f} s" if s.first_kind_phantom_s is not None else ""
        out(f"  the run's keys/teams ({escape(s.kinds_judged)}): phantom rejections {n(s.kind_phantoms)} (naming "
            f"{n(s.kind_phantom_entities)}{first}); leaked after the drain {money(s.kind_leaked_usd)} on "
            f"{n(s.kind_leaked_entities)}; largest counter / spend "
            + (f"{s.kind_max_ratio:.1f}×" if s.kind_max_ratio is not None else "–"))
    for w in result.evidence.get("warnings", [])[:5]:
        out(f"  [yellow]warning:[/] {escape(w)}")
    out(f"  report: {result.report_path}")


def _display_path(run_dir: Path) -> str:
    try:
        return str(run_dir.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return f"results/{run_dir.name}"
