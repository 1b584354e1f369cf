"""The run context: the one object `harness run` threads through its stages (Jepsen's test map).

Built once the stack is up; every stage reads what it needs from it and writes what it learns to `meta`
(meta.json) or to the run folder. The few times stages share (`t_load_start`, `t_load_end`) live here too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.console import Console

from harness.run.runfolder import MetaWriter
from harness.scenario.model import Scenario
from harness.stack.base import Endpoints, Stack

Outcome = Literal["running", "interrupted", "failed"]


class Clock:
    """Wall time and waiting, injectable so a test runs a 60 s load plus a 25 s drain in no time."""

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


@dataclass
class RunContext:
    scenario: Scenario
    run_id: str
    run_dir: Path
    stack: Stack
    endpoints: Endpoints
    meta: MetaWriter
    console: Console
    clock: Clock
    processes: int = 1                  # Locust worker processes
    outcome: Outcome = "running"        # interrupted: Ctrl-C/SIGTERM (the drain still runs); failed: an error
    t_load_start: float | None = None   # None until a stage asks for it (load_started)
    t_load_end: float | None = None     # set by the load stage when Locust has exited

    def load_started(self) -> float:
        """The load's start time (epoch s), fixed by the first stage that asks: the nemesis schedules its
        windows from it and the load starts at it, whichever of them starts first."""
        if self.t_load_start is None:
            self.t_load_start = self.clock.time()
            self.meta.update(t_load_start=self.t_load_start, status="load")
        return self.t_load_start

    def say(self, text: str) -> None:
        """One line for the user; soft-wrapped so a path is never broken mid-word in a log file."""
        self.console.print(text, soft_wrap=True, highlight=False)
