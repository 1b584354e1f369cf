"""`harness catalog`: every catalog scenario on the versions it names, one run at a time, and the outcome table.

    harness catalog [--scenarios minimal,baseline] [--versions 1.84.0,1.108.7] [--update-readme] [--schema-only]
                    [--repeat N] [--exclusive]
    harness catalog --reanalyze

A catalog scenario is a YAML file in scenarios/; its optional `versions: [..]` names the LiteLLM versions it is
run on (default: its `litellm`). `--versions` keeps only those of the named versions (a scenario naming none of
them is skipped). Each run is one cell of `harness matrix`'s runner (harness/matrix/execute.py: `RealRunner`,
`CellResult`): env, `harness run` into results/<run-id>/, the numbers read back from verdict.json's summary.

Writes results/catalog-<id>/catalog.csv (a row as each cell ends, so a cut catalog keeps what it ran) and,
with --update-readme, the generated sections of scenarios/README.md. `--reanalyze` re-runs the analyzer on the
run folders the outcome table and the earlier runs link (after an analyzer change): their verdict.json is
rewritten in the current schema, so old run folders need no reader of their own here; a row keeps its run
folder, a row whose folder is gone stays as it is. `--add-runs` puts finished run folders (e.g. `harness run`s
of catalog scenarios) into the table. After any of these, the prose claims that no longer agree with the table
are printed.

Modules, one concern each: plan (catalog scenarios → cells), rows (a cell → its row; catalog.csv and the
outcome table's Markdown), readme (the README's sections), evidence (kept copies of run folders in
docs/runs/), claims (prose outcome claims checked against the rows they link); this module runs the command.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from harness.errors import HarnessError
from harness.matrix.catalog.evidence import KEPT_ROOT, refresh_copy
from harness.matrix.catalog.plan import SCENARIOS_DIR, Entry, discover, plan
from harness.matrix.catalog.readme import README, outcome_rows, update_readme
from harness.matrix.catalog.rows import csv_fields, display_path, outcome_row, render_table
from harness.matrix.execute import CellResult, Runner
from harness.paths import REPO_ROOT, results_dir
from harness.run.runfolder import SCENARIO_FILE
from harness.util.fsutil import atomic_write_text

if TYPE_CHECKING:
    from harness.run.experiment import RunOptions

CATALOG_CSV = "catalog.csv"
CELLS_MD = "cells.md"


def run_catalog(cells: Sequence[tuple[Entry, str]], runner: Runner, out_dir: Path,
                say: Callable[[str], None] = print, run_root: Path | None = None,
                on_row: Callable[[list[dict[str, str]]], None] | None = None,
                on_cell: Callable[[CellResult], None] | None = None) -> list[dict[str, str]]:
    """Run the cells one at a time; each row is appended to out_dir/catalog.csv as its cell ends (and
    `on_row(rows so far)` is called, e.g. to refresh the README; `on_cell(its CellResult)`, e.g. for --json)."""
    from harness.run.runfolder import new_run_id

    out_dir.mkdir(parents=True, exist_ok=True)
    root = run_root or results_dir()
    path = out_dir / CATALOG_CSV
    rows: list[dict[str, str]] = []
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=csv_fields())
        writer.writeheader()
        fh.flush()
        for i, (entry, version) in enumerate(cells, 1):
            say(f"[{i}/{len(cells)}] {entry.name} on LiteLLM {version}")
            run_dir = root / new_run_id(entry.name, version)
            while run_dir.exists():          # two cells within one second
                time.sleep(1.0)
                run_dir = root / new_run_id(entry.name, version)
            cell = runner(entry.path, version, run_dir)
            cell.scenario = entry.name      # as the row names it (a runner may name it by its file)
            row = outcome_row(entry, cell)
            rows.append(row)
            writer.writerow(row)
            fh.flush()
            if on_row is not None:
                on_row(rows)
            if on_cell is not None:
                on_cell(cell)
            say(f"    → {row['verdict']} (expected {row['expected']}, match {row['match']}): phantoms "
                f"{row['phantoms'] or '–'}, leaked ${row['leaked_usd'] or '–'}, {row['run_dir']}")
    return rows


def reanalyze_rows(readme: Path, entries: Sequence[Entry], console: Console, root: Path = REPO_ROOT,
                   on_cell: Callable[[CellResult], None] | None = None, which: str = "outcomes",
                   kept_root: Path = KEPT_ROOT) -> list[dict[str, str]]:
    """Re-run the analyzer on the run folders the outcome table (`which="earlier"`: the earlier runs) links
    and rebuild those rows (the runs themselves are not repeated). A rebuilt row keeps its run folder as the
    table wrote it and is judged against the scenario's expectation today (the catalog list's); the kept copy
    of a re-analysed folder is refreshed. Rows whose folder is gone (or is not a run folder) are kept as they
    are; `on_cell` sees each re-analysed cell."""
    from harness.analyze import analyze

    by_name = {e.name: e for e in entries}
    rows = []
    for row in outcome_rows(readme, which):
        run_dir = root / row["run_dir"] if row.get("run_dir") else None
        entry = by_name.get(row["scenario"])
        if run_dir is None or entry is None or not (run_dir / SCENARIO_FILE).exists():
            continue
        try:
            analyze(run_dir, plots=False)
        except HarnessError as exc:         # an unusable folder: its row stays as it is
            console.print(f"{entry.name} on {row['version']}: kept ({exc.line()})", markup=False)
            continue
        new = row_of_run(entry, row["version"], run_dir)
        new["run_dir"] = row["run_dir"]
        if on_cell is not None:
            on_cell(_cell_of(entry, row["version"], run_dir))
        copy = refresh_copy(run_dir, kept_root)
        console.print(f"{entry.name} on {row['version']}: {row.get('verdict')} → {new['verdict']}"
                      + (f" (kept copy {display_path(str(copy))} refreshed)" if copy else ""), markup=False)
        rows.append(new)
    return rows


def _cell_of(entry: Entry, version: str, run_dir: Path) -> CellResult:
    from harness.matrix.execute import read_run_folder

    cell = read_run_folder(CellResult(scenario=entry.name, version=version, run_dir=str(run_dir)), run_dir)
    cell.expected = entry.scenario.expectation_for(version)
    return cell


def row_of_run(entry: Entry, version: str, run_dir: Path) -> dict[str, str]:
    """The outcome row of a finished (analysed) run folder, judged against the scenario's expectation today."""
    return outcome_row(entry, _cell_of(entry, version, run_dir))


