"""The sampler: every end user's Redis spend counter and DB spend, every `interval_s`, into samples.csv.

One sample = SCAN (count=1000) over `[<namespace>:]spend:end_user:*` on Redis itself (not through the fault
relay), values by MGET and TTLs by PTTL — each SCAN step with its MGET and PTTLs in one short Lua call (a
plain client-side SCAN + MGET + pipelined PTTL when scripting is refused) — plus one SQL query for every
end user's DB spend (`SELECT user_id, spend FROM "LiteLLM_EndUserTable"`). One row per end user that has
a counter or a row.

Cells: `redis_counter` empty when the key does not exist; `counter_ttl` in seconds (float, ms precision),
empty when the key does not exist, -1 when it exists without an expiry; `db_spend` empty without a DB row.

At stop() the other spend counters (`spend:key:*`, `spend:user:*`, `spend:team:*`, … — everything under
`[<namespace>:]spend:` but the end-user counters) are written once to spend-counters-final.csv (key, value,
ttl): the key/user/team counters the per-second sample does not follow (cold-counter seeding, #28283).

A sample where Redis or Postgres cannot be read (e.g. during a `restart_redis` fault) is skipped entirely —
a half sample would look like "counter gone" — and counted in `errors` / `last_error`. `max_gap` is the
largest time between two written samples (the progress display shows it).
"""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import redis

from harness.run.runfolder import SAMPLES_COLUMNS, SAMPLES_FILE, CsvAppender

log = logging.getLogger(__name__)

END_USER_QUERY = 'SELECT user_id, spend FROM "LiteLLM_EndUserTable"'
SCAN_COUNT = 1000
BATCH = 5000   # keys per MGET / PTTL pipeline
OTHER_COUNTERS_FILE = "spend-counters-final.csv"


def counter_prefix(namespace: str | None) -> str:
    return f"{namespace}:spend:end_user:" if namespace else "spend:end_user:"


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


# One SCAN step (COUNT 1000) and the values and TTLs of the keys it returned, in one server-side call, as one
# flat string "key\0value\0pttl\0key\0..." (a single bulk reply parses ~10x faster in redis-py than arrays).
# Each call blocks Redis for ~1.4 ms per 1000 keys; SCAN keeps every step short.
_SCAN_STEP_LUA = r"""
local res = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local keys, out, n = res[2], {}, 0
if #keys > 0 then
  local values = redis.call('MGET', unpack(keys))
  for i, k in ipairs(keys) do
    if values[i] then
      out[n + 1] = k; out[n + 2] = values[i]; out[n + 3] = redis.call('PTTL', k); n = n + 3
    end
  end
end
return {res[1], table.concat(out, '\0')}
"""

Counters = dict[str, tuple[float, float]]


def _put(out: Counters, prefix_len: int, key: bytes, value: bytes | None, pttl: int) -> None:
    if value is None or pttl == -2:   # expired between SCAN and GET
        return
    try:
        counter = float(value)
    except ValueError:
        return
    out[key[prefix_len:].decode(errors="replace")] = (counter, -1.0 if pttl == -1 else pttl / 1000.0)


def read_counters(client: redis.Redis, namespace: str | None = None, server_side: bool = True,
                  user_prefix: str = "") -> Counters:
    """{end user: (counter, ttl seconds)} for every `[<ns>:]spend:end_user:<user_prefix>*` key (SCAN, never KEYS).

    server_side=True: each SCAN step runs with its MGET + PTTLs in one Lua call (falls back to the client-side
    path when scripting is refused); False: client-side SCAN, then MGET + pipelined PTTL per batch.
    """
    prefix = counter_prefix(namespace)
    match = _glob_escape(prefix + user_prefix) + "*"
    if server_side:
        try:
            return _read_server_side(client, prefix, match)
        except redis.ResponseError as exc:
            log.info("server-side scan refused (%s): client-side scan", exc)
    return _read_client_side(client, prefix, match)


