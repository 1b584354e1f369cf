"""Regression benchmark: version matrix (release gate), comparison with a baseline, bisection.

    harness matrix --versions 1.83.14,1.84.0,1.108.7 [--scenario S …] [--repeat N] [--baseline DIR] [--backend B]
    harness bisect --scenario S --good V1 --bad V2

Modules: execute (CellResult, the Runner protocol, RealRunner; a cell's numbers come from the run's
verdict.json summary, harness.analyze.summary), cells (grouping, matrix.csv), matrix (run_matrix), compare
(baseline vs now, noise band), bisect (search), pypi (release list), report (markdown), plot (summary.png),
catalog/ (`harness catalog`: plan, rows, readme). The logic only sees a `Runner`, so tests drive it with a fake one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.matrix.bisect import BisectResult
    from harness.matrix.matrix import MatrixResult
    from harness.run.experiment import RunOptions

DEFAULT_SCENARIO = Path("scenarios/phantom-budget.yaml")


def matrix_command(versions: str, scenarios: list[Path] | None, repeat: int, baseline: Path | None,
                   duration: float | None, out: Path | None, console: Console,
                   backend: str | None = None, options: RunOptions | None = None) -> MatrixResult:
    """`harness matrix`: the result's exit_code is the release gate's (harness.matrix.matrix.run_matrix).
    `backend`: every cell on that backend (`--backend compose`: the release gate in CI), else each scenario's.
    `options`: the `harness run` options of every cell (--exclusive)."""
    from harness.matrix.execute import RealRunner
    from harness.matrix.matrix import command_line, new_matrix_dir, parse_versions, run_matrix
    from harness.paths import results_dir

    if repeat < 1:
        raise HarnessError("--repeat must be at least 1", "pass --repeat 1 or more")
    out_dir = out or new_matrix_dir(results_dir())
    return run_matrix(scenarios or [DEFAULT_SCENARIO], parse_versions(versions),
                      RealRunner(console, duration, backend=backend, options=options),
                      out_dir, console, repeat=repeat, baseline=baseline, duration=duration,
                      command=command_line(sys.argv[1:]))


def repeat_command(scenario: Path, repeat: int, options: RunOptions, console: Console) -> MatrixResult:
    """`harness run S --repeat N`: a one-cell matrix (scenario × its version × N repeats) in
    results/repeat-<id>/ (matrix.csv/.md, runs/), judged by the repeats' agreement rule (harness/matrix/cells.py);
    exit code: the gate's (0 the cell matches its expectation, 1 not; a cell contradicting it only in starved
    runs is not judged)."""
    from harness.matrix.execute import RealRunner
    from harness.matrix.matrix import command_line, new_matrix_dir, run_matrix
    from harness.paths import results_dir
    from harness.run.experiment import resolve_build

    # bad input: one line, before anything starts; a candidate (wheel / tree) runs by its label, not its version
    version = resolve_build(scenario, options)[1].label
    if options.reuse or options.keep or options.stack_name:
        raise HarnessError("--repeat runs each repeat on a fresh stack: --reuse, --keep and --name do not apply",
                           "drop them, or run without --repeat")
    out_dir = options.out or new_matrix_dir(results_dir(), "repeat")
    runner = RealRunner(console, options.duration, backend=options.backend, options=options)
    return run_matrix([scenario], [version], runner, out_dir, console, repeat=repeat, duration=options.duration,
                      command=command_line(sys.argv[1:]), plot=False)


def bisect_command(scenario: Path, good: str, bad: str, duration: float | None, check_ends: bool,
                   out: Path | None, console: Console, min_phantoms: int = 0, min_leaked: float = 0.0,
                   resume: Path | None = None) -> int:
    """`harness bisect`: its exit code (0 an exact answer, 1 none or several candidates)."""
    res, _ = run_bisect(scenario, good, bad, duration, check_ends, out, console, min_phantoms, min_leaked, resume)
    return res.exit_code


def run_bisect(scenario: Path, good: str, bad: str, duration: float | None, check_ends: bool,
               out: Path | None, console: Console, min_phantoms: int = 0, min_leaked: float = 0.0,
               resume: Path | None = None, options: RunOptions | None = None) -> tuple[BisectResult, Path]:
    """The bisection itself: its result and its folder (bisect.md, bisect.csv, runs/). `options`: the
    `harness run` options of every probe (--exclusive)."""
    from harness.litellm.candidate import parse
    from harness.matrix import bisect as bs
    from harness.matrix import pypi
    from harness.matrix.execute import CellResult, RealRunner
    from harness.matrix.matrix import command_line, new_matrix_dir
    from harness.paths import results_dir
    from harness.scenario.model import load_scenario

    name = load_scenario(scenario).name
    # the ends must be runnable (one clear line otherwise); a candidate end (wheel / tree) is its label from here,
    # and the releases probed lie strictly between the ends' *declared* versions (a candidate declaring 1.94.0
    # stands for 1.94.0: the release 1.94.0 is not probed next to it)
    ends = parse(good), parse(bad)
    good, bad = ends[0].label, ends[1].label
    releases = pypi.final_releases(pypi.fetch_index())
    inside, excluded = pypi.between(releases, ends[0].version, ends[1].version, pypi.harness_accepts)
    out_dir = out or new_matrix_dir(results_dir(), "bisect")
    out_dir.mkdir(parents=True, exist_ok=True)
    command = command_line(sys.argv[1:])
    runner = RealRunner(console, duration, options=options)
    known = bs.read_probes(resume, out_dir) if resume else {}
    started = time.time()
    console.print(f"bisect {name}: {len(inside)} release(s) strictly between {good} (good) and {bad} (bad), "
                  f"{len(excluded)} excluded; ~{max(1, len(inside)).bit_length()} probe(s) → {out_dir}",
                  highlight=False)

    def probe(version: str) -> CellResult:
        if version in known:
            console.print(f"bisect: LiteLLM {escape(version)} — reusing the probe in {resume}", highlight=False)
            return known[version]
        done = len({p.version for p in state.probes}) if state else 0
        left = bs.probes_left(state) if state else None
        console.rule(f"[bold]bisect probe {done + 1}: LiteLLM {escape(version)}[/] — elapsed "
                     f"{(time.time() - started) / 60:.1f} min" + (f", ~{left} probe(s) left" if left else ""))
        result = runner(scenario, version, out_dir / "runs" / f"{name}-{version}")
        result.run_dir = f"runs/{Path(result.run_dir).name if result.run_dir else f'{name}-{version}'}"
        return result

    state: bs.BisectResult | None = None

    def on_probe(p: bs.Probe, res: bs.BisectResult) -> None:
        nonlocal state
        state = res
        bs.append_csv(out_dir / "bisect.csv", p)
        (out_dir / "bisect.md").write_text(bs.render_md(res, command, started, done=False))
        console.print(f"  {escape(p.version)}: {escape(p.result.verdict or p.result.status)} → "
                      f"{escape(p.decision)}", highlight=False)

    res = bs.bisect_versions(inside, good, bad, probe, check_ends=check_ends, scenario=name,
                             on_probe=on_probe, excluded=excluded,
                             classify=bs.evidence_outcome(min_phantoms, min_leaked))
    (out_dir / "bisect.md").write_text(bs.render_md(res, command, started))
    color = "green" if res.exact else "yellow"
    console.print(f"[bold {color}]{escape(res.headline())}[/]  ({len(res.probes)} probe(s), "
                  f"{(time.time() - started) / 60:.1f} min; {out_dir / 'bisect.md'})")
    return res, out_dir
