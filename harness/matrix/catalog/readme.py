"""scenarios/README.md's generated sections, between their markers (the hand-written text around them is kept):

- `<!-- outcomes:start -->` … `<!-- outcomes:end -->`: the outcome table. Rows of (scenario, version) pairs that
  were not run this time are kept from the table already there, so a partial catalog refreshes only its rows.
- `<!-- catalog:start -->` … `<!-- catalog:end -->`: the list of catalog scenarios (name, issue, versions, what).
- `<!-- schema:start -->` … `<!-- schema:end -->`: the schema reference (harness/scenario/docs.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.matrix.catalog.plan import Entry
from harness.matrix.catalog.rows import merge_rows, parse_table, render_table
from harness.scenario.docs import schema_markdown
from harness.util.fmt import md_cell

README = "README.md"
MARKERS = {
    "outcomes": ("<!-- outcomes:start -->", "<!-- outcomes:end -->"),
    "catalog": ("<!-- catalog:start -->", "<!-- catalog:end -->"),
    "schema": ("<!-- schema:start -->", "<!-- schema:end -->"),
}


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


def outcome_rows(readme: Path) -> list[dict[str, str]]:
    """The rows of the outcome table in `readme` ([] when it has none)."""
    return parse_table(section(readme.read_text(), "outcomes") or "") if readme.exists() else []


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
