"""What a check is (the model: Jepsen's checker), and `check_safe`, which turns a crashing check into a blocker.

A check is one class in its own module under harness/analyze/checks/, registered by one line in
`harness.analyze.checks.CHECKS`. It reads the analysis context (and the results of the checks registered
before it) and returns a `CheckResult`:

- `findings`: what counts as the bug. They decide REPRODUCED only when the scenario's `checks` name the
  check's `counted_as` word; else they become notes ("not counted by this scenario's checks: …").
- `blockers`: why nothing can be concluded (INCONCLUSIVE unless a counted finding exists; then notes).
- `vetoes`: blockers that also void every finding — the evidence all findings stand on is missing (no ground
  truth): INCONCLUSIVE even when a counted check found something; the findings become notes.
- `notes`: anything else worth saying; `passed`: what the check verified when it found nothing (the reasons
  of a NOT REPRODUCED verdict).
- `evidence`: its verdict.json section (key `section`); `summary`: its fields of the flat
  `harness.analyze.summary.Summary` (unknown field names are refused); `data`: its typed result, for the
  checks after it and its plot.

A check may own one picture (`picture`, drawn by `plot`) and its rows of report.md's evidence table
(`report_rows`). The verdict is a generic merge of the results (harness/analyze/verdict.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from harness.analyze.context import Context
from harness.analyze.summary import Summary, Value

T = TypeVar("T")


@dataclass
class CheckResult:
    findings: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)
    vetoes: list[str] = field(default_factory=list)     # blockers that void every finding too
    notes: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    evidence: dict[str, Any] | None = None
    summary: Mapping[str, Value] = field(default_factory=dict)
    data: Any = None
    error: str | None = None          # the check raised (check_safe): this is why


Results = Mapping[str, CheckResult]


class Check(ABC):
    name: ClassVar[str]
    counted_as: ClassVar[str | None] = None    # the scenario `checks` word that makes its findings the bug
    section: ClassVar[str | None] = None       # its verdict.json section
    picture: ClassVar[str | None] = None       # the PNG it draws (`plot`)
    picture_alt: ClassVar[str] = ""

    @abstractmethod
    def run(self, ctx: Context, done: Results) -> CheckResult:
        """Judge the run; `done` holds the results of the checks registered before this one."""

    def plot(self, ctx: Context, done: Results, path: Path) -> None:
        """Draw `picture` into `path` (only called when `picture` is set)."""
        raise NotImplementedError

    def report_rows(self, section: dict[str, Any]) -> list[tuple[str, str]]:
        """Its rows of report.md's evidence table, from its verdict.json section."""
        return []


class PrerequisiteFailed(Exception):
    """A check needs the result of an earlier check that failed."""


def prerequisite(done: Results, name: str, kind: type[T]) -> T:
    """The typed result (`data`) of the earlier check `name`; PrerequisiteFailed when it has none."""
    result = done.get(name)
    if result is None or not isinstance(result.data, kind):
        raise PrerequisiteFailed(f"it needs the {name} check, which did not run or failed")
    return result.data


def check_safe(check: Check, ctx: Context, done: Results) -> CheckResult:
    """Run `check`; a check that raises (or returns summary fields the Summary does not have, or of another
    type) becomes a blocker naming the error — INCONCLUSIVE unless another check found the bug — never a pass."""
    try:
        result = check.run(ctx, done)
        unknown = sorted(set(result.summary) - set(Summary.model_fields))
        if unknown:
            raise ValueError(f"summary field(s) {', '.join(unknown)} are not in harness.analyze.summary.Summary")
        Summary.model_validate(result.summary)          # and of the declared types (pydantic ValidationError)
    except PrerequisiteFailed as exc:
        error = f"the {check.name} check could not run: {exc}"
    except Exception as exc:  # noqa: BLE001 — any bug in a check must surface as INCONCLUSIVE, not a crash or a pass
        what = " ".join(str(exc).split())        # one line (a pydantic error spans several)
        error = f"the {check.name} check failed ({type(exc).__name__}: {what}): nothing it judges can be concluded"
    else:
        return result
    return CheckResult(blockers=[error], evidence={"error": error} if check.section else None, error=error)
