"""The fault-kind registry: every `faults[].kind` a scenario may name, with its typed params and its behaviour.

A fault kind is ONE class plus ONE registration line in a family module under harness/nemesis/kinds/ (the
shape of Toxiproxy's toxics/): the class is the kind's params model (a pydantic model, `extra="forbid"`,
every field with a description; its docstring's first line is the kind's label) and carries the behaviour
(`start`/`end`); the line is `register(FaultKindSpec("redis_down", RedisDown, needs=RedisFaults, ...))`.
A new family module is one more import line in harness/nemesis/kinds/__init__.py.

Readers (contracts other modules rely on):

- `fault_kind(name) -> FaultKindSpec | None`: None for a kind this code does not know (the analyzer re-reads
  old run folders and must not crash on them). A spec has `.name`, `.params` (the model), `.needs` (the stack
  capability protocol from harness/stack/base.py, or None: mock_* kinds go to the mock's control API),
  `.one_shot` (an action at `at_s`, no window), `.target(window) -> str` (faults.csv's `target` column:
  "mock", "redis", "postgres" or the replica index), `.label` (one line) and `.description` (the docstring),
  `.parse(params) -> FaultParams` (raises pydantic.ValidationError).
- `fault_kinds() -> list[FaultKindSpec]`, `known_kinds() -> list[str]`: every registered kind, in
  registration order (the schema docs' order).
- `required_capabilities(windows) -> list[(index, spec, capability)]`: what each window needs of the stack.
- `check_capabilities(windows, stack) -> None`: HarnessError (one line: window index, kind, missing
  capability, backend) when `stack` (an instance, not started is fine) lacks one. Call it before anything
  starts (no run folder).

The scenario loader (harness/scenario/model.py) validates each window's params with `.parse`; the nemesis
(harness/nemesis/schedule.py) schedules and records and calls `start`/`end`/`final_reset`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from harness.errors import HarnessError
from harness.stack.base import Stack

Target = Literal["mock", "redis", "replica", "postgres"]


class MockFaults(Protocol):
    """The mock LLM's run-time fault control (harness.mockllm.MockControl)."""

    def set_faults(self, patch: dict[str, Any]) -> dict[str, Any]: ...

    def get_faults(self) -> dict[str, Any]: ...


class Window(Protocol):
    """What the registry reads of a scenario fault window (harness.scenario.model.FaultWindow)."""

    kind: str
    at_s: float
    duration_s: float
    target: int | str | None
    params: dict[str, Any]


@dataclass
class FaultRun:
    """What a kind's start/end get: the stack, the mock's control, the window's target, and `state` kept from
    start to end (e.g. the mock settings to restore)."""

    stack: Any                                  # checked against the spec's `needs` before the run
    target: int | str | None
    mock: Callable[[], MockFaults]              # the mock's control API, created on first use
    mock_lock: threading.Lock = field(default_factory=threading.Lock)
    state: dict[str, Any] = field(default_factory=dict)


class FaultParams(BaseModel):
    """Base of every kind: the params model (unknown keys refused) and the kind's behaviour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def start(self, run: FaultRun) -> str:
        """Do the fault (a one-shot kind: the whole action); returns the note for faults.csv."""
        raise NotImplementedError

    def end(self, run: FaultRun) -> str:
        """Undo it at the end of the window (never called for one-shot kinds); returns the note."""
        return ""

    @staticmethod
    def final_reset(stack: Any) -> None:
        """Called once at the nemesis's stop() per distinct function among the kinds that ran: a safety net
        that leaves the stack without a fault even when an `end` failed (the Redis link faults clear it)."""
        return None


@dataclass(frozen=True)
class FaultKindSpec:
    """One registered fault kind (see the module docstring)."""

    name: str
    params: type[FaultParams]
    needs: type | None          # a capability protocol of harness/stack/base.py; None: the mock's control API
    on: Target                  # what it hits
    one_shot: bool = False      # an action at `at_s` (its end event is written when it completed)

    @property
    def description(self) -> str:
        return " ".join((self.params.__doc__ or "").split())

    @property
    def label(self) -> str:
        """The first sentence of the description."""
        text = self.description
        return text.split(". ", 1)[0].rstrip(".")

    def target(self, window: Window) -> str:
        """faults.csv's `target`: "mock", "redis", "postgres" or the replica index."""
        return str(window.target) if self.on == "replica" else self.on

    def parse(self, params: Mapping[str, Any]) -> FaultParams:
        """The window's params, validated (pydantic.ValidationError on a typo, a bad value, a missing field)."""
        return self.params.model_validate(dict(params))


_REGISTRY: dict[str, FaultKindSpec] = {}


def register(spec: FaultKindSpec) -> FaultKindSpec:
    """Add a kind (the one registration line of a kind module)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"fault kind {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _loaded() -> dict[str, FaultKindSpec]:
    import harness.nemesis.kinds  # noqa: F401 - importing the families registers their kinds

    return _REGISTRY


def fault_kind(name: str) -> FaultKindSpec | None:
    return _loaded().get(name)


def fault_kinds() -> list[FaultKindSpec]:
    return list(_loaded().values())


def known_kinds() -> list[str]:
    return list(_loaded())


def required_capabilities(windows: Iterable[Window]) -> list[tuple[int, FaultKindSpec, type]]:
    """(window index, kind, capability protocol) for every window whose kind needs a stack capability."""
    out = []
    for index, window in enumerate(windows):
        spec = fault_kind(window.kind)
        if spec is not None and spec.needs is not None:
            out.append((index, spec, spec.needs))
    return out


def check_capabilities(windows: Iterable[Window], stack: Stack) -> None:
    """Refuse (HarnessError) a schedule with a window `stack` cannot do; nothing has started yet."""
    for index, spec, needs in required_capabilities(windows):
        if not isinstance(stack, needs):
            raise HarnessError(
                f"faults.{index}: kind {spec.name} needs the stack capability {needs.__name__}, "
                f"which the {stack.backend} backend does not have",
                "remove that fault window or run on a backend that has it (e.g. --backend local)")