def _read_server_side(client: redis.Redis, prefix: str, match: str) -> Counters:
    script = client.register_script(_SCAN_STEP_LUA)
    out: Counters = {}
    plen = len(prefix.encode())
    cursor: bytes | str = b"0"
    while True:
        cursor, blob = script(args=[cursor, match, SCAN_COUNT])
        if blob:
            parts = blob.split(b"\0")
            if len(parts) % 3:
                raise redis.ResponseError("unexpected reply shape (NUL in a key?)")
            for key, value, pttl in zip(parts[0::3], parts[1::3], parts[2::3], strict=True):
                _put(out, plen, key, value, int(pttl))
        if cursor in (b"0", "0", 0):
            return out


def _read_client_side(client: redis.Redis, prefix: str, match: str) -> Counters:
    keys: list[bytes] = list(dict.fromkeys(client.scan_iter(match=match, count=SCAN_COUNT)))
    out: Counters = {}
    plen = len(prefix.encode())
    for i in range(0, len(keys), BATCH):
        batch = keys[i:i + BATCH]
        pipe = client.pipeline(transaction=False)
        pipe.mget(batch)
        for key in batch:
            pipe.pttl(key)
        results = pipe.execute()
        for key, value, pttl in zip(batch, results[0], results[1:], strict=True):
            _put(out, plen, key, value, pttl)
    return out


def read_other_counters(client: redis.Redis, namespace: str | None = None) -> list[tuple[str, float | None, float]]:
    """(key, value, ttl s) of every spend counter that is not an end user's (`spend:key:*`, `spend:user:*`, …)."""
    root = f"{namespace}:spend:" if namespace else "spend:"
    end_user = counter_prefix(namespace).encode()
    keys = [k for k in dict.fromkeys(client.scan_iter(match=_glob_escape(root) + "*", count=SCAN_COUNT))
            if not k.startswith(end_user)]
    out: list[tuple[str, float | None, float]] = []
    for i in range(0, len(keys), BATCH):
        batch = keys[i:i + BATCH]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.get(key)
            pipe.pttl(key)
        results = pipe.execute(raise_on_error=False)
        for j, key in enumerate(batch):
            value, pttl = results[2 * j], results[2 * j + 1]
            try:
                number = float(value) if value is not None else None
            except (TypeError, ValueError):
                number = None
            ttl = -1.0 if pttl == -1 else (pttl / 1000.0 if isinstance(pttl, int) and pttl >= 0 else float("nan"))
            out.append((key.decode(errors="replace"), number, ttl))
    return sorted(out)


def read_db_spend(conn: psycopg.Connection[Any], user_prefix: str = "") -> dict[str, float | None]:
    with conn.cursor() as cur:
        if user_prefix:
            cur.execute(END_USER_QUERY + " WHERE starts_with(user_id, %s)", (user_prefix,))
        else:
            cur.execute(END_USER_QUERY)
        return {str(user): (None if spend is None else float(spend)) for user, spend in cur.fetchall()}


class _SamplesAppender(CsvAppender):
    """CsvAppender plus a bulk path: rows already formatted (floats as repr, None as "") in one write.

    `append_many` with dicts costs ~36 ms for 6000 rows on this machine; this costs ~5 ms.
    """

    def append_rows(self, rows: list[tuple[object, ...]]) -> None:
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        with self._lock:
            self._fh.write(buf.getvalue())
            self._fh.flush()
            self._last_flush = time.monotonic()


def _num(value: float | None) -> str:
    return "" if value is None else repr(value)


