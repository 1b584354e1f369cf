"""requests.csv from one or many Locust processes: rows batched per process, each batch one O_APPEND write.

CsvAppender opens the file with O_APPEND; `append_many` formats a batch and writes it with a single
write(2) (the buffer is empty before each batch and flushed after it), and Linux serialises appends to a
regular local file, so batches of concurrent worker processes never interleave inside a line. The header is
written once, under an flock, by whichever process comes first (the runner pre-creates the file).
Not for NFS. Workers on other machines (LoadConfig.rows_via_master) do not open the file: a RowForwarder
batches their rows and sends them to the Locust master (a custom message, harness/load/locustfile.py), whose
RowWriter appends them; `encode_rows`/`decode_rows` are that message's body.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.run.runfolder import REQUESTS_COLUMNS, CsvAppender

BATCH_ROWS = 200
MESSAGE_ROWS = 1000            # rows per message a worker sends to the master (~80 kB of msgpack)
log = logging.getLogger("harness.load")


def open_appender(path: Path) -> CsvAppender:
    """A CsvAppender on `path` whose header is written at most once across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:       # flock on the file itself: no lock file in the run folder
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return CsvAppender(path, REQUESTS_COLUMNS)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class RowWriter:
    """Buffers rows in memory; `flush()` appends them in batches (call it every ~0.5 s and at the end)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid = os.getpid()
        self._rows: list[Mapping[str, object]] = []
        self._lock = threading.Lock()
        self._out = open_appender(path)
        self.written = 0

    def add(self, row: Mapping[str, object]) -> None:
        self._rows.append(row)
        if len(self._rows) >= BATCH_ROWS * 5:
            self.flush()

    def add_many(self, rows: Sequence[Mapping[str, object]]) -> None:
        self._rows.extend(rows)

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            for i in range(0, len(rows), BATCH_ROWS):
                self._out.append_many(rows[i:i + BATCH_ROWS])
            self.written += len(rows)

    def close(self) -> None:
        self.flush()
        self._out.close()


def encode_rows(rows: Sequence[Mapping[str, object]]) -> dict[str, Any]:
    """A batch as a message body: the column names once, then one list of values per row (msgpack keeps
    floats, ints, bools, strings and None as they are, so the master writes exactly what the worker would)."""
    return {"columns": list(REQUESTS_COLUMNS), "rows": [[row.get(c) for c in REQUESTS_COLUMNS] for row in rows]}


def decode_rows(data: Mapping[str, Any]) -> list[dict[str, object]]:
    """The rows of a message body (matched by column name: a column the sender lacks stays empty)."""
    columns = list(data["columns"])
    return [dict(zip(columns, values, strict=True)) for values in data["rows"]]


class RowForwarder:
    """A Locust worker's rows for the master: buffered like RowWriter's; `flush()` hands them to `send` (the
    worker's `runner.send_message`) in order, at most MESSAGE_ROWS per message.

    The lock is held across taking the rows and sending them, so a flush that starts later (the one at
    `test_stop`) sends only after an earlier one has sent: messages leave in the order the rows were added.
    A send that fails (the master gone) keeps its rows for the next flush; `sent` counts rows handed over.
    """

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self.pid = os.getpid()
        self._send = send
        self._rows: list[Mapping[str, object]] = []
        self._lock = threading.Lock()
        self.sent = 0
        self.failed_sends = 0

    def add(self, row: Mapping[str, object]) -> None:
        self._rows.append(row)
        if len(self._rows) >= MESSAGE_ROWS:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            for i in range(0, len(rows), MESSAGE_ROWS):
                batch = rows[i:i + MESSAGE_ROWS]
                try:
                    self._send(encode_rows(batch))
                except Exception as exc:  # noqa: BLE001 - keep the rows; the caller's loop goes on
                    self._rows[:0] = rows[i:]
                    self.failed_sends += 1
                    log.warning("harness: could not send %d rows to the master (%s); kept for the next flush",
                                len(rows) - i, exc)
                    return
                self.sent += len(batch)

    def close(self) -> None:
        self.flush()


def merge_requests(parts: list[Path], out: Path) -> int:
    """Concatenate requests.csv files of several machines (remote workers) into `out`, ordered by t_start.

    Returns the rows written. Every part must have the REQUESTS_COLUMNS header.
    """
    import csv

    rows: list[dict[str, str]] = []
    for part in parts:
        with open(part, newline="") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != REQUESTS_COLUMNS:
                raise ValueError(f"{part}: not a requests.csv (header {reader.fieldnames})")
            rows.extend(reader)
    rows.sort(key=lambda r: float(r["t_start"] or 0))
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=REQUESTS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