def rows_of_runs(run_dirs: Sequence[Path], entries: Sequence[Entry]) -> list[dict[str, str]]:
    """Outcome rows of finished run folders, e.g. of `harness run`s of catalog scenarios (`--add-runs`): read
    from their verdict.json as it is (not re-analysed). The scenario and version come from the verdict; a folder
    that is not an analysed run of a catalog scenario is an error naming it."""
    from harness.analyze.summary import read_summary

    by_name = {e.name: e for e in entries}
    rows = []
    for run_dir in run_dirs:
        summary = read_summary(run_dir)
        if summary is None or not summary.scenario or not summary.litellm_version:
            raise HarnessError(f"{run_dir}: no verdict.json naming its scenario and version",
                               f"run `harness analyze {run_dir}` first")
        entry = by_name.get(str(summary.scenario))
        if entry is None:
            raise HarnessError(f"{run_dir}: scenario {summary.scenario} is not a catalog scenario",
                               f"pick runs of: {', '.join(by_name)}")
        rows.append(row_of_run(entry, str(summary.litellm_version), run_dir))
    return rows


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def catalog_command(versions: str | None, scenarios: str | None, update: bool, schema_only: bool,
                    duration: float | None, console: Console, runner: Runner | None = None,
                    directory: Path = SCENARIOS_DIR, reanalyze: bool = False,
                    on_cell: Callable[[CellResult], None] | None = None,
                    on_out_dir: Callable[[Path], None] | None = None,
                    add_runs: Sequence[Path] = (), repeat: int = 1, options: RunOptions | None = None) -> int:
    """`harness catalog`: 0 when every cell that ran matches its expectation, 1 when one does not (with
    `repeat` > 1 or starved runs: by the repeats' agreement rule of harness/matrix/cells.py — the verdict the
    quiet repeats agree on; a contradiction seen only in starved runs is not failed). `options`: the
    `harness run` options of every cell (--exclusive).
    `on_cell` sees each cell's CellResult as it ends, `on_out_dir` the catalog folder once it is chosen
    (both for --json / --junit). `add_runs`: put these finished run folders into the outcome table (with
    `reanalyze` too, after the re-analysis)."""
    entries_all = discover(directory)
    readme = directory / README
    if reanalyze or add_runs:
        rows, earlier = [], []
        if reanalyze:
            rows = reanalyze_rows(readme, entries_all, console, on_cell=on_cell)
            earlier = reanalyze_rows(readme, entries_all, console, which="earlier")
        added = rows_of_runs(add_runs, entries_all)
        update_readme(readme, [*rows, *added], entries_all, earlier_rows=earlier)
        console.print(f"{len(rows) + len(earlier)} row(s) re-analysed, {len(added)} run(s) added in {readme}")
        _say_claims(readme, console)
        return 0 if all(r["match"] != "NO" for r in [*rows, *added]) else 1
    if schema_only:
        update_readme(readme, None, entries_all)
        console.print(f"schema and catalog list refreshed in {readme}")
        return 0
    if repeat < 1:
        raise HarnessError("--repeat must be at least 1", "pass --repeat 1 or more")
    cells = [c for c in plan(discover(directory, _split(scenarios)), _split(versions)) for _ in range(repeat)]
    if not cells:
        raise HarnessError("no (scenario, version) cell to run", "check --scenarios / --versions against the "
                           "scenarios' `versions:`")
    if runner is None:
        from harness.matrix.execute import RealRunner

        runner = RealRunner(console, duration=duration, options=options)
    out_dir = results_dir() / f"catalog-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    console.print(f"catalog: {len(cells)} run(s), one at a time → {out_dir / CATALOG_CSV}")
    if on_out_dir is not None:
        on_out_dir(out_dir)
    refresh = (lambda rows: update_readme(readme, rows, entries_all)) if update else None
    results: list[CellResult] = []

    def seen(cell: CellResult) -> None:
        results.append(cell)
        if on_cell is not None:
            on_cell(cell)

    rows = run_catalog(cells, runner, out_dir, say=console.print, on_row=refresh, on_cell=seen)
    if update:
        console.print(f"outcome table updated in {readme}")
        _say_claims(readme, console)
    console.print(render_table(rows), markup=False, highlight=False)
    return _judge_cells(results, out_dir, console)


