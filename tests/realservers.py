"""Real redis-server and Postgres for tests and benchmarks: free loopback ports, own process groups.

Thin context managers over the harness's own servers (harness.stack.redis_server / postgres), so tests run
the servers exactly as the local stack does (Postgres as the `postgres` user when we are root).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.stack.postgres import PostgresServer
from harness.stack.redis_server import RedisServer
from harness.util.ports import free_port
from harness.util.procs import ProcessGroup, wait_until


@contextmanager
def redis_server(group: ProcessGroup, work: Path, name: str = "redis") -> Iterator[int]:
    server = RedisServer(work / name, free_port(), work / f"{name}.log", name=name)
    try:
        server.start(group, deadline_s=15)
        yield server.port
    finally:
        group.stop(name)


@contextmanager
def postgres_server(group: ProcessGroup, name: str = "postgres") -> Iterator[str]:
    """Yields a DSN of the `postgres` database. The data dir lives in its own temp folder (reachable by the
    postgres user)."""
    base = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    base.chmod(0o755)
    server = PostgresServer(base / "data", free_port(), database="postgres", name=name)
    try:
        server.start(group, base)
        server.wait_ready(timeout=30)
        yield server.dsn
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def relay_process(group: ProcessGroup, work: Path, upstream_port: int,
                  name: str = "relay") -> Iterator[tuple[int, str]]:
    """The fault relay in front of `upstream_port`; yields (listen port, control URL)."""
    from harness.stack.redis_relay import relay_command
    from harness.util.procs import http_ok

    listen, control = free_port(), free_port()
    while control == listen:
        control = free_port()
    group.start(name, relay_command(listen, upstream_port, control, python=sys.executable),
                log=work / f"{name}.log", port=listen)
    url = f"http://127.0.0.1:{control}"
    try:
        wait_until(lambda: http_ok(f"{url}/health"), deadline_s=15, what="relay", interval=0.05,
                   still_alive=lambda: group.alive(name), on_fail=lambda: group.log_tail(name))
        yield listen, url
    finally:
        group.stop(name)
