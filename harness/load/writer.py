"""requests.csv from one or many Locust processes: rows batched per process, each batch one O_APPEND write.

CsvAppender opens the file with O_APPEND; `append_many` formats a batch and writes it with a single
write(2) (the buffer is empty before each batch and flushed after it), and Linux serialises appends to a
regular local file, so batches of concurrent worker processes never interleave inside a line. The header is
written once, under an flock, by whichever process comes first (the runner pre-creates the file).
Not for NFS: remote workers write their own requests.csv (see README.md).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from harness.run.runfolder import REQUESTS_COLUMNS, CsvAppender

BATCH_ROWS = 200


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

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            for i in range(0, len(rows), BATCH_ROWS):
                self._out.append_many(rows[i:i + BATCH_ROWS])
            self.written += len(rows)

    def close(self) -> None:
        self.flush()
        self._out.close()


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