def _judge_cells(results: list[CellResult], out_dir: Path, console: Console) -> int:
    """The gate over the runs by cell (the agreement rule); with repeats or starved runs, cells.md shows each
    cell's agreed verdict, its spread and what was set aside."""
    from harness.matrix.cells import gate_exit_code, group
    from harness.matrix.report import render_matrix_md

    cells = group(results)
    code = gate_exit_code(cells)
    if any(len(c.runs) > 1 or c.note for c in cells):
        atomic_write_text(out_dir / CELLS_MD, render_matrix_md(cells, out_dir, f"Catalog {out_dir.name}: cells",
                                                               "harness catalog", code, None,
                                                               [f"- {c.scenario} × {c.version}: {c.note}"
                                                                for c in cells if c.note]))
        console.print(f"cells (agreement rule, spread): {out_dir / CELLS_MD}", highlight=False)
    return code


def _say_claims(readme: Path, console: Console) -> None:
    """After the table changed: the prose's claims that no longer agree with it (claims.py), one line each."""
    from harness.matrix.catalog.claims import check_file

    problems = check_file(readme)
    for problem in problems:
        console.print(f"prose vs table: {problem}", markup=False)
    if problems:
        console.print(f"{len(problems)} claim(s) in {readme} to fix by hand (the table is right: it is the runs)",
                      markup=False)
