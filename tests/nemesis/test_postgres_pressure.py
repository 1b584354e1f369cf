"""postgres_pressure against a real Postgres (own process group, free port): the spend tables locked for the
window, locked on and off, connection slots taken; all of it gone at the window's end, at the nemesis's stop()
(Ctrl-C) and when the harness process dies; bad params refused with one line."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harness.errors import HarnessError
from harness.nemesis.kinds.postgres import APP_NAME, PostgresPressure
from harness.nemesis.registry import FaultRun, check_capabilities, fault_kind
from harness.nemesis.schedule import Nemesis
from harness.run.runfolder import FAULTS_FILE
from harness.scenario.model import FaultWindow, load_scenario
from harness.util.procs import ProcessGroup
from tests.conftest import FakeStack
from tests.realservers import postgres_server

TABLES = ("LiteLLM_VerificationToken", "LiteLLM_SpendLogs")


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    group = ProcessGroup(tmp_path_factory.mktemp("pg") / "state")
    try:
        with postgres_server(group) as dsn:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute('CREATE TABLE "LiteLLM_VerificationToken"(token text PRIMARY KEY, spend float8)')
                conn.execute('CREATE TABLE "LiteLLM_SpendLogs"(request_id text PRIMARY KEY, spend float8)')
                conn.execute('INSERT INTO "LiteLLM_VerificationToken" VALUES (\'t\', 0)')
            yield dsn
    finally:
        group.stop_all()


class PgStack(FakeStack):
    def __init__(self, dsn: str) -> None:
        super().__init__("pg")
        self.dsn = dsn

    def postgres_admin_dsn(self) -> str:
        return self.dsn


def _write_waits(dsn: str, timeout_ms: int = 150) -> bool:
    """Whether a spend update (what LiteLLM's batch writer does) has to wait for a lock."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET lock_timeout = {timeout_ms}")
        try:
            conn.execute('UPDATE "LiteLLM_VerificationToken" SET spend = spend + 1 WHERE token = \'t\'')
        except psycopg.errors.LockNotAvailable:
            return True
    return False


def _read_works(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET lock_timeout = 150")
        try:
            conn.execute('SELECT spend FROM "LiteLLM_VerificationToken"').fetchall()
        except psycopg.errors.LockNotAvailable:
            return False
    return True


def _sessions(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           (APP_NAME,)).fetchone()
        return int(row[0]) if row else -1


def _eventually(check: Any, deadline_s: float = 10.0) -> bool:
    """A session's end shows in pg_stat_activity a moment after its client closed it (the backend exits)."""
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def _run(dsn: str) -> FaultRun:
    return FaultRun(stack=PgStack(dsn), target=None, mock=lambda: None)   # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(("lock_mode", "reads"), [("exclusive", True), ("access_exclusive", False)])
def test_lock_tables_stalls_spend_writes_for_the_window(dsn: str, lock_mode: str, reads: bool) -> None:
    params = PostgresPressure(mode="lock_tables", lock_mode=lock_mode)   # type: ignore[arg-type]
    run = _run(dsn)
    note = params.start(run)
    try:
        assert note == f"postgres: {', '.join(TABLES)} locked IN {lock_mode.upper().replace('_', ' ')} MODE"
        assert _write_waits(dsn) and _read_works(dsn) is reads and _sessions(dsn) == 1
    finally:
        end = params.end(run)
    assert end.startswith(f"postgres: {', '.join(TABLES)} released after ")
    assert not _write_waits(dsn) and _eventually(lambda: _sessions(dsn) == 0)


def test_slow_locks_on_and_off(dsn: str) -> None:
    params = PostgresPressure(mode="slow", hold_ms=200, period_ms=400, tables=["LiteLLM_VerificationToken"])
    run = _run(dsn)
    params.start(run)
    try:
        waited = []
        for _ in range(12):
            waited.append(_write_waits(dsn, timeout_ms=20))
            time.sleep(0.05)
        assert any(waited) and not all(waited)
    finally:
        note = params.end(run)
    assert "lock cycles" in note and "failed" not in note and run.state["cycles"] >= 1
    assert not _write_waits(dsn) and _eventually(lambda: _sessions(dsn) == 0)


def test_connections_takes_slots_and_can_end_other_sessions(dsn: str) -> None:
    victim = psycopg.connect(dsn, autocommit=True)
    params = PostgresPressure(mode="connections", connections=5, terminate_others=True)
    run = _run(dsn)
    note = params.start(run)
    try:
        assert note.startswith("postgres: 6 connection(s) taken (max_connections ")
        assert "other session(s) terminated" in note and _sessions(dsn) == 6

        def gone() -> bool:
            try:
                victim.execute("SELECT 1")
            except psycopg.OperationalError:
                return True
            return False

        assert _eventually(gone)
    finally:
        assert params.end(run).startswith("postgres: 6 connection(s) closed after ")
        victim.close()
    assert _eventually(lambda: _sessions(dsn) == 0)


def test_stop_ends_an_open_window_and_final_reset_leaves_no_session(dsn: str, tmp_path: Path) -> None:
    window = FaultWindow(kind="postgres_pressure", at_s=0.0, duration_s=0.0, params={"mode": "lock_tables"})
    stack = PgStack(dsn)
    nemesis = Nemesis([window], stack, None, tmp_path)
    nemesis.start(time.time())
    deadline = time.monotonic() + 10
    while _sessions(dsn) != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _write_waits(dsn)
    nemesis.stop()                          # what Ctrl-C does: open windows end
    assert not _write_waits(dsn) and _eventually(lambda: _sessions(dsn) == 0) and nemesis.errors == []
    with open(tmp_path / FAULTS_FILE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["event"], r["target"]) for r in rows] == [("start", "postgres"), ("end", "postgres")]
    assert rows[1]["note"].startswith("ended by stop(); postgres: ")


def test_a_dead_harness_process_leaves_no_lock(dsn: str, tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from harness.nemesis.kinds.postgres import PostgresPressure
        from harness.nemesis.registry import FaultRun
        class S:
            def postgres_admin_dsn(self): return {dsn!r}
        run = FaultRun(stack=S(), target=None, mock=lambda: None)   # holds the session, like the nemesis
        PostgresPressure(mode="lock_tables").start(run)
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        assert _write_waits(dsn)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while _write_waits(dsn):
        assert time.monotonic() < deadline, "the lock outlived its process"
    assert _eventually(lambda: _sessions(dsn) == 0)


def _load(tmp_path: Path, params: str) -> Any:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: x\nexpect: clean\nfaults:\n  - {{kind: postgres_pressure, at_s: 1, duration_s: 5, "
                    f"params: {params}}}\n")
    return load_scenario(path)


@pytest.mark.parametrize(("params", "expected"), [
    ("{mode: drop}", "faults.0.params.mode: Input should be 'lock_tables', 'slow' or 'connections'"),
    ("{mode: lock_tables, hold_ms: 5}", "mode lock_tables takes no hold_ms"),
    ("{mode: connections, tables: [x]}", "mode connections takes no tables"),
    ("{mode: slow, hold_ms: 500, period_ms: 400}", "hold_ms must be less than period_ms"),
    ("{tables: ['a; DROP TABLE b']}", "is not a plain table name"),
    ("{tables: []}", "faults.0.params.tables: List should have at least 1 item"),
    ("{lock_mode: row}", "faults.0.params.lock_mode: Input should be"),
    ("{mode: connections, connections: 0}", "faults.0.params.connections: Input should be greater than"),
    ("{mode: lock_tables, lok_mode: exclusive}", "faults.0.params.lok_mode: Extra inputs are not permitted"),
])
def test_bad_params_are_one_line(tmp_path: Path, params: str, expected: str) -> None:
    with pytest.raises(HarnessError) as err:
        _load(tmp_path, params)
    assert expected in str(err.value) and "\n" not in err.value.problem


def test_the_kind_needs_the_stacks_own_postgres(tmp_path: Path) -> None:
    scenario = _load(tmp_path, "{mode: slow, hold_ms: 100, period_ms: 500}")
    spec = fault_kind("postgres_pressure")
    assert spec is not None and spec.on == "postgres" and spec.target(scenario.faults[0]) == "postgres"
    with pytest.raises(HarnessError, match="faults.0: kind postgres_pressure needs the stack capability "
                                           "PostgresControl, which the fake backend does not have"):
        check_capabilities(scenario.faults, FakeStack("f"))
    check_capabilities(scenario.faults, PgStack("postgresql://x"))
