"""Real redis-server and Postgres 15 for tests and benchmarks: free loopback ports, own process groups.

Postgres refuses to run as root: when we are root, initdb and postgres run as the `postgres` user
(setpriv, which execs, so the recorded process is the server itself).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis

from harness.ports import free_port
from harness.procs import ProcessGroup, wait_until

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@contextmanager
def redis_server(group: ProcessGroup, work: Path, name: str = "redis") -> Iterator[int]:
    port = free_port()
    data = work / name
    data.mkdir(parents=True, exist_ok=True)
    group.start(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                       "--save", "", "--appendonly", "no", "--daemonize", "no"], log=work / f"{name}.log", port=port)

    def ping() -> bool:
        try:
            return bool(redis.Redis(port=port, socket_timeout=1).ping())
        except redis.RedisError:
            return False
    try:
        wait_until(ping, deadline_s=15, what="redis", interval=0.05, still_alive=lambda: group.alive(name))
        yield port
    finally:
        group.stop(name)


def _as_postgres() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid", "postgres", "--regid", "postgres", "--init-groups"]


@contextmanager
def postgres_server(group: ProcessGroup, name: str = "postgres") -> Iterator[str]:
    """Yields a DSN. The data dir lives in its own temp folder (readable by the postgres user)."""
    port = free_port()
    base = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    data, sock, log = base / "data", base / "sock", base / "postgres.log"
    sock.mkdir()
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chmod(base, 0o755)
        for p in (base, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    try:
        subprocess.run([*_as_postgres(), str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True, cwd=base)
        group.start(name, [*_as_postgres(), str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port),
                           "-k", str(sock), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                           "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                    log=log, cwd=base, port=port)
        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"

        def ready() -> bool:
            try:
                with psycopg.connect(dsn, connect_timeout=1):
                    return True
            except psycopg.Error:
                return False
        wait_until(ready, deadline_s=30, what="postgres", interval=0.1, still_alive=lambda: group.alive(name))
        yield dsn
    finally:
        group.stop(name)
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def relay_process(group: ProcessGroup, work: Path, upstream_port: int,
                  name: str = "relay") -> Iterator[tuple[int, str]]:
    """The fault relay in front of `upstream_port`; yields (listen port, control URL)."""
    from harness.procs import http_ok
    from harness.stack.redis_relay import relay_command

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
