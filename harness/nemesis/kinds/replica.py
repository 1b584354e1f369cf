"""Proxy replicas: kill one and restart it at the end of the window (through the stack's ReplicaControl)."""

from __future__ import annotations

from harness.nemesis.registry import FaultKindSpec, FaultParams, FaultRun, register
from harness.stack.base import ReplicaControl


class KillReplica(FaultParams):
    """Replica `target` (its index) is killed with SIGKILL (in-flight requests die) and restarted at the end.

    The end waits until the replica is healthy again (its note says how long).
    """

    def start(self, run: FaultRun) -> str:
        stack: ReplicaControl = run.stack
        stack.kill_replica(int(str(run.target)))
        return f"replica {run.target} killed (SIGKILL)"

    def end(self, run: FaultRun) -> str:
        stack: ReplicaControl = run.stack
        healthy = stack.restart_replica(int(str(run.target)))
        return f"replica {run.target} restarted, healthy after {float(healthy):.1f} s"


register(FaultKindSpec("kill_replica", KillReplica, needs=ReplicaControl, on="replica"))
