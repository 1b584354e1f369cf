"""`harness matrix`: every scenario on every version (× repeats), the table, the picture, the release gate."""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness.errors import HarnessError
from harness.matrix.cells import Cell, append_csv, gate_exit_code, group, read_csv
from harness.matrix.compare import CellDelta, compare
from harness.matrix.execute import OK, CellResult, Runner
from harness.matrix.plot import plot_summary
from harness.matrix.report import comparison_lines, render_comparison_md, render_matrix_md, summary_line
from harness.run.runfolder import VERDICT_FILE
from harness.util.fsutil import atomic_write_text

CSV_NAME, MD_NAME, PNG_NAME, COMPARISON_NAME = "matrix.csv", "matrix.md", "summary.png", "comparison.md"
JSON_NAME = "matrix.json"
# A cell's wall time before any has finished: stack up + analysis, on top of load + drain.
OVERHEAD_S = 75.0


@dataclass
class MatrixResult:
    out_dir: Path
    results: list[CellResult]
    cells: list[Cell]
    exit_code: int
    deltas: list[CellDelta] = field(default_factory=list)


def parse_versions(text: str) -> list[str]:
    """--versions: releases, and candidate builds by path (a wheel, a source tree: harness/litellm/candidate.py),
    which become their labels (1.84.0+wheel.<sha256:16>, …) — a cell's name; the runner gets the build back."""
    from packaging.version import InvalidVersion, Version

    from harness.litellm.candidate import is_path, parse

    out = [v.strip() for v in re.split(r"[,\s]+", text) if v.strip()]
    if not out:
        raise HarnessError("--versions is empty", "pass e.g. --versions 1.84.0,1.108.7")
    labels: list[str] = []
    for v in out:
        if is_path(v):
            labels.append(parse(v).label)       # a bad path: one line naming it
            continue
        try:
            Version(v)
        except InvalidVersion:
            raise HarnessError(f"--versions: '{v}' is not a version", "pass exact releases such as 1.84.0, or the "
                               "path of a LiteLLM wheel / source tree") from None
        labels.append(v)
    return list(dict.fromkeys(labels))


def new_matrix_dir(root: Path, prefix: str = "matrix") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = root / f"{prefix}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{prefix}-{stamp}-{n}"
    return path


