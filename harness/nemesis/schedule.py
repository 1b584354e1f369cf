"""The nemesis: the scenario's fault windows on a schedule relative to the load start, each recorded in faults.csv.

It only schedules and records; what a kind does comes from the registry (harness/nemesis/registry.py, kinds
in harness/nemesis/kinds/). Every window runs in its own thread (a replica restart that waits ~25 s for health
must not delay the next window): wait until `at_s`, start the fault, wait `duration_s`, end it. Windows of
one-shot kinds (`spec.one_shot`: restart_redis, flush_redis, snapshot_redis) do their action at `at_s`; their
end event is written when it completed. Windowed kinds with `duration_s: 0` stay on until `stop()`. `stop()`
ends open windows (their end event says so), skips windows that have not started, and calls each kind's
`final_reset` once (the Redis link faults: `redis_fault("none")`).

A failing action never raises: it is recorded in the `note` column ("error: ...") and in `errors`, a list of
{"window": index, "kind": name, "phase": "start"|"end"|"stop", "error": "<Type>: <message>"} (window None
and kind "" for the stop-time reset) that the runner writes into meta.json as `nemesis_errors`.

The windows come from a validated scenario (their kinds are registered, their params parse); check the stack's
capabilities with `registry.check_capabilities` before anything starts.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.nemesis.registry import FaultKindSpec, FaultParams, FaultRun, MockFaults, Window, fault_kind
from harness.run.runfolder import FAULTS_COLUMNS, FAULTS_FILE, CsvAppender

log = logging.getLogger(__name__)


def _noting(action: Callable[[Any], None], stack: Any) -> Callable[[], str]:
    def run() -> str:
        action(stack)
        return ""
    return run


class Nemesis:
    """Runs `faults` (scenario FaultWindow list) against `stack`; start(t0) with t0 = load start (epoch s)."""

    def __init__(self, faults: Sequence[Window], stack: Any, endpoints: Any, run_dir: Path,
                 mock_control: MockFaults | None = None, clock: Callable[[], float] = time.time) -> None:
        self.faults = list(faults)
        self.stack = stack
        self.endpoints = endpoints
        self.run_dir = Path(run_dir)
        self._mock = mock_control
        self._clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._out: CsvAppender | None = None
        self._out_lock = threading.Lock()
        self._mock_lock = threading.Lock()
        self._ran: set[type[FaultParams]] = set()
        self._errors_lock = threading.Lock()
        self.errors: list[dict[str, Any]] = []
        self._specs: list[tuple[FaultKindSpec, FaultParams]] = []
        for index, window in enumerate(self.faults):
            spec = fault_kind(window.kind)
            if spec is None:
                raise ValueError(f"faults.{index}: unknown fault kind {window.kind!r} (load the scenario first)")
            self._specs.append((spec, spec.parse(window.params)))

    # -- recording ----------------------------------------------------------------------------------
    def _record(self, t: float, event: str, index: int, note: str) -> None:
        window, (spec, _) = self.faults[index], self._specs[index]
        with self._out_lock:
            if self._out is None:
                self._out = CsvAppender(self.run_dir / FAULTS_FILE, FAULTS_COLUMNS, flush_s=0.0)
            out = self._out
        out.append({"t": t, "event": event, "window": index, "kind": window.kind, "target": spec.target(window),
                    "params": json.dumps(window.params, sort_keys=True), "note": note})
        out.flush()

    def _guarded(self, index: int | None, phase: str, action: Callable[[], str]) -> str:
        """Run a kind's action; an exception becomes the returned note and an entry of `errors`."""
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - a failing fault is recorded, never fatal to the run
            kind = self.faults[index].kind if index is not None else ""
            error = f"{type(exc).__name__}: {exc}"
            with self._errors_lock:
                self.errors.append({"window": index, "kind": kind, "phase": phase, "error": error})
            log.warning("nemesis window %s %s %s: %s", index, kind, phase, error)
            return f"error: {kind or 'nemesis'} {phase}: {error}"

    # -- the kinds' context ---------------------------------------------------------------------------
    def _mock_control(self) -> MockFaults:
        if self._mock is None:
            from harness.mockllm import MockControl

            self._mock = MockControl(self.endpoints.mock_url)
        return self._mock

    def _run_context(self, window: Window) -> FaultRun:
        return FaultRun(stack=self.stack, target=window.target, mock=self._mock_control, mock_lock=self._mock_lock)

    # -- scheduling ---------------------------------------------------------------------------------
    def _wait_until(self, t: float) -> bool:
        """Sleep until epoch time t; False when stop() came first."""
        while True:
            left = t - self._clock()
            if left <= 0:
                return not self._stop.is_set()
            if self._stop.wait(min(left, 0.5)):
                return False

    def _run_window(self, index: int, t0: float) -> None:
        window, (spec, params) = self.faults[index], self._specs[index]
        if not self._wait_until(t0 + window.at_s):
            return
        run = self._run_context(window)
        self._ran.add(type(params))
        t_start = self._clock()
        if spec.one_shot:
            self._record(t_start, "start", index, "begin")
            note = self._guarded(index, "start", lambda: params.start(run))
            self._record(self._clock(), "end", index, note)
            return
        note = self._guarded(index, "start", lambda: params.start(run))
        self._record(t_start, "start", index, note)
        duration = window.duration_s
        if duration > 0:
            stopped = not self._wait_until(t_start + duration)
        else:
            self._stop.wait()          # open until stop()
            stopped = True
        t_end = self._clock()
        note = self._guarded(index, "end", lambda: params.end(run))
        if stopped:
            note = f"ended by stop(); {note}" if note else "ended by stop()"
        self._record(t_end, "end", index, note)

    def start(self, t0: float) -> None:
        """Schedule every window relative to t0 (epoch seconds of the load start)."""
        self._stop.clear()
        for index, window in enumerate(self.faults):
            thread = threading.Thread(target=self._run_window, args=(index, t0),
                                      name=f"nemesis-{index}-{window.kind}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 120.0) -> None:
        """End open windows now (replica restarts still wait for health), skip the ones not started."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        for reset in {kind.final_reset for kind in self._ran}:
            self._guarded(None, "stop", _noting(reset, self.stack))
        with self._out_lock:
            if self._out is not None:
                self._out.close()
                self._out = None

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)
