"""Child processes: each in its own process group, recorded in a state file, always cleaned up.

The state file (`state.json` in a stack's state folder by default) is rewritten atomically every time a
process starts or stops, so `harness down` can stop everything even after the harness itself crashed.

Identity before every signal: the harness runs as root and signals recorded process groups, possibly long
after they were recorded (`harness down` after a crash). A record holds the process's create time (psutil);
a recorded pid that now belongs to a process created at another time is a stranger that reused the pid, and
the record's processes are treated as already gone: never signalled. The kernel does not hand out a pid while
it still names a live process group, so while the leader is verified its whole group is ours; once the
leader is gone, the group's remaining members created no earlier than the leader are its orphans.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from harness.errors import StackError
from harness.util.fsutil import atomic_write_text

STATE_FILE = "state.json"
# psutil's create time is boot time + start ticks; boot time as read from /proc/stat can move by a second
# when the wall clock is adjusted between the recording process and a later `harness down`.
CREATE_TIME_TOLERANCE_S = 1.0
STOP_TIMEOUT_S = 10.0      # SIGTERM → SIGKILL
GONE_TIMEOUT_S = 5.0       # SIGKILL → gone (else reported as left over)
_POLL_S = 0.05


@dataclass
class ProcRecord:
    """What is needed to find, verify and stop one child later."""

    name: str
    pid: int
    pgid: int
    cmd: list[str]
    log: str
    port: int | None = None
    started_at: float = field(default_factory=time.time)
    create_time: float | None = None    # psutil create time of `pid`; None only in state files of old versions


def create_time_of(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _is_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def verified_leader(rec: ProcRecord) -> psutil.Process | None:
    """The recorded process itself when it still runs (same pid AND same create time), else None."""
    try:
        proc = psutil.Process(rec.pid)
        if _is_zombie(proc):
            return None
        if rec.create_time is None:     # a record written before create times were kept: its command must match
            return proc if proc.cmdline() == rec.cmd else None
        return proc if abs(proc.create_time() - rec.create_time) <= CREATE_TIME_TOLERANCE_S else None
    except psutil.Error:
        return None


def _pid_taken_by_stranger(rec: ProcRecord) -> bool:
    return verified_leader(rec) is None and pid_alive(rec.pid)


def record_processes(rec: ProcRecord) -> list[psutil.Process]:
    """Every live process of a record that may be signalled: the verified leader, its descendants (also those
    that left the group), and the members of its process group created no earlier than it."""
    leader = verified_leader(rec)
    if leader is None and _pid_taken_by_stranger(rec):
        return []   # the pid was reused, so the recorded group no longer exists
    found: dict[int, psutil.Process] = {}
    if leader is not None:
        found[leader.pid] = leader
        try:
            found.update((c.pid, c) for c in leader.children(recursive=True))
        except psutil.Error:
            pass
    since = (rec.create_time if rec.create_time is not None else rec.started_at) - CREATE_TIME_TOLERANCE_S
    for pid in _group_pids(rec.pgid):
        if pid in found:
            continue
        try:
            proc = psutil.Process(pid)
            if proc.create_time() >= since:
                found[pid] = proc
        except psutil.Error:
            continue
    return [p for p in found.values() if not _is_zombie(p)]


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid:
                pids.append(pid)
        except OSError:
            continue
    return pids


def _signal(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)   # psutil refuses (NoSuchProcess) when the pid was reused meanwhile
        except psutil.Error:
            pass


def signal_record(rec: ProcRecord, sig: int) -> int:
    """Signal a record's processes (group + descendants) if they are still its; returns how many were signalled."""
    procs = record_processes(rec)
    leader = verified_leader(rec)
    if leader is not None:
        # the group in one call (covers a fork racing the scan), then whoever left the group
        try:
            os.killpg(rec.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        _signal([p for p in procs if _pgid(p) != rec.pgid], sig)
    else:
        _signal(procs, sig)
    return len(procs)


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited (zombies count as exited); returns those still there."""
    deadline = time.monotonic() + timeout
    left = procs
    while True:
        left = [p for p in left if p.is_running() and not _is_zombie(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(_POLL_S)


class ProcessGroup:
    """Starts children in their own sessions and records them in `<state_dir>/<state_file>`.

    Nothing is written (not even the folder) until a process is started or adopted.
    """

    def __init__(self, state_dir: Path, state_file: str = STATE_FILE) -> None:
        self.state_dir = state_dir
        self.state_file = state_file
        self.records: dict[str, ProcRecord] = {}
        self.popen: dict[str, subprocess.Popen[bytes]] = {}
        self.extra: dict[str, Any] = {}      # the owner's own facts, saved next to the records
        self._load()

    # -- state file ---------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.state_dir / self.state_file

    def _load(self) -> None:
        if self.state_path.exists():
            data = json.loads(self.state_path.read_text())
            self.records = {r["name"]: ProcRecord(**r) for r in data.get("processes", [])}
            self.extra = data.get("extra", {})

    def save(self) -> None:
        """Write the state file; remove it once nothing is recorded and the owner keeps no facts."""
        if not self.records and not self.extra:
            self.state_path.unlink(missing_ok=True)
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        payload = {"processes": [asdict(r) for r in self.records.values()], "extra": self.extra}
        atomic_write_text(self.state_path, json.dumps(payload, indent=2))

    # -- start / adopt ------------------------------------------------------------------------------
    def start(self, name: str, cmd: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None,
              cwd: Path | None = None, port: int | None = None) -> subprocess.Popen[bytes]:
        if self.alive(name):
            raise StackError(f"process '{name}' is already running (pid {self.records[name].pid})",
                             "run `harness down` first")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as log_fh:
            proc = subprocess.Popen(  # noqa: S603 - commands are built by the harness
                list(cmd), stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
        self.popen[name] = proc
        # Unreaped, the child's pid cannot be reused, so this create time is the child's own.
        self.records[name] = ProcRecord(name=name, pid=proc.pid, pgid=proc.pid, cmd=list(cmd), log=str(log),
                                        port=port, create_time=create_time_of(proc.pid))
        self.save()
        return proc

    def adopt(self, name: str, pid: int, *, log: str = "", port: int | None = None) -> ProcRecord:
        """Record a process started elsewhere (Locust by the run), so stop_all stops it too."""
        try:
            proc = psutil.Process(pid)
            created, cmd, pgid = proc.create_time(), proc.cmdline(), os.getpgid(pid)
        except (psutil.Error, OSError):
            raise StackError(f"cannot track '{name}': no process {pid}", "track a process that is running") from None
        if pgid != pid:
            # its group is someone else's (maybe the harness's own): stopping it would signal strangers
            raise StackError(f"cannot track '{name}': process {pid} does not lead its own process group",
                             "start it in its own session (ProcessGroup.start does)")
        rec = ProcRecord(name=name, pid=pid, pgid=pgid, cmd=cmd, log=log, port=port, create_time=created)
        self.records[name] = rec
        self.save()
        return rec

    def run(self, name: str, cmd: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 180.0) -> int:
        """Run a one-shot child (initdb) recorded like the others while it runs; returns its exit code."""
        proc = self.start(name, cmd, log=log, env=env, cwd=cwd)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StackError(f"{name} did not finish within {timeout:.0f} s", f"see {log}") from None
        finally:
            self.stop(name, timeout=5)

    # -- state of one -------------------------------------------------------------------------------
    def alive(self, name: str) -> bool:
        rec = self.records.get(name)
        if rec is None:
            return False
        proc = self.popen.get(name)
        if proc is not None:
            return proc.poll() is None
        return verified_leader(rec) is not None

    def log_tail(self, name: str, lines: int = 20) -> str:
        rec = self.records.get(name)
        return tail(Path(rec.log), lines) if rec and rec.log else ""

    # -- signals ------------------------------------------------------------------------------------
    def signal_leader(self, name: str, sig: int) -> bool:
        """Send `sig` to the recorded leader only (e.g. SIGINT: PostgreSQL's fast shutdown) if it is still ours."""
        rec = self.records.get(name)
        leader = verified_leader(rec) if rec else None
        if leader is None:
            return False
        _signal([leader], sig)
        return True

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a child's whole process group (SIGKILL by default: in-flight work dies); for SIGKILL/SIGTERM
        wait until it is gone (SIGKILL after STOP_TIMEOUT_S)."""
        rec = self.records.get(name)
        if rec is None:
            return
        procs = record_processes(rec)
        signal_record(rec, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            left = _wait_gone(procs, STOP_TIMEOUT_S)
            if left:
                signal_record(rec, signal.SIGKILL)
                _wait_gone(left, GONE_TIMEOUT_S)
            self._reap(name)

    def stop(self, name: str, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the group, SIGKILL it after `timeout`, then forget the record."""
        self.stop_all(timeout, only=[name])

    def stop_all(self, timeout: float = STOP_TIMEOUT_S, only: list[str] | None = None) -> list[str]:
        """Stop every recorded child (or those named in `only`) in parallel and wait until they are gone.

        Returns the names whose processes are gone now (their records are dropped). A child still there
        GONE_TIMEOUT_S after SIGKILL keeps its record (see `leftovers()`).
        """
        names = [r.name for r in sorted(self.records.values(), key=lambda r: r.started_at, reverse=True)
                 if only is None or r.name in only]
        targets = {name: record_processes(self.records[name]) for name in names}
        # Signal all first so they shut down in parallel, then wait.
        for name in names:
            signal_record(self.records[name], signal.SIGTERM)
        left = _wait_gone([p for procs in targets.values() for p in procs], timeout)
        if left:
            for name in names:
                signal_record(self.records[name], signal.SIGKILL)
            _signal(left, signal.SIGKILL)   # those that left their group
            _wait_gone(left, GONE_TIMEOUT_S)
        for name in names:
            self._reap(name)
        # Once more from the groups: a process forked while its group shut down was not in the first snapshot.
        late = {name: record_processes(self.records[name]) for name in names}
        if any(late.values()):
            for name in names:
                signal_record(self.records[name], signal.SIGKILL)
            _wait_gone([p for procs in late.values() for p in procs], GONE_TIMEOUT_S)
        gone = []
        for name in names:
            if not late[name] or not record_processes(self.records[name]):
                self.records.pop(name, None)
                gone.append(name)
        self.save()
        return gone

    def leftovers(self) -> list[str]:
        """Records whose processes are still there."""
        return [name for name, rec in self.records.items() if record_processes(rec)]

    def _reap(self, name: str) -> None:
        proc = self.popen.pop(name, None)
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen[name] = proc


def pid_alive(pid: int) -> bool:
    """Any process (not a zombie) has this pid. Says nothing about whose it is: see verified_leader()."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
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
    return any(pid_alive(pid) for pid in _group_pids(pgid))


def stop_group(pgid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL, the group of a child the caller holds an unreaped Popen of (so `pgid`, its pid,
    cannot have been reused). Records from a state file go through ProcessGroup, which verifies identity."""
    _killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    if group_alive(pgid):
        _killpg(pgid, signal.SIGKILL)
        end = time.monotonic() + GONE_TIMEOUT_S
        while group_alive(pgid) and time.monotonic() < end:
            time.sleep(_POLL_S)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


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
