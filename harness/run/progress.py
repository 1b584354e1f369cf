"""`harness run`'s live table: one fact per line, a short label and its value, never wrapped.

Lines are cut with "…" rather than wrapped when the console is narrower than they are (rich would break a long
word mid-word; in a log file a wrapped line reads as two). At 80 columns nothing is cut for scenario names
up to ~45 characters and counts up to 10 million.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from harness.scenario.model import Scenario

# What stages may report through Stage.progress() (harness/run/stages.py)
FIELDS = ("requests", "ok", "budget_rejections", "errors", "max_counter_minus_db")


def _count(stats: dict[str, Any], key: str) -> str:
    return f"{int(stats.get(key) or 0):,}"


def progress_table(scenario: Scenario, phase: str, elapsed_s: float, planned_s: float,
                   stats: dict[str, Any]) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, style="bold")
    table.add_column(no_wrap=True, overflow="ellipsis")
    gap = stats.get("max_counter_minus_db")
    rows = [
        ("run", f"{scenario.name} · LiteLLM {scenario.litellm} × {scenario.replicas}"),
        (phase, f"{elapsed_s:,.0f} s of {planned_s:,.0f} s"),
        ("requests", f"{_count(stats, 'requests')} · ok {_count(stats, 'ok')} · budget rejections "
                     f"{_count(stats, 'budget_rejections')} · errors {_count(stats, 'errors')}"),
        ("gap", ("–" if gap is None else f"${gap:,.4f}") + " largest Redis counter − DB spend, one end user"),
    ]
    for label, value in rows:
        table.add_row(label, Text(value, no_wrap=True, overflow="ellipsis"))
    return table
