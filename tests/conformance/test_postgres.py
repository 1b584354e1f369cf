"""harness.stack.postgres.PostgresServer: initdb, start on a loopback port, ready, stop without leftovers."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psutil
import psycopg
import pytest

from harness.stack.postgres import PostgresServer
from harness.util.ports import free_port, is_listening
from harness.util.procs import ProcessGroup

pytestmark = pytest.mark.conformance


def test_postgres_server_lifecycle() -> None:
    work = Path(tempfile.mkdtemp(prefix="harness-pgtest-"))
    work.chmod(0o755)
    group = ProcessGroup(work / "state")
    server = PostgresServer(work / "data", free_port(), database="things")
    try:
        server.start(group, work / "logs")
        server.wait_ready(timeout=60)
        assert server.dsn.endswith(f"127.0.0.1:{server.port}/things")
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("things",)
            listen = conn.execute("SHOW listen_addresses").fetchone()
        assert listen == ("127.0.0.1",)
        assert "postgres" in group.records
        pid = group.records["postgres"].pid
        server.stop()
        assert "postgres" not in group.records
        assert not is_listening(server.port)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        leftovers = [p for p in psutil.process_iter(["cmdline"])
                     if str(work / "data") in " ".join(p.info["cmdline"] or [])]
        assert leftovers == []
        # restart on the existing data dir (no second initdb)
        server.start(group, work / "logs")
        server.wait_ready(timeout=60)
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
        group.stop_all()
        shutil.rmtree(work, ignore_errors=True)
