"""One outcome row per (scenario, version): built from a matrix `CellResult`, written to catalog.csv, shown as
the outcome table (Markdown) and read back from it.

In the README each row carries HTML anchors, `#<scenario>-<version>` (current rows only) and `#<run-id>` (the
run folder's name), so prose can link the row that backs a claim (harness/matrix/catalog/claims.py checks
those links); a run folder with a kept copy (evidence.py) is a link to it. Both are read back as plain values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
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


def row_anchor(scenario: str, version: str) -> str:
    """The anchor of the current row of a cell: `<scenario>-<version>`."""
    return f"{scenario}-{version}"


def run_id(run_dir: str) -> str:
    """The run id of a table's run folder (its last path part); "" when there is none."""
    return Path(run_dir).name if run_dir else ""


def anchor_tag(name: str) -> str:
    return f'<a id="{name}"></a>'


def render_table(rows: Sequence[dict[str, str]], anchors: bool = False,
                 run_link: Callable[[str], str | None] | None = None) -> str:
    """The Markdown table of `rows`. `anchors`: the version cell starts with the row's anchors (the cell's
    `#<scenario>-<version>` unless the row is an earlier run, `row["earlier"]`, and `#<run-id>`); `run_link`:
    a run folder → the link target of its kept copy (None: plain text)."""
    head = "| " + " | ".join(h for _, h in COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = []
    for r in rows:
        cells = {c: md_cell(str(r.get(c, ""))) for c, _ in COLUMNS}
        if anchors:
            names = [] if r.get("earlier") else [row_anchor(r.get("scenario", ""), r.get("version", ""))]
            names += [run_id(r.get("run_dir", ""))] if r.get("run_dir") else []
            cells["version"] = "".join(anchor_tag(n) for n in names) + cells["version"]
        target = run_link(r.get("run_dir", "")) if run_link is not None and r.get("run_dir") else None
        if target:
            cells["run_dir"] = f"[{cells['run_dir']}]({target})"
        body.append("| " + " | ".join(cells[c] for c, _ in COLUMNS) + " |")
    return "\n".join([head, sep, *body])


ANCHOR_RE = re.compile(r'<a id="[^"]*"></a>')
LINK_RE = re.compile(r"^\[(?P<text>[^\]]*)\]\([^)]*\)$")


def _plain(column: str, value: str) -> str:
    """A cell as the row holds it: without the anchors `render_table` added, a run folder link as its text."""
    value = ANCHOR_RE.sub("", value).strip()
    link = LINK_RE.match(value) if column == "run_dir" else None
    return link.group("text") if link else value


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
        rows.append({by_heading[h]: _plain(by_heading[h], v.strip().replace("\\|", "|"))
                     for h, v in zip(headings, cells, strict=True)})
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


def run_time(run_dir: str) -> str:
    """When a run folder was made, from its run id (`YYYYMMDD-HHMMSS-…`); "" when the name does not say."""
    m = re.match(r"\d{8}-\d{6}", run_id(run_dir))
    return m.group(0) if m else ""


def merge_rows(old: Sequence[dict[str, str]], new: Sequence[dict[str, str]],
               order: Sequence[tuple[str, str]] = (), earlier: list[dict[str, str]] | None = None
               ) -> list[dict[str, str]]:
    """`new` rows replace `old` rows of the same (scenario, version); the rest of `old` is kept. Sorted by
    `order` ((scenario, version) pairs of the catalog), rows not in it last in their previous order.

    When the two rows of a cell are different runs (different run folders), the later run (by run id) is the
    cell's row and the other one is appended to `earlier` (the README's earlier runs): a row is never dropped
    because its cell was run again, and an older run added afterwards does not displace a newer one."""
    merged: dict[tuple[str, str], dict[str, str]] = {(r["scenario"], r["version"]): dict(r) for r in old}
    for r in new:
        key = (r["scenario"], r["version"])
        prev = merged.get(key)
        if prev is not None and prev.get("run_dir") and r.get("run_dir") and run_id(prev["run_dir"]) != run_id(
                r["run_dir"]):
            t_new, t_prev = run_time(r["run_dir"]), run_time(prev["run_dir"])
            if t_new and t_prev and t_new < t_prev:
                if earlier is not None:
                    earlier.append(dict(r))
                continue
            if earlier is not None:
                earlier.append(prev)
        merged[key] = dict(r)
    rank = {key: i for i, key in enumerate(order)}
    previous = {key: i for i, key in enumerate(merged)}
    keys = sorted(merged, key=lambda k: (rank.get(k, len(rank)), previous[k]))
    return [merged[k] for k in keys]
