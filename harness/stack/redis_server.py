"""A real redis-server process on a loopback port, data in a folder of the stack's state."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import redis

from harness.errors import HarnessError
from harness.util.procs import ProcessGroup, wait_until

PROC_NAME = "redis"


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise HarnessError("redis-server is not installed", "run `make setup` (installs the redis-server package)")
    return path


class RedisServer:
    """redis-server bound to 127.0.0.1. `restart(flush=False)` comes back from its last snapshot."""

    def __init__(self, data_dir: Path, port: int, log: Path, name: str = PROC_NAME) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log = log
        self.name = name   # its record in the ProcessGroup

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no", "--protected-mode", "yes",
                "--maxclients", "10000", "--daemonize", "no"]

    def start(self, group: ProcessGroup, deadline_s: float = 20.0) -> float:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        group.start(self.name, self.command(), log=self.log, port=self.port)
        wait_until(self.ping, deadline_s=deadline_s, what=f"redis on port {self.port}",
                   still_alive=lambda: group.alive(self.name), on_fail=lambda: group.log_tail(self.name))
        return time.monotonic() - started

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def version(self) -> str:
        try:
            info: dict[str, object] = self.client().info("server")  # type: ignore[assignment]  # sync client
            return str(info.get("redis_version", "?"))
        except redis.RedisError:
            return "?"

    def snapshot(self) -> None:
        """SAVE the current data set: a later restart comes back to this point (an *old* snapshot)."""
        self.client().save()

    def flush(self) -> None:
        self.client().flushall()

    def restart(self, group: ProcessGroup, flush: bool = False) -> float:
        """Stop without saving and start again; returns the seconds Redis was down."""
        down_at = time.monotonic()
        group.stop(self.name, timeout=5)
        if flush:
            (self.data_dir / "dump.rdb").unlink(missing_ok=True)
        self.start(group)
        return time.monotonic() - down_at
