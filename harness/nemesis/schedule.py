"""The nemesis: the scenario's fault windows on a schedule relative to the load start, each recorded in faults.csv.

Every window runs in its own thread (a replica restart that waits ~25 s for health must not delay the next
window): wait until `at_s`, start the fault, wait `duration_s`, end it. Windows of one-shot kinds
(`restart_redis`, `flush_redis`) do their action at `at_s`; their end event is written when it completed.
Windowed kinds with `duration_s: 0` stay on until `stop()`. `stop()` ends open windows (their end event says so)
and skips windows that have not started. A failing action is recorded in the `note` column and never raises.

Kinds and what they call:

- mock_*: the mock's run-time faults through MockControl (`mock_patch` maps a window to the mock's config
  keys); the end restores the previous settings of the same fault keys (overlapping mock windows of different
  kinds do not undo each other).
- redis_latency / redis_timeout / redis_reset: `stack.redis_fault("latency"|"timeout"|"reset", ...)`, end:
  `stack.redis_fault("none")` (and once more at `stop()` if any Redis window ran).
- kill_replica: `stack.kill_replica(i)`, end: `stack.restart_replica(i)` (seconds until healthy in the note).
- restart_redis: `stack.restart_redis(flush=params.flush)`; flush_redis: `stack.flush_redis()`;
  snapshot_redis: `stack.snapshot_redis()` (SAVE: a later restart_redis without flush comes back to it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from harness.run.runfolder import FAULTS_COLUMNS, FAULTS_FILE, CsvAppender

log = logging.getLogger(__name__)

ONE_SHOT = frozenset({"restart_redis", "flush_redis", "snapshot_redis"})
REDIS_KINDS = {"redis_latency": "latency", "redis_timeout": "timeout", "redis_reset": "reset"}
REDIS_PARAMS = ("latency_ms", "jitter_ms", "direction")
MOCK_ERROR_KINDS = {429: "rate_limit", 500: "error_500", 503: "error_503"}


class MockFaults(Protocol):
    def set_faults(self, patch: dict[str, Any]) -> dict[str, Any]: ...

    def get_faults(self) -> dict[str, Any]: ...


def mock_patch(kind: str, params: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A scenario mock_* window -> the mock's fault patch ({fault key: {p, param...}}), in one place.

    The mock's keys (harness/mockllm/config.py): rate_limit, error_500, error_503, hang, reset, stream_cut,
    malformed_json, malformed_sse (exclusive; at most one per request) and latency, slow_first_token.
    `probability` defaults to 1.
    """
    p = float(params.get("probability", 1.0))
    if kind == "mock_error":
        status = int(params.get("status", 500))
        if status not in MOCK_ERROR_KINDS:
            raise ValueError(f"mock_error: status must be one of {sorted(MOCK_ERROR_KINDS)}, got {status}")
        spec: dict[str, float] = {"p": p}
        if status == 429 and "retry_after_s" in params:
            spec["retry_after_s"] = float(params["retry_after_s"])
        return {MOCK_ERROR_KINDS[status]: spec}
    if kind == "mock_latency":
        return {"latency": {"p": p, "fixed_s": float(params.get("latency_s", 1.0)),
                            "jitter_s": float(params.get("jitter_s", 0.0))}}
    if kind == "mock_hang":
        return {"hang": {"p": p}}
    if kind == "mock_reset":
        return {"reset": {"p": p}}
    if kind == "mock_stream_cut":
        return {"stream_cut": {"p": p, "after_chunks": float(params.get("after_chunks", 1))}}
    if kind == "mock_malformed":
        which = params.get("kind", "json")
        if which not in ("json", "sse"):
            raise ValueError(f"mock_malformed: kind must be json or sse, got {which!r}")
        spec = {"p": p}
        if "after_chunks" in params:
            spec["after_chunks"] = float(params["after_chunks"])
        return {f"malformed_{which}": spec}
    if kind == "mock_slow_first_token":
        return {"slow_first_token": {"p": p, "delay_s": float(params.get("delay_s", 2.0))}}
    raise ValueError(f"not a mock fault kind: {kind}")


def _target(window: Any) -> str:
    if window.kind == "kill_replica":
        return str(window.target)
    if window.kind.startswith("mock_"):
        return "mock"
    return "redis"


