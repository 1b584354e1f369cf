"""The ground-truth ledger (one row per upstream call) and the run-time control event log.

Rows are buffered in memory and written by `flush()`, which the server calls at least every
`FLUSH_S` seconds and at shutdown; a killed mock loses at most that much.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from harness.run.runfolder import LEDGER_COLUMNS

FLUSH_S = 0.5
EVENTS_COLUMNS = (
    "t",        # Unix time of the change
    "event",    # start | set_faults | reset | stop
    "source",   # config | control | signal
    "change",   # JSON: what was asked for (the patch)
    "config",   # JSON: the effective configuration after the change
)


class _CsvFile:
    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        self._fh: IO[str] = open(path, "a", newline="", buffering=1 << 16)  # noqa: SIM115
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(columns)
            self._fh.flush()

    def write(self, rows: list[tuple[object, ...]]) -> None:
        self._writer.writerows(rows)
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            try:
                os.fsync(self._fh.fileno())
            except OSError:
                pass
            self._fh.close()


class Ledger:
    """Buffered ledger.csv writer with the shared LEDGER_COLUMNS (single-threaded: the event loop)."""

    columns = LEDGER_COLUMNS

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = _CsvFile(path, LEDGER_COLUMNS)
        self._rows: list[tuple[object, ...]] = []
        self.count = 0

    def record(self, t_start: float, t_end: float, request_id: str, model: str, end_user: str, stream: bool,
               prompt_tokens: int, promised: int, delivered: int, chunks: int, outcome: str) -> None:
        self._rows.append((repr(t_start), repr(t_end), request_id, model, end_user, 1 if stream else 0,
                           prompt_tokens, promised, delivered, chunks, outcome))
        self.count += 1

    def flush(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            self._file.write(rows)

    def close(self) -> None:
        self.flush()
        self._file.close()


class EventLog:
    """mock-events.csv: every configuration change, written through at once (they are rare)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = _CsvFile(path, EVENTS_COLUMNS)

    def record(self, event: str, source: str, change: Any, config: Any) -> None:
        self._file.write([(repr(time.time()), event, source, _json(change), _json(config))])

    def close(self) -> None:
        self._file.close()


def _json(value: Any) -> str:
    if value is None:
        return ""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


EXPORT_BATCH = 5000     # rows per piece of an export (read in a worker thread, sent as one chunk)


def export_rows(path: Path, since: float, end_user_prefix: str | None = None) -> Iterator[bytes]:
    """The CSV file at `path` (ledger or events) as CSV pieces: the header, then the rows whose first column
    (a Unix time) is at least `since` and — with `end_user_prefix`, ledger only — whose end user starts with it.
    What `GET /control/ledger` and `/control/events` stream to a harness that does not share this disk."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        i_user = header.index("end_user") if end_user_prefix is not None and "end_user" in header else None
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        n = 0
        for row in reader:
            try:
                if not row or float(row[0]) < since:
                    continue
            except ValueError:
                continue
            if i_user is not None and not row[i_user].startswith(end_user_prefix or ""):
                continue
            writer.writerow(row)
            n += 1
            if n % EXPORT_BATCH == 0:
                yield out.getvalue().encode()
                out.seek(0)
                out.truncate()
        yield out.getvalue().encode()
