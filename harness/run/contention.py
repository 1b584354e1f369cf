"""How contended the machine was while the load ran: the raw figures the analyzer judges starvation from.

Recorded in meta.json as `contention` (the rule that turns them into "starved" lives in the analyzer,
harness/analyze/contention.py, so re-analysing an old folder applies today's rule to its figures):

- `load_avg_1m`: the 1-minute load average sampled every second (mean, max; and per CPU);
- `machine_busy_share`: CPU time the whole machine spent busy (user + system + irq + steal, from
  /proc/stat via psutil) ÷ (wall × CPUs);
- `foreign_share`: CPU time of *foreign* processes ÷ (wall × CPUs), summed from per-process CPU times read
  every second. Foreign is every process except: this harness process and its descendants (Locust on the
  host), the stack's recorded processes and their descendants, the container runtime and everything it runs
  (dockerd, containerd, its shims, docker-proxy: this run's containers; another stack's containers are
  counted as `other_stacks` instead), and kernel threads (their work — network, I/O — is mostly the run's
  own). A process that starts and ends between two samples is missed, so this is a lower bound;
- `steal_share`: time the hypervisor gave to other guests (from /proc/stat), starvation the process table
  cannot see;
- `other_stacks`: other harness stacks running on this machine at any sample, from any checkout and any
  backend. Every harness stack has exactly one mock upstream (`python -m harness.mockllm --ledger …`; in a
  container too, whose processes the host sees), so other stacks = mock processes seen − this run's one.
  `other_stacks_max` is the most seen at once, `other_stacks_seen` their command lines' ledger paths.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

MOCK_MODULE = "harness.mockllm"
SAMPLE_S = 1.0
RUNTIME_NAMES = ("dockerd", "containerd", "docker-proxy")      # + containerd-shim*: prefix match
KTHREADD_PID = 2


def harness_mocks() -> list[tuple[int, str]]:
    """(pid, ledger path) of every harness mock upstream process on this machine (any checkout, any backend)."""
    found: list[tuple[int, str]] = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if MOCK_MODULE not in cmd or "--ledger" not in cmd:
            continue
        i = cmd.index("--ledger")
        found.append((int(proc.info["pid"]), cmd[i + 1] if i + 1 < len(cmd) else ""))
    return found


def other_stacks(own: int = 1, own_ledger: str = "") -> list[str]:
    """The other harness stacks running now, described by their mock's pid and ledger path. `own`: how many
    mocks are this run's; `own_ledger`: its mock's ledger path on the host, when the host sees it (local
    backend) — a container's mock names its own path (/data/…), so then only the count tells ours apart."""
    mocks = sorted(harness_mocks())
    mine = [m for m in mocks if own_ledger and m[1] == own_ledger][:own]
    rest = [m for m in mocks if m not in mine]
    extra = max(0, len(mocks) - own)
    return [f"pid {pid} ({ledger})" for pid, ledger in rest[len(rest) - extra:]] if extra else []


def _is_runtime(name: str) -> bool:
    return name in RUNTIME_NAMES or name.startswith("containerd-shim")


class ProcessTable:
    """Per-process CPU seconds between samples, split into ours and foreign (rule: the module doc)."""

    def __init__(self, roots: set[int]) -> None:
        self.roots = set(roots) | {os.getpid()}
        self.last: dict[tuple[int, float], float] = {}      # (pid, create time) → CPU seconds at the last sample
        self.kind: dict[tuple[int, float], bool] = {}       # → foreign?
        self.foreign_s = 0.0
        self.foreign_top: dict[str, float] = {}             # process name → foreign CPU seconds
        self.foreign_by_pid: dict[int, float] = {}

    def _foreign(self, proc: psutil.Process) -> bool:
        try:
            chain = [proc, *proc.parents()]
        except psutil.Error:
            return False
        for p in chain:
            if p.pid in self.roots or p.pid == KTHREADD_PID:
                return False
            try:
                if _is_runtime(p.name()):
                    return False
            except psutil.Error:
                return False
        return True

    def sample(self, first: bool = False) -> None:
        for proc in psutil.process_iter(["pid", "create_time", "cpu_times", "name"]):
            info = proc.info
            times = info.get("cpu_times")
            if times is None:
                continue
            key = (int(info["pid"]), float(info.get("create_time") or 0.0))
            cpu = float(times.user + times.system)
            prev = self.last.get(key)
            self.last[key] = cpu
            if key not in self.kind:
                self.kind[key] = self._foreign(proc)
                if prev is None and not first:
                    prev = 0.0       # started since the last sample: all of its CPU is in the window
            if prev is None or not self.kind[key]:
                continue
            used = max(0.0, cpu - prev)
            self.foreign_s += used
            if used:
                name = str(info.get("name") or key[0])
                self.foreign_top[name] = self.foreign_top.get(name, 0.0) + used
                self.foreign_by_pid[key[0]] = self.foreign_by_pid.get(key[0], 0.0) + used


def _busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, of which steal) since boot."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t)
    # guest time is already counted in user / nice on Linux
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    return total - idle, getattr(t, "steal", 0.0)


@dataclass
class ContentionMeter:
    """Samples the load average and the other harness stacks every second between `start()` and `stop()`."""

    roots: set[int] = field(default_factory=set)      # the stack's recorded pids (their descendants are ours)
    own_ledger: str = ""                              # this run's mock's ledger path (see other_stacks)
    own_mocks: int = 1
    sample_s: float = SAMPLE_S
    stacks_probe: Callable[[int, str], list[str]] = other_stacks
    _loads: list[float] = field(default_factory=list)
    _others_max: int = 0
    _others_seen: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = 0.0
    _busy0: float = 0.0
    _steal0: float = 0.0
    _table: ProcessTable | None = None

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._busy0, self._steal0 = _busy_seconds()
        self._table = ProcessTable(self.roots)
        self._table.sample(first=True)
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="contention", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        self._loads.append(os.getloadavg()[0])
        if self._table is not None and self._loads[1:]:
            self._table.sample()
        try:
            others = self.stacks_probe(self.own_mocks, self.own_ledger)
        except psutil.Error:
            return
        self._others_max = max(self._others_max, len(others))
        self._others_seen.update(others)

    def _loop(self) -> None:
        while not self._stop.wait(self.sample_s):
            self._sample()

    def stop(self, cpus: int | None = None) -> dict[str, Any]:
        """The figures (see the module doc)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()
        wall = max(1e-9, time.monotonic() - self._t0)
        cpus = cpus or psutil.cpu_count() or 1
        busy, steal = _busy_seconds()
        busy, steal = max(0.0, busy - self._busy0), max(0.0, steal - self._steal0)
        capacity = wall * cpus
        loads = self._loads or [0.0]
        table = self._table or ProcessTable(set())
        foreign = table.foreign_s
        top = sorted(table.foreign_top.items(), key=lambda kv: -kv[1])[:5]
        return {"wall_s": round(wall, 2), "cpus": cpus, "samples": len(self._loads),
                "load_avg_1m": {"mean": round(sum(loads) / len(loads), 2), "max": round(max(loads), 2),
                                "max_per_cpu": round(max(loads) / cpus, 3)},
                "machine_busy_share": round(min(1.0, busy / capacity), 4),
                "foreign_share": round(min(1.0, foreign / capacity), 4),
                "foreign_top": {k: round(v, 1) for k, v in top},
                "steal_share": round(min(1.0, steal / capacity), 4),
                "other_stacks_max": self._others_max, "other_stacks_seen": sorted(self._others_seen)}
