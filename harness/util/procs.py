"""Child processes: each in its own process group, recorded in a state file, always cleaned up.

The state file (`state.json` in a stack's state folder) is rewritten atomically every time a process
starts or stops, so `harness down` can stop everything even after the harness itself crashed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from harness.errors import StackError
from harness.util.fsutil import atomic_write_text

STATE_FILE = "state.json"


@dataclass
class ProcRecord:
    """What is needed to find and stop one child later."""

    name: str
    pid: int
    pgid: int
    cmd: list[str]
    log: str
    port: int | None = None
    started_at: float = field(default_factory=time.time)


class ProcessGroup:
    """Starts children in their own sessions and records them in `<state_dir>/state.json`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.records: dict[str, ProcRecord] = {}
        self.popen: dict[str, subprocess.Popen[bytes]] = {}
        self.extra: dict[str, object] = {}
        self._load()

    # -- state file ---------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def _load(self) -> None:
        if self.state_path.exists():
            data = json.loads(self.state_path.read_text())
            self.records = {r["name"]: ProcRecord(**r) for r in data.get("processes", [])}
            self.extra = data.get("extra", {})

    def save(self) -> None:
        payload = {"processes": [asdict(r) for r in self.records.values()], "extra": self.extra}
        atomic_write_text(self.state_path, json.dumps(payload, indent=2))

    # -- start / stop -------------------------------------------------------------------------------
    def start(self, name: str, cmd: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None,
              cwd: Path | None = None, port: int | None = None) -> subprocess.Popen[bytes]:
        if name in self.records and pid_alive(self.records[name].pid):
            raise StackError(f"process '{name}' is already running (pid {self.records[name].pid})",
                             "run `harness down` first")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as log_fh:
            proc = subprocess.Popen(  # noqa: S603 - commands are built by the harness
                list(cmd), stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
        self.popen[name] = proc
        self.records[name] = ProcRecord(name=name, pid=proc.pid, pgid=proc.pid, cmd=list(cmd),
                                        log=str(log), port=port)
        self.save()
        return proc

    def alive(self, name: str) -> bool:
        rec = self.records.get(name)
        if rec is None:
            return False
        proc = self.popen.get(name)
        if proc is not None:
            return proc.poll() is None
        return pid_alive(rec.pid)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a child's whole process group (SIGKILL by default: in-flight work dies)."""
        rec = self.records.get(name)
        if rec is None:
            return
        _signal_group(rec.pgid, sig)
        proc = self.popen.get(name)
        if proc is not None and sig in (signal.SIGKILL, signal.SIGTERM):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(rec.pgid, signal.SIGKILL)
                proc.wait(timeout=5)

    def stop(self, name: str, timeout: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL it after `timeout`, then forget the record."""
        self.stop_all(timeout, only=[name])

    def stop_all(self, timeout: float = 10.0, only: list[str] | None = None) -> list[str]:
        """Stop every recorded child (or those named in `only`) in parallel. Returns the names stopped."""
        names = [r.name for r in sorted(self.records.values(), key=lambda r: r.started_at, reverse=True)
                 if only is None or r.name in only]
        # Signal all first so they shut down in parallel, then wait.
        for name in names:
            _signal_group(self.records[name].pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in names:
            rec = self.records[name]
            while group_alive(rec.pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if group_alive(rec.pgid):
                _signal_group(rec.pgid, signal.SIGKILL)
            proc = self.popen.pop(name, None)
            if proc is not None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        for name in names:
            rec = self.records[name]
            end = time.monotonic() + 5
            while group_alive(rec.pgid) and time.monotonic() < end:
                time.sleep(0.05)
            self.records.pop(name, None)
        self.save()
        return names

    def log_tail(self, name: str, lines: int = 20) -> str:
        rec = self.records.get(name)
        return tail(Path(rec.log), lines) if rec else ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    """True if any non-zombie process is in the process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                rest = fh.read().split(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(rest[2]) == pgid and rest[0] != "Z":
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(pgid: int, timeout: float = 10.0) -> None:
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
        end = time.monotonic() + 5
        while group_alive(pgid) and time.monotonic() < end:
            time.sleep(0.05)


def tail(path: Path, lines: int = 20) -> str:
    try:
        data = path.read_bytes()[-64_000:]
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def wait_until(check: Callable[[], bool], *, deadline_s: float, what: str, interval: float = 0.2,
               still_alive: Callable[[], bool] | None = None, on_fail: Callable[[], str] | None = None) -> float:
    """Poll `check` until it returns True; raise StackError at the deadline or when the process died.

    Returns the seconds it took.
    """
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if still_alive is not None and not still_alive():
            detail = on_fail() if on_fail else ""
            raise StackError(f"{what}: the process exited before it became healthy" +
                             (f"\n{detail}" if detail else ""), "see its log above")
        if time.monotonic() - start > deadline_s:
            detail = on_fail() if on_fail else ""
            raise StackError(f"{what}: not healthy after {deadline_s:.0f} s" + (f"\n{detail}" if detail else ""),
                             "see its log above")
        time.sleep(interval)


def http_ok(url: str, timeout: float = 1.0, headers: Mapping[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, timeout=timeout, headers=dict(headers or {})).status_code == 200
    except httpx.HTTPError:
        return False
