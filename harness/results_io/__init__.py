"""Machine-readable results of `harness run|analyze|matrix|catalog|bisect`: `--json` and `--junit FILE`.

    out = ResultsOutput(json=True, junit=Path("out.xml"))   # HarnessError for an unwritable --junit, up front
    with out.capture():                                     # --json: everything else goes to stderr
        code = <the command>
    out.emit(run_results("run", run_dir, code))             # one JSON object on stdout, the JUnit file

Modules: models (the pydantic models, the one definition of the JSON and of docs/results-schema.json), junit
(the XML). `python -m harness.results_io` prints the schema; a test compares it with docs/results-schema.json.

With --json, stdout carries exactly one JSON object, printed when the command reaches its end (exit 0, 1 or
130). Bad input (exit 2) prints its one error line to stderr and nothing on stdout, like every other refusal.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from harness.errors import HarnessError
from harness.results_io import junit
from harness.results_io.models import (
    RESULTS_SCHEMA,
    BisectResults,
    CellsResults,
    RunResults,
    bisect_results,
    cells_results,
    run_gate,
    verdict_line,
)

__all__ = ["RESULTS_SCHEMA", "ResultsOutput", "bisect_results", "cells_results", "check_junit_path", "run_results"]


def check_junit_path(path: Path) -> Path:
    """The --junit file, refused (HarnessError) before anything starts when it cannot be written."""
    path = Path(path).expanduser().absolute()
    parent = path.parent
    if path.is_dir():
        raise HarnessError(f"--junit {path} is a folder", "pass a file name, e.g. --junit results/junit.xml")
    if not parent.is_dir():
        raise HarnessError(f"--junit {path}: folder {parent} does not exist", "create it or pass another path")
    try:
        # a real write, not os.access: root passes every access check, yet cannot create files in /proc or on
        # a read-only mount; the file itself is written as <path>.tmp then renamed, in the same folder
        with tempfile.TemporaryFile(dir=parent):
            pass
        if path.exists():
            with path.open("a"):
                pass
    except OSError as exc:
        raise HarnessError(f"--junit {path} is not writable ({exc.strerror or exc})",
                           "pass a path in a folder you can write to") from None
    return path


def run_results(command: Literal["run", "analyze"], run_dir: Path, exit_code: int) -> RunResults:
    """The document of one run folder, from its verdict.json summary (read after the analysis)."""
    from harness.analyze.summary import read_summary
    from harness.run.runfolder import REPORT_FILE

    run_dir = Path(run_dir).absolute()
    summary = read_summary(run_dir)
    report = run_dir / REPORT_FILE
    return RunResults(command=command, exit_code=exit_code, run_dir=str(run_dir),
                      report=str(report) if report.exists() else None, gate=run_gate(summary),
                      verdict_line=(verdict_line(summary.verdict, summary.expected) if summary
                                    else f"no verdict in {run_dir}"), summary=summary)


class ResultsOutput:
    """What the command line asked for: --json (stdout) and/or --junit FILE; neither makes it a no-op."""

    def __init__(self, json: bool = False, junit: Path | None = None) -> None:
        self.json = json
        self.junit = check_junit_path(junit) if junit is not None else None

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """With --json, send whatever the command writes to stdout — Python prints and child processes (pip,
        Locust, proxies inherit fd 1) — to stderr, so that stdout parses."""
        if not self.json:
            yield
            return
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
            try:
                fd, err_fd = sys.__stdout__.fileno(), sys.__stderr__.fileno()   # type: ignore[union-attr]
            except (AttributeError, OSError, ValueError):   # no real stdout/stderr (embedded, some test runners)
                fd = err_fd = -1
            if fd >= 0 and err_fd >= 0:
                sys.__stdout__.flush()          # type: ignore[union-attr]
                saved = os.dup(fd)
                os.dup2(err_fd, fd)

                def restore() -> None:
                    sys.__stdout__.flush()      # type: ignore[union-attr]
                    os.dup2(saved, fd)
                    os.close(saved)

                stack.callback(restore)
            try:
                yield
            finally:
                sys.stdout.flush()      # (the redirected stderr) before anyone reads it

    def emit(self, doc: RunResults | CellsResults | BisectResults) -> None:
        """The JUnit file, then (with --json) the one JSON object on stdout."""
        if self.junit is not None:
            try:
                junit.write(doc, self.junit)
            except OSError as exc:   # checked writable up front; the disk may still fill up or vanish since
                raise HarnessError(f"--junit {self.junit}: cannot write it ({exc.strerror or exc})",
                                   "check the disk; the run folders and reports are already written") from None
        if self.json:
            sys.stdout.write(doc.to_json() + "\n")
            sys.stdout.flush()

