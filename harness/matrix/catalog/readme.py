"""scenarios/README.md's generated sections, between their markers (the hand-written text around them is kept):

- `<!-- outcomes:start -->` … `<!-- outcomes:end -->`: the outcome table. Rows of (scenario, version) pairs that
  were not run this time are kept from the table already there, so a partial catalog refreshes only its rows.
- `<!-- earlier:start -->` … `<!-- earlier:end -->`: earlier runs, the rows a later run of the same cell replaced
  in the outcome table (kept so that prose naming both runs can link both; same columns).
- `<!-- catalog:start -->` … `<!-- catalog:end -->`: the list of catalog scenarios (name, issue, versions, what).
- `<!-- schema:start -->` … `<!-- schema:end -->`: the schema reference (harness/scenario/docs.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.matrix.catalog.evidence import KEPT_ROOT, kept_copy
from harness.matrix.catalog.plan import Entry
from harness.matrix.catalog.rows import merge_rows, parse_table, render_table, run_id, run_time
from harness.scenario.docs import schema_markdown
from harness.util.fmt import md_cell

README = "README.md"
MARKERS = {
    "outcomes": ("<!-- outcomes:start -->", "<!-- outcomes:end -->"),
    "earlier": ("<!-- earlier:start -->", "<!-- earlier:end -->"),
    "catalog": ("<!-- catalog:start -->", "<!-- catalog:end -->"),
    "schema": ("<!-- schema:start -->", "<!-- schema:end -->"),
}


def section(text: str, which: str) -> str | None:
    start, end = MARKERS[which]
    a, b = text.find(start), text.find(end)
    if a < 0 or b < a:
        return None
    return text[a + len(start):b]


def replace_section(text: str, which: str, body: str, after: str | None = None) -> str:
    """Put `body` between the markers of `which`. When they are missing, the block goes right after the
    section `after` (if that one is there), else at the end."""
    start, end = MARKERS[which]
    a, b = text.find(start), text.find(end)
    block = f"{start}\n{body.strip()}\n{end}"
    if a < 0 or b < a:
        anchor = text.find(MARKERS[after][1]) if after else -1
        if anchor >= 0:
            cut = anchor + len(MARKERS[after][1]) if after else 0
            return text[:cut] + "\n\n" + block + text[cut:]
        return text.rstrip() + "\n\n" + block + "\n"
    return text[:a] + block + text[b + len(end):]


def outcome_rows(readme: Path, which: str = "outcomes") -> list[dict[str, str]]:
    """The rows of the outcome table in `readme` (`which="earlier"`: of the earlier runs; [] when none)."""
    return parse_table(section(readme.read_text(), which) or "") if readme.exists() else []


def run_link(readme: Path, kept_root: Path = KEPT_ROOT) -> Callable[[str], str | None]:
    """A run folder → the link to its kept copy, relative to the README (None when it has no copy)."""

    def link(run_dir: str) -> str | None:
        copy = kept_copy(run_dir, kept_root)
        return None if copy is None else os.path.relpath(copy, readme.parent) + "/"
    return link


def catalog_markdown(entries: Sequence[Entry]) -> str:
    lines = ["| file | scenario | issue | versions | what | expected |", "|---|---|---|---|---|---|"]
    for e in entries:
        s = e.scenario
        expect = ", ".join(f"{v}: {s.expectation_for(v)}" for v in e.versions)
        lines.append(f"| [{e.path.name}]({e.path.name}) | {md_cell(e.name)} | {md_cell(e.issue)} | "
                     f"{', '.join(e.versions)} | {md_cell(' '.join(s.description.split()))} | {expect} |")
    return "\n".join(lines)


def update_readme(readme: Path, rows: Sequence[dict[str, str]] | None, entries: Sequence[Entry],
                  earlier_rows: Sequence[dict[str, str]] = (), kept_root: Path = KEPT_ROOT) -> None:
    """Refresh the catalog list and the schema; merge `rows` into the outcome table (None: leave it) and
    `earlier_rows` (re-analysed rows of the earlier runs) into the earlier runs. A row a later run replaces
    moves to the earlier runs; run folders with a kept copy link to it."""
    text = readme.read_text() if readme.exists() else "# Scenarios\n"
    text = replace_section(text, "catalog", catalog_markdown(entries))
    text = replace_section(text, "schema", schema_markdown())
    if rows is not None:
        old = parse_table(section(text, "outcomes") or "")
        order = [(e.name, v) for e in entries for v in e.versions]
        replaced: list[dict[str, str]] = []
        current = merge_rows(old, rows, order, earlier=replaced)
        link = run_link(readme, kept_root)
        text = replace_section(text, "outcomes", render_table(current, anchors=True, run_link=link))
        earlier = _earlier(parse_table(section(text, "earlier") or ""), [*replaced, *earlier_rows], current, order)
        if earlier or section(text, "earlier") is not None:
            text = replace_section(text, "earlier", render_table([dict(r, earlier="yes") for r in earlier],
                                                                 anchors=True, run_link=link), after="outcomes")
    readme.write_text(text)


def _earlier(old: Sequence[dict[str, str]], new: Sequence[dict[str, str]], current: Sequence[dict[str, str]],
             order: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """The earlier runs: one row per run folder (a newer row of the same folder replaces it), none that is
    a current row, in catalog order and then by run time."""
    by_run: dict[str, dict[str, str]] = {}
    for r in [*old, *new]:
        if r.get("run_dir"):
            by_run[run_id(r["run_dir"])] = {k: v for k, v in r.items() if k != "earlier"}
    for r in current:
        by_run.pop(run_id(r.get("run_dir", "")), None)
    rank = {key: i for i, key in enumerate(order)}
    return sorted(by_run.values(), key=lambda r: (rank.get((r["scenario"], r["version"]), len(rank)),
                                                  run_time(r["run_dir"]), r["run_dir"]))
