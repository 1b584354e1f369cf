"""Errors the CLI turns into one clear line and an exit code."""

from __future__ import annotations


class HarnessError(Exception):
    """Bad input or an environment problem: one line naming the problem and the fix, exit 2."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.problem} — {self.fix}" if self.fix else self.problem


class StackError(HarnessError):
    """The stack could not be brought up (a process died, a health check timed out)."""


class Interrupted(Exception):
    """Raised from a SIGTERM handler so that `finally` blocks tear everything down."""
