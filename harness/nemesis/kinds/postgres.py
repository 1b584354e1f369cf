"""postgres_pressure: the proxies' database stalls (through the stack's PostgresControl: its own Postgres).

A separate session of the harness (application_name `harness-nemesis-pg`) puts the pressure on; everything it does
is tied to its session, so it ends when the window ends (`end`), when the nemesis stops (Ctrl-C, an error: open
windows are ended), and — with no action at all — when the harness process dies (Postgres drops the locks of a
closed connection). `final_reset` terminates any such session still there.

- `lock_tables`: `LOCK TABLE <tables> IN <lock_mode> MODE` in one transaction held for the whole window. With
  `exclusive` (the default) plain SELECTs still run but every write waits (LiteLLM's spend updates of
  `LiteLLM_VerificationToken` and its spend-log inserts, `LiteLLM_SpendLogs`); `access_exclusive` also stalls the
  reads (key lookups on an auth-cache miss, the sampler's DB spend); `share` blocks writes like `exclusive`.
- `slow`: the same lock taken for `hold_ms` out of every `period_ms`: writes (and with access_exclusive reads)
  are delayed by up to `hold_ms` instead of stalled.
- `connections`: every free connection slot (or `connections` of them) is taken by idle sessions, so a client
  that opens a new connection gets "too many clients"; with `terminate_others` the other sessions of the
  database (LiteLLM's pool, the sampler's) are terminated first, so they must reconnect — and cannot until the
  window ends.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import psycopg
from psycopg import sql
from pydantic import Field, model_validator

from harness.nemesis.registry import FaultKindSpec, FaultParams, FaultRun, register
from harness.stack.base import PostgresControl

APP_NAME = "harness-nemesis-pg"
LOCK_TIMEOUT_S = 10            # how long taking the lock may wait for the sessions holding conflicting ones
LOCK_MODES = {"exclusive": "EXCLUSIVE", "access_exclusive": "ACCESS EXCLUSIVE", "share": "SHARE"}
DEFAULT_TABLES = ("LiteLLM_VerificationToken", "LiteLLM_SpendLogs")
_MODE_FIELDS = {"lock_tables": {"tables", "lock_mode"}, "slow": {"tables", "lock_mode", "hold_ms", "period_ms"},
                "connections": {"connections", "terminate_others"}}
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


def _connect(dsn: str, autocommit: bool = False) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=5, application_name=APP_NAME)


class PostgresPressure(FaultParams):
    """Postgres stalls the proxies' spend writes (and, by mode, their reads or new connections): a session of the
    harness locks the spend tables for the window (`lock_tables`), locks them on and off (`slow`), or takes every
    free connection slot (`connections`). Needs the stack's own Postgres (local backend). It ends with the window,
    on Ctrl-C and with the harness process (the locks and connections belong to its session)."""

    mode: Literal["lock_tables", "slow", "connections"] = Field(
        "lock_tables", description="lock_tables: hold the lock for the window; slow: hold it `hold_ms` of every "
                                   "`period_ms`; connections: take every free connection slot")
    tables: list[str] = Field(default_factory=lambda: list(DEFAULT_TABLES), min_length=1,
                              description="the tables to lock (lock_tables, slow), by their exact names")
    lock_mode: Literal["exclusive", "access_exclusive", "share"] = Field(
        "exclusive", description="exclusive: writes wait, plain reads run; access_exclusive: reads wait too; "
                                 "share: writes wait (lock_tables, slow)")
    hold_ms: float = Field(500.0, gt=0, description="slow: how long each lock is held (ms)")
    period_ms: float = Field(1000.0, gt=0, description="slow: one lock every this many ms (more than hold_ms)")
    connections: int | None = Field(None, ge=1, le=1000, description="connections: how many to take; null: every "
                                                                     "free slot")
    terminate_others: bool = Field(False, description="connections: first terminate the database's other sessions "
                                                      "(LiteLLM's pool, the sampler's), so they must reconnect")

    @model_validator(mode="after")
    def _fits_the_mode(self) -> PostgresPressure:
        foreign = (self.model_fields_set - {"mode"}) - _MODE_FIELDS[self.mode]
        if foreign:
            raise ValueError(f"mode {self.mode} takes no {', '.join(sorted(foreign))}")
        for table in self.tables:
            if not _is_ident(table):
                raise ValueError(f"table {table!r} is not a plain table name")
        if self.mode == "slow" and self.hold_ms >= self.period_ms:
            raise ValueError("hold_ms must be less than period_ms")
        return self

    # -- the behaviour ------------------------------------------------------------------------------
    def _lock_sql(self) -> sql.Composed:
        return sql.SQL("LOCK TABLE {} IN {} MODE").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in self.tables), sql.SQL(LOCK_MODES[self.lock_mode]))

    def _lock(self, conn: psycopg.Connection[Any]) -> None:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{LOCK_TIMEOUT_S}s")))
            cur.execute(self._lock_sql())

    def start(self, run: FaultRun) -> str:
        stack: PostgresControl = run.stack
        dsn = stack.postgres_admin_dsn()
        run.state["t0"] = time.monotonic()
        what = ", ".join(self.tables)
        if self.mode == "lock_tables":
            conn = _connect(dsn)
            run.state["conn"] = conn
            self._lock(conn)          # a transaction stays open (autocommit off) until end()
            return f"postgres: {what} locked IN {LOCK_MODES[self.lock_mode]} MODE"
        if self.mode == "slow":
            stop = threading.Event()
            conn = _connect(dsn)
            run.state.update(conn=conn, stop=stop, cycles=0, errors=[])
            self._lock(conn)
            conn.commit()             # the first cycle proves the lock can be taken (else start fails)
            thread = threading.Thread(target=self._slow_loop, args=(conn, stop, run.state),
                                      name="postgres-pressure-slow", daemon=True)
            run.state["thread"] = thread
            thread.start()
            return (f"postgres: {what} locked IN {LOCK_MODES[self.lock_mode]} MODE for {self.hold_ms:g} ms of every "
                    f"{self.period_ms:g} ms")
        return self._take_connections(dsn, run)

    def _slow_loop(self, conn: psycopg.Connection[Any], stop: threading.Event, state: dict[str, Any]) -> None:
        period, hold = self.period_ms / 1000, self.hold_ms / 1000
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                self._lock(conn)
                stop.wait(hold)
                conn.commit()
                state["cycles"] += 1
            except psycopg.Error as exc:
                state["errors"].append(f"{type(exc).__name__}: {exc}")
                try:
                    conn.rollback()
                except psycopg.Error:
                    return
            next_at += period
            stop.wait(max(0.0, next_at - time.monotonic()))

    def _take_connections(self, dsn: str, run: FaultRun) -> str:
        admin = _connect(dsn, autocommit=True)
        conns: list[psycopg.Connection[Any]] = [admin]
        run.state["conns"] = conns
        with admin.cursor() as cur:
            cur.execute("SELECT current_setting('max_connections')::int, count(*) FROM pg_stat_activity "
                        "WHERE backend_type = 'client backend'")
            row = cur.fetchone()
        max_conn, used = (int(row[0]), int(row[1])) if row else (0, 0)
        want = self.connections if self.connections is not None else max(0, max_conn - used)
        refused = ""
        while len(conns) - 1 < want:
            try:
                conns.append(_connect(dsn, autocommit=True))
            except psycopg.OperationalError as exc:
                refused = " ".join(str(exc).split())[:120]
                break
        terminated = 0
        if self.terminate_others:
            with admin.cursor() as cur:
                cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                            "datname = current_database() AND backend_type = 'client backend' AND "
                            "application_name <> %s AND pid <> pg_backend_pid()", (APP_NAME,))
                row = cur.fetchone()
                terminated = int(row[0]) if row else 0
        return (f"postgres: {len(conns)} connection(s) taken (max_connections {max_conn}, {used} in use before)"
                + (f", then refused: {refused}" if refused else "")
                + (f"; {terminated} other session(s) terminated" if self.terminate_others else ""))

    def end(self, run: FaultRun) -> str:
        held = time.monotonic() - float(run.state.get("t0", time.monotonic()))
        if self.mode == "slow":
            stop, thread = run.state.get("stop"), run.state.get("thread")
            if stop is not None:
                stop.set()
            if thread is not None:
                thread.join(timeout=LOCK_TIMEOUT_S + self.hold_ms / 1000 + 5)
        closed = 0
        for conn in [run.state.pop("conn", None), *run.state.pop("conns", [])]:
            if conn is None:
                continue
            try:
                if not conn.closed and not conn.autocommit:
                    conn.rollback()
            finally:
                conn.close()
                closed += 1
        if self.mode == "connections":
            return f"postgres: {closed} connection(s) closed after {held:.1f} s"
        extra = ""
        if self.mode == "slow":
            errors = run.state.get("errors") or []
            extra = f", {run.state.get('cycles', 0)} lock cycles" + (f", {len(errors)} failed ({errors[0]})"
                                                                    if errors else "")
        return f"postgres: {', '.join(self.tables)} released after {held:.1f} s{extra}"

    @staticmethod
    def final_reset(stack: Any) -> None:
        """Terminate any pressure session still there (an `end` that failed)."""
        control: PostgresControl = stack
        with _connect(control.postgres_admin_dsn(), autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                        "AND pid <> pg_backend_pid()", (APP_NAME,))


def _is_ident(name: str) -> bool:
    import re

    return re.fullmatch(_IDENT, name) is not None


register(FaultKindSpec("postgres_pressure", PostgresPressure, needs=PostgresControl, on="postgres"))