class Sampler:
    """A thread that samples every `interval_s` (ticks on a fixed grid; missed ticks are skipped)."""

    def __init__(self, redis_url: str, dsn: str, run_dir: Path, interval_s: float = 1.0,
                 namespace: str | None = None, *, user_prefix: str = "",
                 redis_options: dict[str, Any] | None = None, postgres_options: dict[str, Any] | None = None) -> None:
        self.redis_url = redis_url
        self.dsn = dsn
        self.run_dir = Path(run_dir)
        self.interval_s = interval_s
        self.namespace = namespace
        self.user_prefix = user_prefix          # only end users whose id starts with it (external: the run's own)
        self._pg_options = dict(postgres_options or {})
        self.samples = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_duration_s: float | None = None
        self.max_gap: float | None = None
        # the latest sample's largest (Redis counter − DB spend) over end users, for the progress display
        self.max_counter_minus_db: float | None = None
        self._last_t: float | None = None
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2,
                                           **(redis_options or {}))
        self._conn: psycopg.Connection[Any] | None = None
        self._out: _SamplesAppender | None = None
        self._lock = threading.Lock()      # sample_once may be called from the run's thread too
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one sample ---------------------------------------------------------------------------------
    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5, **self._pg_options)
        return self._conn

    def _appender(self) -> _SamplesAppender:
        if self._out is None:
            self._out = _SamplesAppender(self.run_dir / SAMPLES_FILE, SAMPLES_COLUMNS)
        return self._out

    def sample_once(self) -> int:
        """Take one sample now; returns the rows written (0 when the sample was skipped)."""
        with self._lock:
            t = time.time()
            started = time.perf_counter()
            try:
                counters = read_counters(self._redis, self.namespace, user_prefix=self.user_prefix)
                db = read_db_spend(self._db(), self.user_prefix)
            except (redis.RedisError, psycopg.Error, OSError) as exc:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, psycopg.Error) and self._conn is not None:
                    self._conn.close()
                    self._conn = None
                log.warning("sample skipped: %s", self.last_error)
                return 0
            seq, ts = self.samples, repr(t)
            rows: list[tuple[object, ...]] = []
            worst: float | None = None
            for user in sorted(counters.keys() | db.keys()):   # SAMPLES_COLUMNS order
                c = counters.get(user)
                if c is not None and c[0] is not None:
                    gap_usd = float(c[0]) - float(db.get(user) or 0.0)
                    worst = gap_usd if worst is None else max(worst, gap_usd)
                rows.append((ts, seq, user, _num(c[0]) if c else "", _num(c[1]) if c else "", _num(db.get(user))))
            if rows:
                self._appender().append_rows(rows)
            self.samples += 1
            self.max_counter_minus_db = worst
            if self._last_t is not None:
                gap = t - self._last_t
                self.max_gap = gap if self.max_gap is None else max(self.max_gap, gap)
            self._last_t = t
            self.last_duration_s = time.perf_counter() - started
            return len(rows)

    # -- the thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception as exc:  # noqa: BLE001 - the sampler must outlive anything a sample hits
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("sampler error")
            next_at += self.interval_s
            now = time.monotonic()
            if next_at < now:      # a slow sample: skip the missed ticks, stay on the grid
                next_at += ((now - next_at) // self.interval_s + 1) * self.interval_s
            self._stop.wait(next_at - now)

    def stop(self) -> None:
        """Stop the thread (an in-progress sample finishes) and close files and connections."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.dump_other_counters()
        with self._lock:
            if self._out is not None:
                self._out.close()
                self._out = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._redis.close()

    def dump_other_counters(self) -> int:
        """Write spend-counters-final.csv (the non-end-user spend counters now); returns the rows, -1 on error."""
        try:
            rows = read_other_counters(self._redis, self.namespace)
        except (redis.RedisError, OSError) as exc:
            log.warning("other spend counters not read: %s", exc)
            return -1
        with (self.run_dir / OTHER_COUNTERS_FILE).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["key", "value", "ttl"])
            writer.writerows((k, _num(v), _num(t)) for k, v, t in rows)
        return len(rows)

    def status(self) -> dict[str, Any]:
        return {"samples": self.samples, "errors": self.errors, "last_error": self.last_error,
                "last_duration_s": self.last_duration_s, "max_gap": self.max_gap}