def _fmt(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def _planned_s(scenario_path: Path, duration: float | None) -> float:
    from harness.scenario.model import load_scenario

    s = load_scenario(scenario_path)
    return (duration or s.load.planned_duration_s) + s.drain_s + OVERHEAD_S


def run_matrix(scenarios: list[Path], versions: list[str], runner: Runner, out_dir: Path, console: Console, *,
               repeat: int = 1, baseline: Path | None = None, duration: float | None = None,
               command: str = "harness matrix", plot: bool = True) -> MatrixResult:
    """Run every (scenario, version, repeat) in turn; write matrix.csv as each run finishes, then
    matrix.md, summary.png and (with a baseline) comparison.md. Exit code 1 when a cell contradicts its
    expectation (the release gate), else 0."""
    from harness.scenario.model import load_scenario

    loaded = {p: load_scenario(p) for p in scenarios}          # a malformed scenario fails before any run
    baseline_cells = _load_baseline(baseline) if baseline else None
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / CSV_NAME
    (out_dir / JSON_NAME).write_text(json.dumps({
        "command": command, "scenarios": [str(p) for p in scenarios], "versions": versions, "repeat": repeat,
        "baseline": str(baseline) if baseline else None, "duration": duration, "t_started": time.time()}, indent=2))
    plan = [(p, v, k) for p in scenarios for v in versions for k in range(1, repeat + 1)]
    planned = {p: _planned_s(p, duration) for p in scenarios}
    console.print(f"matrix: {len(plan)} run(s) ({len(scenarios)} scenario(s) × {len(versions)} version(s) × "
                  f"{repeat}) → {out_dir}", highlight=False)
    results: list[CellResult] = []
    t_start = time.monotonic()
    walls: list[float] = []
    for i, (path, version, k) in enumerate(plan, 1):
        name = loaded[path].name
        elapsed = time.monotonic() - t_start
        per_cell = (sum(walls) / len(walls)) if walls else None
        left = sum(per_cell or planned[p] for p, _, _ in plan[i - 1:])
        rep = f" (repeat {k}/{repeat})" if repeat > 1 else ""
        console.rule(f"[bold]cell {i}/{len(plan)}: {escape(name)} × LiteLLM {escape(version)}{rep}[/] — elapsed "
                     f"{_fmt(elapsed)}, ~{_fmt(left)} left")
        run_id = f"{name}-{version}" + (f"-r{k}" if repeat > 1 else "")
        result = runner(path, version, out_dir / "runs" / run_id)
        result.scenario, result.version, result.repeat = name, version, k
        # relative to the matrix folder (self-contained); a retried run lives in runs/<run-id>.retry1
        result.run_dir = f"runs/{Path(result.run_dir).name if result.run_dir else run_id}"
        result.expected = loaded[path].expectation_for(version)
        results.append(result)
        if result.wall_s and result.status == OK:
            walls.append(result.wall_s)
        append_csv(csv_path, result)
        _write_md(out_dir, results, command, None, picture=None)
        color = {True: "green", False: "bold red", None: "yellow"}[result.matches]
        console.print(f"[{color}]{escape(name)} × {escape(version)}: {escape(summary_line(result))}[/]")

    cells = group(results)
    exit_code = gate_exit_code(cells)
    picture = None
    if plot and cells:
        plot_summary(cells, out_dir / PNG_NAME, f"{out_dir.name}: verdict per LiteLLM version")
        picture = PNG_NAME
    deltas: list[CellDelta] = []
    notes: list[str] = []
    if baseline_cells is not None and baseline is not None:
        deltas = compare(baseline_cells, cells)
        (out_dir / COMPARISON_NAME).write_text(render_comparison_md(deltas, baseline, out_dir))
        notes.append(f"Compared with [{baseline.name}]({COMPARISON_NAME}): "
                     f"{sum(d.is_change for d in deltas)} change(s) beyond noise.")
    _write_md(out_dir, results, command, exit_code, picture, notes)
    _print_summary(console, cells, exit_code, out_dir, deltas, time.monotonic() - t_start)
    return MatrixResult(out_dir=out_dir, results=results, cells=cells, exit_code=exit_code, deltas=deltas)


def _load_baseline(baseline: Path) -> list[Cell]:
    csv_path = baseline / CSV_NAME if baseline.is_dir() else baseline
    if not csv_path.exists():
        raise HarnessError(f"--baseline {baseline}: no {CSV_NAME} there", "pass a results/matrix-<id> folder")
    return group(read_csv(csv_path))


def _write_md(out_dir: Path, results: list[CellResult], command: str, exit_code: int | None,
              picture: str | None, notes: list[str] | None = None) -> None:
    text = render_matrix_md(group(results), out_dir, f"Version matrix {out_dir.name}", command, exit_code,
                            picture, notes)
    atomic_write_text(out_dir / MD_NAME, text)


def _print_summary(console: Console, cells: list[Cell], exit_code: int, out_dir: Path, deltas: list[CellDelta],
                   wall: float) -> None:
    from rich.table import Table

    table = Table(title=f"matrix {out_dir.name} ({_fmt(wall)})")
    for col in ("scenario", "LiteLLM", "verdict", "expected", "match", "phantoms", "leaked $"):
        table.add_column(col)
    for c in cells:
        ph, lk = c.median("phantoms"), c.median("leaked_usd")
        match = {True: "[green]yes[/]", False: "[bold red]NO[/]", None: "n/a"}[c.matches]
        table.add_row(escape(c.scenario), escape(c.version), escape(c.verdict), c.expected or "–", match,
                      "–" if ph is None else f"{ph:,.0f}", "–" if lk is None else f"{lk:,.2f}")
    console.print(table)
    for line in comparison_lines(deltas):
        console.print(f"[bold]change:[/] {escape(line)}")
    if deltas and not any(d.is_change for d in deltas):
        console.print("no change beyond noise against the baseline")
    gate = "[bold red]FAIL[/]" if exit_code else "[green]PASS[/]"
    console.print(f"release gate: {gate} (exit {exit_code}); table {out_dir / MD_NAME}")


def command_line(argv: list[str]) -> str:
    return shlex.join(["harness", *argv])


def rerender(out_dir: Path, refresh: bool = False) -> int:
    """Rewrite matrix.md and summary.png of a matrix folder from its matrix.csv; return the gate's exit code.

    refresh: first re-read every cell's run folder (after `harness analyze` re-judged it) and rewrite
    matrix.csv."""
    from harness.matrix.execute import read_run_folder

    info = json.loads((out_dir / JSON_NAME).read_text()) if (out_dir / JSON_NAME).exists() else {}
    command = info.get("command", "harness matrix")
    results = read_csv(out_dir / CSV_NAME)
    if refresh:
        for r in results:
            if r.status == OK and (out_dir / r.run_dir / VERDICT_FILE).exists():
                read_run_folder(r, out_dir / r.run_dir)
        (out_dir / CSV_NAME).unlink()
        for r in results:
            append_csv(out_dir / CSV_NAME, r)
    cells = group(results)
    exit_code = gate_exit_code(cells)
    plot_summary(cells, out_dir / PNG_NAME, f"{out_dir.name}: verdict per LiteLLM version")
    notes = []
    if (out_dir / COMPARISON_NAME).exists():
        notes.append(f"Compared with a baseline: see [{COMPARISON_NAME}]({COMPARISON_NAME}).")
    _write_md(out_dir, results, command, exit_code, PNG_NAME, notes)
    return exit_code