class Nemesis:
    """Runs `faults` (scenario FaultWindow list) against `stack`; start(t0) with t0 = load start (epoch s)."""

    def __init__(self, faults: Sequence[Any], stack: Any, endpoints: Any, run_dir: Path,
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
        self._redis_used = False
        self.errors: list[str] = []

    # -- recording ----------------------------------------------------------------------------------
    def _record(self, t: float, event: str, index: int, window: Any, note: str) -> None:
        with self._out_lock:
            if self._out is None:
                self._out = CsvAppender(self.run_dir / FAULTS_FILE, FAULTS_COLUMNS, flush_s=0.0)
            out = self._out
        out.append({"t": t, "event": event, "window": index, "kind": window.kind, "target": _target(window),
                    "params": json.dumps(window.params, sort_keys=True), "note": note})
        out.flush()

    def _guarded(self, what: str, action: Callable[[], str]) -> str:
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - a failing fault is recorded, never fatal to the run
            msg = f"error: {what}: {type(exc).__name__}: {exc}"
            self.errors.append(msg)
            log.warning("nemesis %s", msg)
            return msg

    # -- actions ------------------------------------------------------------------------------------
    def _mock_control(self) -> MockFaults:
        if self._mock is None:
            from harness.mockllm import MockControl

            self._mock = MockControl(self.endpoints.mock_url)
        return self._mock

    def _start(self, window: Any, state: dict[str, Any]) -> str:
        kind, params = window.kind, dict(window.params)
        if kind.startswith("mock_"):
            patch = mock_patch(kind, params)
            with self._mock_lock:
                ctl = self._mock_control()
                current = ctl.get_faults().get("faults", {})
                state["restore"] = {key: dict(current[key]) for key in patch if key in current}
                ctl.set_faults(patch)
            return f"mock faults set: {json.dumps(patch, sort_keys=True)}"
        if kind in REDIS_KINDS:
            self._redis_used = True
            relay_params = {k: params[k] for k in REDIS_PARAMS if k in params}
            self.stack.redis_fault(REDIS_KINDS[kind], **relay_params)
            extra = f" {relay_params}" if relay_params else ""
            return f"redis fault {REDIS_KINDS[kind]}{extra} on"
        if kind == "kill_replica":
            self.stack.kill_replica(int(window.target))
            return f"replica {window.target} killed (SIGKILL)"
        if kind == "restart_redis":
            down = self.stack.restart_redis(flush=bool(params.get("flush", False)))
            return f"redis restarted (flush={bool(params.get('flush', False))}), down {float(down):.1f} s"
        if kind == "flush_redis":
            self.stack.flush_redis()
            return "redis flushed (FLUSHALL)"
        if kind == "snapshot_redis":
            self.stack.snapshot_redis()
            return "redis snapshot saved (SAVE)"
        raise ValueError(f"unknown fault kind {kind!r}")

    def _end(self, window: Any, state: dict[str, Any]) -> str:
        kind = window.kind
        if kind.startswith("mock_"):
            restore = state.get("restore")
            if restore is None:
                return "nothing to restore (the start failed)"
            with self._mock_lock:
                self._mock_control().set_faults(restore)
            return f"mock faults restored: {json.dumps(restore, sort_keys=True)}"
        if kind in REDIS_KINDS:
            self.stack.redis_fault("none")
            return "redis fault cleared"
        if kind == "kill_replica":
            healthy = self.stack.restart_replica(int(window.target))
            return f"replica {window.target} restarted, healthy after {float(healthy):.1f} s"
        return ""

    # -- scheduling ---------------------------------------------------------------------------------
    def _wait_until(self, t: float) -> bool:
        """Sleep until epoch time t; False when stop() came first."""
        while True:
            left = t - self._clock()
            if left <= 0:
                return not self._stop.is_set()
            if self._stop.wait(min(left, 0.5)):
                return False

    def _run_window(self, index: int, window: Any, t0: float) -> None:
        if not self._wait_until(t0 + window.at_s):
            return
        state: dict[str, Any] = {}
        t_start = self._clock()
        if window.kind in ONE_SHOT:
            self._record(t_start, "start", index, window, "begin")
            note = self._guarded(f"{window.kind} start", lambda: self._start(window, state))
            self._record(self._clock(), "end", index, window, note)
            return
        note = self._guarded(f"{window.kind} start", lambda: self._start(window, state))
        self._record(t_start, "start", index, window, note)
        if window.duration_s > 0:
            stopped = not self._wait_until(t_start + window.duration_s)
        else:
            self._stop.wait()          # open until stop()
            stopped = True
        t_end = self._clock()
        note = self._guarded(f"{window.kind} end", lambda: self._end(window, state))
        if stopped:
            note = f"ended by stop(); {note}" if note else "ended by stop()"
        self._record(t_end, "end", index, window, note)

    def start(self, t0: float) -> None:
        """Schedule every window relative to t0 (epoch seconds of the load start)."""
        self._stop.clear()
        for index, window in enumerate(self.faults):
            thread = threading.Thread(target=self._run_window, args=(index, window, t0),
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
        if self._redis_used:
            self._guarded("redis fault reset", lambda: (self.stack.redis_fault("none"), "")[1])
        with self._out_lock:
            if self._out is not None:
                self._out.close()
                self._out = None

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)
