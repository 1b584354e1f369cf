"""CPU seconds used during the load by each process of the stack, Locust and the harness itself."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from typing import Any

import psutil


def _tree_cpu(pid: int) -> float:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


@dataclass
class CpuMeter:
    """Snapshot at `start()`, difference at `stop()`: {process name: CPU seconds, share of the machine}."""

    pids: dict[str, int]
    _start: dict[str, float] = field(default_factory=dict)
    _t0: float = 0.0
    _self0: float = 0.0
    _children0: float = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {name: _tree_cpu(pid) for name, pid in self.pids.items()}
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        self._self0 = me.ru_utime + me.ru_stime
        self._children0 = kids.ru_utime + kids.ru_stime

    def stop(self, cpus: int | None = None) -> dict[str, Any]:
        wall = max(1e-9, time.monotonic() - self._t0)
        cpus = cpus or psutil.cpu_count() or 1
        used = {name: _tree_cpu(pid) - self._start.get(name, 0.0) for name, pid in self.pids.items()}
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        # Locust is a child of the harness that has exited (been reaped) by now
        used["locust"] = kids.ru_utime + kids.ru_stime - self._children0
        used["harness (sampler, nemesis, display)"] = me.ru_utime + me.ru_stime - self._self0
        return {"wall_s": round(wall, 2), "cpus": cpus,
                "processes": {name: {"cpu_s": round(max(0.0, s), 2), "share_of_machine": round(max(0.0, s) /
                                                                                              (wall * cpus), 4)}
                              for name, s in sorted(used.items())}}
