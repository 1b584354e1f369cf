"""After the drain: LiteLLM's own per-request bill, its `"LiteLLM_SpendLogs"` rows, into spend-logs.csv.

The analyzer joins them with requests.csv and ledger.csv by request id (harness/analyze/reconcile.py): what the
proxy billed for each request against what the upstream delivered. LiteLLM writes one row per request it logged
(success, or failure such as a budget rejection) from a queue flushed every `proxy_batch_write_at` seconds (+ up to
5 s jitter) or sooner when 100 rows are queued; the dump runs once the drain — longer than that interval — is over.
The facts per LiteLLM version: harness/analyze/README.md, *LiteLLM's spend logs*.

    info = dump_spend_logs(dsn, run_dir)      # never raises for a database problem
    meta.update(spend_logs=info)              # {file|None, rows, t, columns_missing[], reason|None}

Only the columns the reconciliation needs are written (SPEND_LOGS_COLUMNS, times as epoch seconds); never the
prompts, the responses, the metadata or the hashed key. A column a version's table lacks is written empty and
named in `columns_missing`. No table, no connection or a failed query: no file and a `reason` — the analyzer
then says "not measured", never "no disagreement". An empty table: a file with the header only (the analyzer
decides whether that means the spend logs were switched off or had not caught up).
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql

from harness.run.runfolder import SPEND_LOGS_COLUMNS, SPEND_LOGS_FILE

log = logging.getLogger(__name__)

TABLE = "LiteLLM_SpendLogs"
# SPEND_LOGS_COLUMNS → the table's column and how it is read
_SOURCE: dict[str, tuple[str, str]] = {
    "request_id": ("request_id", "{c}"),
    "litellm_call_id": ("litellm_call_id", "{c}"),
    "call_type": ("call_type", "{c}"),
    "status": ("status", "{c}"),
    "end_user": ("end_user", "{c}"),
    "spend": ("spend", "{c}::float8"),
    "prompt_tokens": ("prompt_tokens", "{c}"),
    "completion_tokens": ("completion_tokens", "{c}"),
    "start_time": ("startTime", "EXTRACT(EPOCH FROM {c})::float8"),   # stored as UTC (timestamp(3))
    "end_time": ("endTime", "EXTRACT(EPOCH FROM {c})::float8"),
}
REQUIRED = ("request_id", "spend")     # without these the rows cannot be reconciled


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def select_sql(present: set[str], where: str = "") -> tuple[str, list[str]]:
    """The SELECT over the table's columns that exist (`present`); NULL for the others, which are returned.
    `where`: an SQL condition (already quoted) on the table's own columns."""
    parts: list[str] = []
    missing: list[str] = []
    for out in SPEND_LOGS_COLUMNS:
        column, expr = _SOURCE[out]
        if column in present:
            parts.append(f"{expr.format(c=_quote(column))} AS {_quote(out)}")
        else:
            parts.append(f"NULL AS {_quote(out)}")
            missing.append(out)
    order = ", ".join(_quote(c) for c in ("startTime", "request_id") if c in present)
    return (f'SELECT {", ".join(parts)} FROM {_quote(TABLE)}' + (f" WHERE {where}" if where else "")
            + (f" ORDER BY {order}" if order else "")), missing


def dump_spend_logs(dsn: str, run_dir: Path, *, connect_timeout: float = 5.0, end_user_prefix: str = "",
                    postgres_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write spend-logs.csv; returns what meta.json records as `spend_logs` (never raises for the database).
    `end_user_prefix`: only rows of end users whose id starts with it (a shared deployment: the run's own)."""
    run_dir = Path(run_dir)
    path = run_dir / SPEND_LOGS_FILE
    tmp = path.with_name(path.name + ".part")
    t = time.time()
    info: dict[str, Any] = {"file": None, "rows": 0, "t": t, "columns_missing": [], "reason": None}
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=int(max(1, connect_timeout)),
                             **(postgres_options or {})) as conn:
            present = {str(r[0]) for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "AND table_schema = ANY(current_schemas(false))", (TABLE,)).fetchall()}
            if not present:
                info["reason"] = (f'the database has no "{TABLE}" table: this LiteLLM version (or its schema) '
                                  "writes no per-request spend logs")
                return info
            absent = [c for c in REQUIRED if _SOURCE[c][0] not in present]
            if absent:
                info["reason"] = f'"{TABLE}" has no {", ".join(absent)} column: its rows cannot be reconciled'
                return info
            where = ""
            if end_user_prefix:
                if "end_user" not in present:
                    info["reason"] = f'"{TABLE}" has no end_user column: this run\'s rows cannot be told apart'
                    return info
                where = f"starts_with({_quote('end_user')}, {psycopg.sql.Literal(end_user_prefix).as_string(conn)})"
            sql, missing = select_sql(present, where)
            info["columns_missing"] = missing
            with open(tmp, "wb") as fh, conn.cursor() as cur:
                fh.write((",".join(SPEND_LOGS_COLUMNS) + "\n").encode())
                with cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:
                    for chunk in copy:
                        fh.write(chunk)
        with open(tmp, newline="") as fh:
            rows = sum(1 for _ in csv.reader(fh)) - 1      # a quoted cell may hold a newline
        os.replace(tmp, path)
        info.update(file=SPEND_LOGS_FILE, rows=rows)
        if rows == 0:
            info["reason"] = f'"{TABLE}" is empty'
        return info
    except (psycopg.Error, OSError, csv.Error) as exc:
        tmp.unlink(missing_ok=True)
        what = " ".join(str(exc).split())[:300]
        info["reason"] = f'"{TABLE}" not read ({type(exc).__name__}: {what})'
        log.warning("spend logs not dumped: %s", info["reason"])
        return info
