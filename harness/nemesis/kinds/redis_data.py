"""Redis's data set: restart, flush, snapshot (one-shot actions through the stack's RedisControl)."""

from __future__ import annotations

from pydantic import Field

from harness.nemesis.registry import FaultKindSpec, FaultParams, FaultRun, register
from harness.stack.base import RedisControl


class RestartRedis(FaultParams):
    """Redis is stopped and started again: from its last snapshot, or empty with flush: true."""

    flush: bool = Field(False, description="start empty instead of from the dump (the last snapshot)")

    def start(self, run: FaultRun) -> str:
        stack: RedisControl = run.stack
        down = stack.restart_redis(flush=self.flush)
        return f"redis restarted (flush={self.flush}), down {float(down):.1f} s"


class FlushRedis(FaultParams):
    """Every key in Redis is deleted (FLUSHALL)."""

    def start(self, run: FaultRun) -> str:
        stack: RedisControl = run.stack
        stack.flush_redis()
        return "redis flushed (FLUSHALL)"


class SnapshotRedis(FaultParams):
    """Redis saves its data set now (SAVE): a later restart_redis (flush: false) comes back to this old data."""

    def start(self, run: FaultRun) -> str:
        stack: RedisControl = run.stack
        stack.snapshot_redis()
        return "redis snapshot saved (SAVE)"


register(FaultKindSpec("restart_redis", RestartRedis, needs=RedisControl, on="redis", one_shot=True))
register(FaultKindSpec("flush_redis", FlushRedis, needs=RedisControl, on="redis", one_shot=True))
register(FaultKindSpec("snapshot_redis", SnapshotRedis, needs=RedisControl, on="redis", one_shot=True))
