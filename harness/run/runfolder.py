"""The run folder (`results/<run-id>/`): file names and CSV columns shared by every stage.

This module is the contract between the load generator, the mock LLM, the sampler, the nemesis and the
analyzer. Every CSV is appended as it happens (a killed run is still analysable); times are Unix epoch
seconds (float) so files written by different processes line up.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from harness.util.fsutil import atomic_write_text

SCENARIO_FILE = "scenario.yaml"      # the resolved scenario
META_FILE = "meta.json"              # versions, seed, backend, timings; never secrets
REQUESTS_FILE = "requests.csv"       # one row per client request (Locust users)
LEDGER_FILE = "ledger.csv"           # one row per upstream call (mock LLM): the ground truth
SAMPLES_FILE = "samples.csv"         # Redis counter and DB spend per end user per sample
COUNTERS_FILE = "counters.csv"       # every other spend counter kind (key, team, user, org, ...) per sample
FAULTS_FILE = "faults.csv"           # fault windows (start and end events)
VERDICT_FILE = "verdict.json"
REPORT_FILE = "report.md"
MOCK_EVENTS_FILE = "mock-events.csv"  # every run-time fault change of the mock, with its time
SPEND_LOGS_FILE = "spend-logs.csv"    # LiteLLM's own per-request bill (LiteLLM_SpendLogs), dumped after the drain
PROBES_FILE = "probes.csv"            # the in-process counter probe's reads (harness/run/probe.py)

REQUESTS_COLUMNS = (
    "t_start",            # when the client sent the request
    "t_end",              # when the client got the full answer, gave up or walked away
    "end_user",           # the end-user id sent to the proxy
    "replica",            # index of the proxy replica the request went to (0-based)
    "stream",             # 1 streaming, 0 not
    "disconnect_after",   # chunks after which the client planned to walk away (empty: never)
    "disconnected",       # 1 when the client walked away before the stream ended
    "chunks",             # content chunks received
    "status",             # HTTP status (0: no response: connection error or client timeout)
    "error_type",         # empty on success; else a short class: http_error, timeout, connection, ...
    "error_text",         # the error message text as the proxy sent it (for budget messages)
    "latency_s",          # t_end - t_start
    "attempt",            # 0 for the first try, 1.. for retries of the same logical request
    "request_id",         # the harness's id for the request (sent as a header the mock records)
    "key",                # index of the run's virtual key the request was sent with (meta.json `entities`);
                          # empty: the master key (and in run folders written before the column existed)
)

LEDGER_COLUMNS = (
    "t_start", "t_end",
    "request_id",         # the harness's request id when the proxy forwarded it, else the mock's own
    "model",
    "end_user",           # the end-user id as it reached the upstream (body `user`, ...)
    "stream",             # 1 / 0
    "prompt_tokens",
    "completion_tokens_promised",   # what the response would carry in full (usage)
    "completion_tokens_delivered",  # what actually went out before the end / cut / disconnect
    "chunks_sent",
    "outcome",            # ok | client_gone | fault:<kind>
)

SAMPLES_COLUMNS = (
    "t",                  # sample time
    "sample",             # sample sequence number
    "end_user",
    "redis_counter",      # float; empty when the counter key does not exist — and always empty in a run whose
                          # proxies keep their counters in process memory (scenario `counters: memory`): not read
    "counter_ttl",        # seconds left on the counter key; empty when absent
    "db_spend",           # LiteLLM_EndUserTable.spend; empty when the end user has no row
)

COUNTERS_COLUMNS = (
    "t",                  # sample time (the same sample as samples.csv's row of that `sample`)
    "sample",             # sample sequence number
    "kind",               # the counter kind: key | team | user | org (| tag | team_member | ...)
    "id",                 # what follows `spend:<kind>:` (key: the hashed token; team: team_id; ...)
    "redis_counter",      # float; empty when the counter key does not exist
    "counter_ttl",        # seconds left on the counter key; empty when absent, -1 without expiry
    "db_spend",           # the entity's DB spend (LiteLLM_VerificationToken / TeamTable / UserTable /
                          # OrganizationTable .spend); empty without a row (or a kind with no table)
)

SPEND_LOGS_COLUMNS = (
    "request_id",         # LiteLLM's id of the row: the response id (the mock's `chatcmpl-<request_id>`), else
                          # LiteLLM's call id (a failure, e.g. a budget rejection)
    "litellm_call_id",    # LiteLLM's call id (only versions whose table has the column, e.g. 1.108.7)
    "call_type",
    "status",             # success | failure (empty: the version's table has no such column)
    "end_user",
    "spend",              # what LiteLLM billed for the request ($): response_cost
    "prompt_tokens",
    "completion_tokens",
    "start_time",         # "startTime" as epoch seconds
    "end_time",           # "endTime" as epoch seconds
)

PROBES_COLUMNS = (
    "t",                  # when the probe request was answered
    "round",              # probe round (every `probe.every_s`; the last one after the drain)
    "kind",               # key
    "id",                 # the key's hashed token (what follows `spend:key:`)
    "name",               # the key's alias
    "replica",            # the replica probed (each keeps its own counter when counters live in memory)
    "status",             # HTTP status of the probe request (0: no answer)
    "counter",            # X of the rejection's `Current cost: X`: the counter the proxy's budget check read; empty
                          # when no counter could be read (see `error`)
    "printed_budget",     # Y of `Max budget: Y` (the probe's budget, 0)
    "includes_reservation",  # 0: X is the counter alone (the read-time key check, before any reservation);
                          # 1: X includes this request's own reservation (the reservation-path wording)
    "db_spend",           # LiteLLM_VerificationToken.spend of the key at the start of the round
    "max_budget",         # the key's max_budget, restored after the probe
    "admitted",           # 1 when the probe request was answered 2xx (it reached the upstream: not a read)
    "latency_s",          # the probe request's duration
    "error",              # why no counter was read (empty when one was)
)

FAULTS_COLUMNS = (
    "t",                  # when the event happened
    "event",              # start | end
    "window",             # window id (index in the scenario's fault schedule)
    "kind",               # e.g. mock_error, redis_latency, kill_replica, restart_redis, flush_redis
    "target",             # e.g. replica index, "redis", "mock"
    "params",             # JSON of the window's parameters
    "note",               # what happened (e.g. "replica 2 restarted, healthy after 21.3 s")
)


class CsvAppender:
    """Thread-safe CSV appender with a header, buffered and flushed at least every `flush_s` seconds."""

    def __init__(self, path: Path, columns: Sequence[str], flush_s: float = 1.0) -> None:
        self.path = path
        self.columns = tuple(columns)
        self.flush_s = flush_s
        self._lock = threading.Lock()
        new = not path.exists() or path.stat().st_size == 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = open(path, "a", newline="", buffering=1 << 16)  # noqa: SIM115
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(self.columns)
            self._fh.flush()
        self._last_flush = time.monotonic()

    def append(self, row: Mapping[str, object]) -> None:
        values = [_cell(row.get(c)) for c in self.columns]
        with self._lock:
            self._writer.writerow(values)
            if time.monotonic() - self._last_flush >= self.flush_s:
                self._fh.flush()
                self._last_flush = time.monotonic()

    def append_many(self, rows: Sequence[Mapping[str, object]]) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in self.columns])
        with self._lock:
            self._fh.write(buf.getvalue())
            self._fh.flush()
            self._last_flush = time.monotonic()

    def flush(self) -> None:
        with self._lock:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._last_flush = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                self._fh.close()


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return repr(value)
    return value


class MetaWriter:
    """meta.json, rewritten atomically whenever something is learned (never holds secrets).

    Every `status` change is also appended to `status_history` ([epoch s, status] pairs), so a run that died
    shows how far it got.
    """

    def __init__(self, path: Path, initial: Mapping[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = dict(initial)
        self.data.setdefault("status_history", [])
        if "status" in self.data:
            self.data["status_history"].append([time.time(), self.data["status"]])
        self.write()

    def update(self, **fields: Any) -> None:
        if "status" in fields and fields["status"] != self.data.get("status"):
            self.data["status_history"].append([time.time(), fields["status"]])
        self.data.update(fields)
        self.write()

    @property
    def statuses(self) -> list[str]:
        return [status for _, status in self.data["status_history"]]

    def write(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=2, default=str))


def new_run_id(scenario_name: str, version: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{stamp}-{scenario_name}-{version}"
