"""`harness catalog`: every catalog scenario on the versions it names, one run at a time, and the outcome table.

    harness catalog [--scenarios minimal,baseline] [--versions 1.84.0,1.108.7] [--update-readme] [--schema-only]

A catalog scenario is a YAML file in scenarios/; its optional `versions: [..]` names the LiteLLM versions it is
run on (default: its `litellm`). `--versions` keeps only those of the named versions (a scenario naming none of
them is skipped). Each run is one cell of `harness matrix`'s runner (harness/matrix/execute.py: `RealRunner`,
`CellResult`): env, `harness run` into results/<run-id>/, the numbers read back from verdict.json.

Writes results/catalog-<id>/catalog.csv (a row as each cell ends, so a cut catalog keeps what it ran) and,
with --update-readme, scenarios/README.md between the markers:

- `<!-- outcomes:start -->` … `<!-- outcomes:end -->`: the outcome table. Rows of (scenario, version) pairs that
  were not run this time are kept from the table already there, so a partial catalog refreshes only its rows.
- `<!-- catalog:start -->` … `<!-- catalog:end -->`: the list of catalog scenarios (name, issue, versions, what).
- `<!-- schema:start -->` … `<!-- schema:end -->`: the schema reference, generated from harness/scenario/model.py.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.paths import REPO_ROOT, results_dir
from harness.scenario.docs import schema_markdown
from harness.scenario.model import Scenario, load_scenario
from harness.util.fmt import md_cell

SCENARIOS_DIR = REPO_ROOT / "scenarios"
README = "README.md"
CATALOG_CSV = "catalog.csv"
MARKERS = {
    "outcomes": ("<!-- outcomes:start -->", "<!-- outcomes:end -->"),
    "catalog": ("<!-- catalog:start -->", "<!-- catalog:end -->"),
    "schema": ("<!-- schema:start -->", "<!-- schema:end -->"),
}
# the outcome table's columns: (CSV name, table heading)
COLUMNS: list[tuple[str, str]] = [
    ("scenario", "scenario"), ("issue", "issue"), ("version", "version"), ("expected", "expected"),
    ("verdict", "verdict"), ("match", "match"), ("phantoms", "phantom rejections"),
    ("leaked_usd", "leaked $ after drain"), ("deflated_usd", "deflated $ after drain"),
    ("first_phantom_s", "first phantom s"), ("run_dir", "run folder"),
]
CSV_EXTRA = ("status", "reason", "requests", "phantom_users", "leaked_users", "deflated_users",
             "max_inflation_usd", "wall_s")


# -- the catalog --------------------------------------------------------------------------------------
@dataclass
class Entry:
    """One catalog scenario file."""

    path: Path
    scenario: Scenario

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def issue(self) -> str:
        return self.scenario.issue or ""

    @property
    def versions(self) -> list[str]:
        return self.scenario.catalog_versions()


def discover(directory: Path = SCENARIOS_DIR, names: Sequence[str] | None = None) -> list[Entry]:
    """The catalog scenarios in `directory` (every *.yaml), sorted by file name; `names` (scenario names or
    file stems) keeps those, in the order given. An unknown name is an error naming the known ones."""
    entries = [Entry(path, load_scenario(path)) for path in sorted(directory.glob("*.yaml"))]
    if not names:
        return entries
    by_key: dict[str, Entry] = {}
    for entry in entries:
        by_key.setdefault(entry.name, entry)
        by_key.setdefault(entry.path.stem, entry)
    unknown = [n for n in names if n not in by_key]
    if unknown:
        raise HarnessError(f"no catalog scenario named {', '.join(unknown)} in {directory}",
                           f"pick from: {', '.join(e.name for e in entries)}")
    picked: list[Entry] = []
    for n in names:
        if all(by_key[n] is not e for e in picked):
            picked.append(by_key[n])
    return picked


def plan(entries: Iterable[Entry], versions: Sequence[str] | None = None) -> list[tuple[Entry, str]]:
    """(scenario, version) cells in catalog order; `versions` keeps only those versions."""
    keep = set(versions) if versions else None
    return [(e, v) for e in entries for v in e.versions if keep is None or v in keep]


# -- one outcome --------------------------------------------------------------------------------------
def _csv_usd(x: Any) -> str:
    return "" if x is None else f"{float(x):.4f}"


def _num(x: Any, fmt: str = "{:.1f}") -> str:
    return "" if x is None else fmt.format(float(x))


def outcome_row(entry: Entry, cell: Any) -> dict[str, str]:
    """A catalog.csv / table row from a matrix `CellResult` (plus what only verdict.json holds)."""
    run_dir = Path(cell.run_dir) if cell.run_dir else None
    first, deflated, deflated_users = None, None, None
    if run_dir is not None and (run_dir / "verdict.json").exists():
        try:
            ev = json.loads((run_dir / "verdict.json").read_text())
        except (OSError, ValueError):
            ev = {}
        first = ((ev.get("phantom") or {}).get("first") or {}).get("t_rel")
        drain = ev.get("drain") or {}
        if drain.get("ran"):
            deflated = drain.get("undercounted_total")
            deflated_users = drain.get("undercounted_users")
    matches = cell.matches
    verdict = cell.verdict if cell.status == "ok" else f"({cell.status})"
    return {
        "scenario": entry.name, "issue": entry.issue, "version": cell.version,
        "expected": cell.expected or entry.scenario.expectation_for(cell.version),
        "verdict": verdict or "", "match": {True: "yes", False: "NO", None: "n/a"}[matches],
        "phantoms": "" if cell.phantoms is None else str(cell.phantoms),
        "leaked_usd": _csv_usd(cell.leaked_usd), "deflated_usd": _csv_usd(deflated),
        "first_phantom_s": _num(first), "run_dir": _display(run_dir),
        "status": cell.status, "reason": (cell.reason or "").replace("\n", " ")[:300],
        "requests": "" if cell.requests is None else str(cell.requests),
        "phantom_users": "" if cell.phantom_users is None else str(cell.phantom_users),
        "leaked_users": "" if cell.leaked_users is None else str(cell.leaked_users),
        "deflated_users": "" if deflated_users is None else str(deflated_users),
        "max_inflation_usd": _csv_usd(cell.max_inflation_usd), "wall_s": _num(cell.wall_s),
    }


def _display(run_dir: Path | None) -> str:
    if run_dir is None:
        return ""
    try:
        return str(run_dir.resolve().relative_to(REPO_ROOT.resolve()))
    except ValueError:
        return str(run_dir)


# -- running ------------------------------------------------------------------------------------------
Runner = Callable[[Path, str, Path], Any]    # harness.matrix.execute.Runner: (scenario path, version, out dir)


def csv_fields() -> list[str]:
    return [c for c, _ in COLUMNS] + list(CSV_EXTRA)


def run_catalog(cells: Sequence[tuple[Entry, str]], runner: Runner, out_dir: Path,
                say: Callable[[str], None] = print, run_root: Path | None = None,
                on_row: Callable[[list[dict[str, str]]], None] | None = None) -> list[dict[str, str]]:
    """Run the cells one at a time; each row is appended to out_dir/catalog.csv as its cell ends (and
    `on_row(rows so far)` is called, e.g. to refresh the README)."""
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
            row = outcome_row(entry, cell)
            rows.append(row)
            writer.writerow(row)
            fh.flush()
            if on_row is not None:
                on_row(rows)
            say(f"    → {row['verdict']} (expected {row['expected']}, match {row['match']}): phantoms "
                f"{row['phantoms'] or '–'}, leaked ${row['leaked_usd'] or '–'}, {row['run_dir']}")
    return rows


# -- the README ---------------------------------------------------------------------------------------
def render_table(rows: Sequence[dict[str, str]]) -> str:
    head = "| " + " | ".join(h for _, h in COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(md_cell(str(r.get(c, ""))) for c, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of a table `render_table` wrote (the outcomes section of a README); unknown shapes give []."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        return []
    headings = [h.strip() for h in _split_row(lines[0])]
    by_heading = {h: c for c, h in COLUMNS}
    if any(h not in by_heading for h in headings):
        return []
    rows = []
    for line in lines[2:]:
        cells = _split_row(line)
        if len(cells) != len(headings):
            continue
        rows.append({by_heading[h]: v.strip().replace("\\|", "|") for h, v in zip(headings, cells, strict=True)})
    return rows


def _split_row(line: str) -> list[str]:
    inner = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    parts, cur, i = [], "", 0
    while i < len(inner):
        if inner[i] == "\\" and i + 1 < len(inner) and inner[i + 1] == "|":
            cur += "\\|"
            i += 2
            continue
        if inner[i] == "|":
            parts.append(cur)
            cur = ""
        else:
            cur += inner[i]
        i += 1
    parts.append(cur)
    return parts


def merge_rows(old: Sequence[dict[str, str]], new: Sequence[dict[str, str]],
               order: Sequence[tuple[str, str]] = ()) -> list[dict[str, str]]:
    """`new` rows replace `old` rows of the same (scenario, version); the rest of `old` is kept. Sorted by
    `order` ((scenario, version) pairs of the catalog), rows not in it last in their previous order."""
    merged: dict[tuple[str, str], dict[str, str]] = {(r["scenario"], r["version"]): dict(r) for r in old}
    for r in new:
        merged[(r["scenario"], r["version"])] = dict(r)
    rank = {key: i for i, key in enumerate(order)}
    previous = {key: i for i, key in enumerate(merged)}
    keys = sorted(merged, key=lambda k: (rank.get(k, len(rank)), previous[k]))
    return [merged[k] for k in keys]


def section(text: str, which: str) -> str | None:
    start, end = MARKERS[which]
    a, b = text.find(start), text.find(end)
    if a < 0 or b < a:
        return None
    return text[a + len(start):b]


def replace_section(text: str, which: str, body: str) -> str:
    """Put `body` between the markers of `which` (appended with its markers when they are missing)."""
    start, end = MARKERS[which]
    a, b = text.find(start), text.find(end)
    block = f"{start}\n{body.strip()}\n{end}"
    if a < 0 or b < a:
        return text.rstrip() + "\n\n" + block + "\n"
    return text[:a] + block + text[b + len(end):]


def catalog_markdown(entries: Sequence[Entry]) -> str:
    lines = ["| file | scenario | issue | versions | what | expected |", "|---|---|---|---|---|---|"]
    for e in entries:
        s = e.scenario
        expect = ", ".join(f"{v}: {s.expectation_for(v)}" for v in e.versions)
        lines.append(f"| [{e.path.name}]({e.path.name}) | {md_cell(e.name)} | {md_cell(e.issue)} | "
                     f"{', '.join(e.versions)} | {md_cell(' '.join(s.description.split()))} | {expect} |")
    return "\n".join(lines)


def update_readme(readme: Path, rows: Sequence[dict[str, str]] | None, entries: Sequence[Entry]) -> None:
    """Refresh the catalog list and the schema; merge `rows` into the outcome table (None: leave it)."""
    text = readme.read_text() if readme.exists() else "# Scenarios\n"
    text = replace_section(text, "catalog", catalog_markdown(entries))
    text = replace_section(text, "schema", schema_markdown())
    if rows is not None:
        old = parse_table(section(text, "outcomes") or "")
        order = [(e.name, v) for e in entries for v in e.versions]
        text = replace_section(text, "outcomes", render_table(merge_rows(old, rows, order)))
    readme.write_text(text)


# -- the command --------------------------------------------------------------------------------------
def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def reanalyze_rows(readme: Path, entries: Sequence[Entry], console: Any) -> list[dict[str, str]]:
    """Re-run the analyzer on the run folders the outcome table links and rebuild those rows (after an analyzer
    change; the runs themselves are not repeated). Rows whose folder is gone are kept as they are."""
    from harness.analyze import analyze
    from harness.matrix.execute import CellResult, read_run_folder

    by_name = {e.name: e for e in entries}
    rows = []
    for row in parse_table(section(readme.read_text(), "outcomes") or ""):
        run_dir = REPO_ROOT / row.get("run_dir", "") if row.get("run_dir") else None
        entry = by_name.get(row["scenario"])
        if run_dir is None or entry is None or not (run_dir / "verdict.json").exists():
            continue
        analyze(run_dir, plots=False)
        cell = read_run_folder(CellResult(scenario=entry.name, version=row["version"]), run_dir)
        new = outcome_row(entry, cell)
        console.print(f"{entry.name} on {row['version']}: {row.get('verdict')} → {new['verdict']}", markup=False)
        rows.append(new)
    return rows


def catalog_command(versions: str | None, scenarios: str | None, update: bool, schema_only: bool,
                    duration: float | None, console: Any, runner: Runner | None = None,
                    directory: Path = SCENARIOS_DIR, reanalyze: bool = False) -> int:
    """`harness catalog`: 0 when every cell that ran matches its expectation, 1 when one does not."""
    entries_all = discover(directory)
    readme = directory / README
    if reanalyze:
        rows = reanalyze_rows(readme, entries_all, console)
        update_readme(readme, rows, entries_all)
        console.print(f"{len(rows)} row(s) re-analysed in {readme}")
        return 0 if all(r["match"] != "NO" for r in rows) else 1
    if schema_only:
        update_readme(readme, None, entries_all)
        console.print(f"schema and catalog list refreshed in {readme}")
        return 0
    cells = plan(discover(directory, _split(scenarios)), _split(versions))
    if not cells:
        raise HarnessError("no (scenario, version) cell to run", "check --scenarios / --versions against the "
                           "scenarios' `versions:`")
    if runner is None:
        from harness.matrix.execute import RealRunner

        runner = RealRunner(console, duration=duration)
    out_dir = results_dir() / f"catalog-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    console.print(f"catalog: {len(cells)} run(s), one at a time → {out_dir / CATALOG_CSV}")
    refresh = (lambda rows: update_readme(readme, rows, entries_all)) if update else None
    rows = run_catalog(cells, runner, out_dir, say=console.print, on_row=refresh)
    if update:
        console.print(f"outcome table updated in {readme}")
    console.print(render_table(rows), markup=False, highlight=False)
    return 0 if all(r["match"] != "NO" for r in rows) else 1
