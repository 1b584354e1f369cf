"""Runs grouped into cells (one scenario × one version, N repeats) and matrix.csv reading/writing.

The agreement rule of a cell's repeats: the cell's verdict is the verdict its *quiet* repeats agree on
(every one of them: else MIXED, which matches no expectation); a repeat whose stack was starved (another
harness stack, or foreign CPU — harness/analyze/checks/contention.py) is set aside when quiet repeats exist,
and listed. A cell whose every run was starved is itself `starved`: its verdict is still shown, but the gate
does not fail on it — it says the cell must be rerun on a quiet machine. Runs whose starvation was not
recorded (older folders) count as quiet.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from harness.analyze.summary import INCONCLUSIVE
from harness.matrix.execute import ERROR, OK, CellResult

CSV_COLUMNS = ("scenario", "version", "repeat", "status", "verdict", "expected", "match", "phantoms",
               "phantom_users", "max_inflation_usd", "user_max_inflation_usd", "leaked_usd", "leaked_users",
               "requests", "req_per_s", "p50_s", "p99_s", "wall_s", "env_s", "run_dir", "reason", "starved",
               "foreign_cpu_share")


def append_csv(path: Path, result: CellResult) -> None:
    """Append one run to matrix.csv (header first when the file is new)."""
    new = not path.exists() or path.stat().st_size == 0
    row = result.row()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
        fh.flush()


def read_csv(path: Path) -> list[CellResult]:
    with path.open(newline="") as fh:
        return [CellResult.from_row(row) for row in csv.DictReader(fh)]


@dataclass
class Cell:
    """One scenario on one version: every repeat of it."""

    scenario: str
    version: str
    runs: list[CellResult] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return self.scenario, self.version

    @property
    def expected(self) -> str | None:
        return next((r.expected for r in self.runs if r.expected), None)

    @property
    def status(self) -> str:
        statuses = {r.status for r in self.runs}
        if OK in statuses:
            return OK
        return ERROR if ERROR in statuses else next(iter(statuses), ERROR)

    @property
    def verdicts(self) -> list[str]:
        return [_label(r) for r in self.runs]

    @property
    def starved(self) -> bool:
        """Every run that happened was starved: nothing quiet to judge by."""
        ran = [r for r in self.runs if r.status == OK]
        return bool(ran) and all(r.starved is True for r in ran)

    @property
    def judged_runs(self) -> list[CellResult]:
        """The runs the verdict stands on: the quiet ones, or every run when none was quiet."""
        quiet = [r for r in self.runs if r.starved is not True]
        return quiet or list(self.runs)

    @property
    def set_aside(self) -> list[CellResult]:
        """Starved runs left out because quiet runs exist."""
        judged = self.judged_runs
        return [r for r in self.runs if r not in judged]

    @property
    def verdict(self) -> str:
        """One label: the verdict every judged repeat agrees on, else MIXED with the counts."""
        counts: dict[str, int] = {}
        for v in (_label(r) for r in self.judged_runs):
            counts[v] = counts.get(v, 0) + 1
        if len(counts) == 1:
            return next(iter(counts))
        return "MIXED (" + ", ".join(f"{k} ×{n}" for k, n in counts.items()) + ")"

    @property
    def matches(self) -> bool | None:
        """False when any judged repeat contradicts the expectation; None when no repeat could run it."""
        checked = [r.matches for r in self.judged_runs if r.matches is not None]
        if not checked:
            return None
        return all(checked)

    @property
    def fails_gate(self) -> bool:
        """The release gate fails on this cell: a contradiction seen on a quiet machine."""
        return self.matches is False and not self.starved

    @property
    def note(self) -> str:
        """What the gate must say besides the verdict (starvation), or ""."""
        if self.starved:
            return ("every run was starved (another harness stack or foreign CPU): not judged by the gate — rerun "
                    "on a quiet machine (--exclusive)") if self.matches is False else "every run was starved"
        aside = self.set_aside
        if aside:
            return f"{len(aside)} starved repeat(s) set aside: " + ", ".join(_label(r) for r in aside)
        return ""

    @property
    def decided(self) -> bool:
        return any(r.outcome is not None for r in self.runs)

    def values(self, metric: str) -> list[float]:
        return [float(v) for r in self.runs if r.status == OK and r.verdict != INCONCLUSIVE
                and (v := getattr(r, metric)) is not None]

    def median(self, metric: str) -> float | None:
        vals = self.values(metric)
        return statistics.median(vals) if vals else None

    def spread(self, metric: str) -> float:
        vals = self.values(metric)
        return max(vals) - min(vals) if len(vals) > 1 else 0.0

    @property
    def reason(self) -> str:
        return next((r.reason for r in self.runs if r.status != OK or r.verdict == INCONCLUSIVE), "")


def _label(r: CellResult) -> str:
    return r.verdict if r.status == OK and r.verdict else r.status


def gate_exit_code(cells: list[Cell]) -> int:
    """The release gate: 1 when a cell contradicts its expectation on a quiet machine, else 0."""
    return 1 if any(c.fails_gate for c in cells) else 0


def group(results: list[CellResult]) -> list[Cell]:
    """Runs → cells, in the order cells first appear."""
    cells: dict[tuple[str, str], Cell] = {}
    for r in results:
        cells.setdefault((r.scenario, r.version), Cell(r.scenario, r.version)).runs.append(r)
    return list(cells.values())
