"""One outcome row per (scenario, version): built from a matrix `CellResult`, written to catalog.csv, shown as
the outcome table (Markdown) and read back from it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.matrix.catalog.plan import Entry
from harness.matrix.execute import OK, CellResult
from harness.paths import REPO_ROOT
from harness.util.fmt import md_cell

# the outcome table's columns: (CSV name, table heading)
COLUMNS: list[tuple[str, str]] = [
    ("scenario", "scenario"), ("issue", "issue"), ("version", "version"), ("expected", "expected"),
    ("verdict", "verdict"), ("match", "match"), ("phantoms", "phantom rejections"),
    ("leaked_usd", "leaked $ after drain"), ("deflated_usd", "deflated $ after drain"),
    ("first_phantom_s", "first phantom s"), ("run_dir", "run folder"),
]
CSV_EXTRA = ("status", "reason", "requests", "phantom_users", "leaked_users", "deflated_users",
             "max_inflation_usd", "wall_s")


def csv_fields() -> list[str]:
    return [c for c, _ in COLUMNS] + list(CSV_EXTRA)


def _csv_usd(x: float | None) -> str:
    return "" if x is None else f"{float(x):.4f}"


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "" if x is None else fmt.format(float(x))


def _int(x: int | None) -> str:
    return "" if x is None else str(x)


def outcome_row(entry: Entry, cell: CellResult) -> dict[str, str]:
    """A catalog.csv / table row from a matrix `CellResult` (filled from the run's summary)."""
    verdict = cell.verdict if cell.status == OK else f"({cell.status})"
    return {
        "scenario": entry.name, "issue": entry.issue, "version": cell.version,
        "expected": cell.expected or entry.scenario.expectation_for(cell.version),
        "verdict": verdict or "", "match": {True: "yes", False: "NO", None: "n/a"}[cell.matches],
        "phantoms": _int(cell.phantoms), "leaked_usd": _csv_usd(cell.leaked_usd),
        "deflated_usd": _csv_usd(cell.deflated_usd), "first_phantom_s": _num(cell.first_phantom_s),
        "run_dir": display_path(cell.run_dir), "status": cell.status,
        "reason": (cell.reason or "").replace("\n", " ")[:300], "requests": _int(cell.requests),
        "phantom_users": _int(cell.phantom_users), "leaked_users": _int(cell.leaked_users),
        "deflated_users": _int(cell.deflated_users), "max_inflation_usd": _csv_usd(cell.max_inflation_usd),
        "wall_s": _num(cell.wall_s),
    }


def display_path(run_dir: str) -> str:
    """A run folder as the table links it: relative to the repository when inside it."""
    if not run_dir:
        return ""
    try:
        return str(Path(run_dir).resolve().relative_to(REPO_ROOT.resolve()))
    except ValueError:
        return run_dir


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
