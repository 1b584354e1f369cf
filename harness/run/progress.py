"""`harness run`'s progress: a live table in a terminal, a plain line every few seconds in a log.

The live table: one fact per line, a short label and its value, never wrapped. Lines are cut with "…" rather
than wrapped when the console is narrower than they are (rich would break a long word mid-word; in a log file a
wrapped line reads as two). At 80 columns nothing is cut for scenario names up to ~45 characters and counts up
to 10 million.

In a log (the console is not a terminal: CI, `… 2> run.log`, `--json`'s stderr) rich's Live would print the
table once, when the load is over; `PlainProgress` prints one line every `PLAIN_EVERY_S` seconds instead —
phase, elapsed of planned, requests, rejections — so a CI log shows the run moving. `run`, `matrix`, `bisect`
and `catalog` all run their loads through `harness.run.experiment`, so all of them get it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from rich.console import Console
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


PLAIN_EVERY_S = 5.0


def progress_line(scenario: Scenario, phase: str, elapsed_s: float, planned_s: float,
                  stats: dict[str, Any] | None = None) -> str:
    """One plain line for a log: which run, the phase and its clock, and (when known) the request counts."""
    parts = [f"[{scenario.name} · LiteLLM {scenario.litellm} × {scenario.replicas}] {phase} "
             f"{elapsed_s:,.0f} s of {planned_s:,.0f} s"]
    if stats:
        parts.append(f"requests {_count(stats, 'requests')} · ok {_count(stats, 'ok')} · budget rejections "
                     f"{_count(stats, 'budget_rejections')} · errors {_count(stats, 'errors')}")
        gap = stats.get("max_counter_minus_db")
        if gap is not None:
            parts.append(f"largest counter − DB ${gap:,.2f}")
    return " · ".join(parts)


class _Clock(Protocol):
    def time(self) -> float: ...


class PlainProgress:
    """Prints `line()` on `console` at most once every `every_s` seconds of `clock` time (the first call prints
    unless `quiet_first`; `force` prints regardless, e.g. the final figures)."""

    def __init__(self, console: Console, clock: _Clock, every_s: float = PLAIN_EVERY_S,
                 quiet_first: bool = False) -> None:
        """`quiet_first`: the first line comes after `every_s` (the caller has just said what starts)."""
        self.console = console
        self.clock = clock
        self.every_s = every_s
        self.next_at: float | None = clock.time() + every_s if quiet_first else None

    def tick(self, line: Callable[[], str], force: bool = False) -> bool:
        now = self.clock.time()
        if not force and self.next_at is not None and now < self.next_at:
            return False
        self.console.print(line(), soft_wrap=True, highlight=False, markup=False)
        self.next_at = now + self.every_s
        return True
