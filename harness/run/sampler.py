"""The sampler: every end user's Redis spend counter and DB spend, every `interval_s`, into samples.csv; every
other counter kind (key, team, user, org) into counters.csv.

One sample = SCAN (count=1000) over `[<namespace>:]spend:end_user:*` on Redis itself (not through the fault
relay), values by MGET and TTLs by PTTL — each SCAN step with its MGET and PTTLs in one short Lua call (a
plain client-side SCAN + MGET + pipelined PTTL when scripting is refused) — plus one SQL query for every
end user's DB spend (`SELECT user_id, spend FROM "LiteLLM_EndUserTable"`). One row per end user that has
a counter or a row.

Cells: `redis_counter` empty when the key does not exist; `counter_ttl` in seconds (float, ms precision),
empty when the key does not exist, -1 when it exists without an expiry; `db_spend` empty without a DB row.

Every other counter kind (`spend:key:<hashed token>`, `spend:team:<team_id>`, `spend:user:<user_id>`,
`spend:org:<org_id>`, and whatever else lives under `[<namespace>:]spend:` — tag, team_member, per-window
`…:window:<d>` counters) is sampled in the same tick into counters.csv (COUNTERS_COLUMNS: t, sample, kind, id,
redis_counter, counter_ttl, db_spend), next to its DB spend (`LiteLLM_VerificationToken.spend` by token,
`LiteLLM_TeamTable.spend` by team_id, `LiteLLM_UserTable.spend` by user_id, `LiteLLM_OrganizationTable.spend`
by organization_id). A file of its own rather than more rows or columns in samples.csv: samples.csv keeps the
one schema every end-user check and every older run folder has (an id there is an end user), the kinds have
different id spaces and DB tables, and an old folder simply has no counters.csv (the analyzer then judges end
users only, as before).

Which counters: when the run created its own keys/teams (`entities`, meta.json `entities`: hashed tokens and
team ids) exactly those, by name (one MGET + PTTL pipeline and one SQL query per kind, O(entities), with a row
per entity even before its counter exists); otherwise everything under `spend:` but `spend:end_user:` (one
server-side SCAN pass that drops the end-user keys inside Redis, so 6000 end users cost a SCAN walk but no
transfer), capped at MAX_OTHER_COUNTERS a sample (a shared deployment's other tenants must not make the sampler
expensive; `other_truncated` counts capped samples). Only reads: safe on a deployment the harness did not
start (`Endpoints.read_only`).

At stop() the other spend counters are also written once to spend-counters-final.csv (key, value, ttl), as
before counters.csv existed (cold-counter seeding, #28283).

Without Redis counters (`in_memory=True`: a stack whose proxies keep their counters in process memory, scenario
`counters: memory`) the sampler reads no Redis at all: samples.csv gets each end user's DB spend with an empty
`redis_counter` (not measured: the counters live in the proxies' memory, read only by the probe, probes.csv),
and no counters.csv or spend-counters-final.csv is written.

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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import redis

from harness.run.runfolder import COUNTERS_COLUMNS, COUNTERS_FILE, SAMPLES_COLUMNS, SAMPLES_FILE, CsvAppender

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
# Each call blocks Redis for ~1.4 ms per 1000 keys; SCAN keeps every step short. ARGV[4] (may be empty): a
# prefix whose keys are skipped inside Redis (the end-user counters, when reading the other kinds). Values by
# MGET: nil for a key that is not a string (e.g. a buffer list), which is left out.
_SCAN_STEP_LUA = r"""
local res = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local skip, keys, out, n = ARGV[4], {}, {}, 0
local ls = #skip
for _, k in ipairs(res[2]) do
  if ls == 0 or string.sub(k, 1, ls) ~= skip then keys[#keys + 1] = k end
end
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

MAX_OTHER_COUNTERS = 2000    # counters.csv rows per sample when the run has no entities of its own
# kind -> (table, id column) holding that entity's DB spend
KIND_TABLES: dict[str, tuple[str, str]] = {
    "key": ("LiteLLM_VerificationToken", "token"),
    "team": ("LiteLLM_TeamTable", "team_id"),
    "user": ("LiteLLM_UserTable", "user_id"),
    "org": ("LiteLLM_OrganizationTable", "organization_id"),
}

_K = TypeVar("_K", bytes, str)    # a Redis key as SCAN returns it, or as the sampler names it
Counters = dict[str, tuple[float, float]]
KindCounters = dict[tuple[str, str], tuple[float, float]]   # (kind, id) -> (counter, ttl s)


def _counter(value: bytes | None, pttl: int) -> tuple[float, float] | None:
    """(counter, ttl s) of a GET/PTTL pair; None when the key is gone (expired between SCAN and GET) or its value
    is not a number. ttl -1: no expiry."""
    if value is None or pttl == -2:
        return None
    try:
        counter = float(value)
    except ValueError:
        return None
    return counter, -1.0 if pttl == -1 else pttl / 1000.0


def _put(out: Counters, prefix_len: int, key: bytes, value: bytes | None, pttl: int) -> None:
    found = _counter(value, pttl)
    if found is not None:
        out[key[prefix_len:].decode(errors="replace")] = found


ScanRows = list[tuple[bytes, bytes, int]]     # (key, value, pttl) of one scan step


def _scan_steps(client: redis.Redis, match: str, skip: str = "") -> Iterator[tuple[bool, ScanRows]]:
    """The server-side scan (_SCAN_STEP_LUA), one step at a time: (last step?, [(key, value, pttl)…])."""
    script = client.register_script(_SCAN_STEP_LUA)
    cursor: bytes | str = b"0"
    while True:
        cursor, blob = script(args=[cursor, match, SCAN_COUNT, skip])
        rows: ScanRows = []
        if blob:
            parts = blob.split(b"\0")
            if len(parts) % 3:
                raise redis.ResponseError("unexpected reply shape (NUL in a key?)")
            rows = [(k, v, int(t)) for k, v, t in zip(parts[0::3], parts[1::3], parts[2::3], strict=True)]
        last = cursor in (b"0", "0", 0)
        yield last, rows
        if last:
            return


def _values_and_ttls(client: redis.Redis, keys: Sequence[_K]) -> Iterator[tuple[_K, bytes | None, int]]:
    """(key, value, pttl) of each key: MGET plus pipelined PTTLs, BATCH keys per round trip."""
    for i in range(0, len(keys), BATCH):
        batch = keys[i:i + BATCH]
        pipe = client.pipeline(transaction=False)
        pipe.mget(batch)
        for key in batch:
            pipe.pttl(key)
        results = pipe.execute()
        yield from zip(batch, results[0], results[1:], strict=True)


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
    out: Counters = {}
    plen = len(prefix.encode())
    for _, rows in _scan_steps(client, match):
        for key, value, pttl in rows:
            _put(out, plen, key, value, pttl)
    return out


def _read_client_side(client: redis.Redis, prefix: str, match: str) -> Counters:
    keys: list[bytes] = list(dict.fromkeys(client.scan_iter(match=match, count=SCAN_COUNT)))
    out: Counters = {}
    plen = len(prefix.encode())
    for key, value, pttl in _values_and_ttls(client, keys):
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


def spend_root(namespace: str | None) -> str:
    return f"{namespace}:spend:" if namespace else "spend:"


def split_counter(name: str) -> tuple[str, str] | None:
    """(kind, id) of a counter name without its `[<ns>:]spend:` root: `key:<tok>` -> ("key", "<tok>")."""
    kind, sep, ident = name.partition(":")
    return (kind, ident) if sep and kind and ident else None


def read_kind_counters(client: redis.Redis, namespace: str | None = None,
                       entities: dict[str, list[str]] | None = None,
                       limit: int = MAX_OTHER_COUNTERS, server_side: bool = True) -> tuple[KindCounters, bool]:
    """{(kind, id): (counter, ttl s)} of the non-end-user spend counters, and whether `limit` cut it short.

    `entities` ({"key": [hashed tokens], "team": [team ids], ...}): exactly those counters, by name (MGET +
    PTTL); None: every counter under `[<ns>:]spend:` but the end users', by a server-side SCAN (client-side when
    scripting is refused), at most `limit`.
    """
    root = spend_root(namespace)
    out: KindCounters = {}
    if entities is not None:
        names = {f"{root}{kind}:{ident}": (kind, ident) for kind, ids in entities.items() for ident in ids}
        for key, value, pttl in _values_and_ttls(client, list(names)):
            _put_kind(out, names[key], value, pttl)
        return out, False
    end_user = counter_prefix(namespace)
    match = _glob_escape(root) + "*"
    plen = len(root.encode())
    truncated = False
    try:
        if not server_side:
            raise redis.ResponseError("server-side scripts not used (a shared deployment: SCAN/GET/PTTL only)")
        for last, rows in _scan_steps(client, match, skip=end_user):
            for raw, value, pttl in rows:
                found = split_counter(raw[plen:].decode(errors="replace"))
                if found is not None:
                    _put_kind(out, found, value, pttl)
            if len(out) >= limit:
                truncated = not last or len(out) > limit
                break
    except redis.ResponseError as exc:
        log.info("server-side scan refused (%s): client-side scan", exc)
        out, truncated = {}, False
        eu = end_user.encode()
        found_keys = [k for k in dict.fromkeys(client.scan_iter(match=match, count=SCAN_COUNT))
                      if not k.startswith(eu)]
        truncated = len(found_keys) > limit
        found_keys = found_keys[:limit]
        for raw, value, pttl in _values_and_ttls(client, found_keys):
            found = split_counter(raw[plen:].decode(errors="replace"))
            if found is not None:
                _put_kind(out, found, value, pttl)
    if len(out) > limit:
        out = dict(sorted(out.items())[:limit])
    return out, truncated


def _put_kind(out: KindCounters, name: tuple[str, str], value: bytes | None, pttl: int) -> None:
    found = _counter(value, pttl)
    if found is not None:
        out[name] = found


def read_kind_db_spend(conn: psycopg.Connection[Any], ids: dict[str, list[str]]) -> dict[tuple[str, str], float | None]:
    """{(kind, id): DB spend} for the ids of each kind that has a table (KIND_TABLES), one query per kind."""
    out: dict[tuple[str, str], float | None] = {}
    with conn.cursor() as cur:
        for kind, wanted in ids.items():
            table = KIND_TABLES.get(kind)
            if table is None or not wanted:
                continue
            try:
                cur.execute(f'SELECT {table[1]}, spend FROM "{table[0]}" WHERE {table[1]} = ANY(%s)',
                            (list(wanted),))
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
                # a schema without that table (a stripped-down DB): that kind's DB spend stays empty
                log.debug("no DB spend for %s counters: %s", kind, exc)
                continue
            for ident, spend in cur.fetchall():
                out[(kind, str(ident))] = None if spend is None else float(spend)
    return out


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
                 redis_options: dict[str, Any] | None = None, postgres_options: dict[str, Any] | None = None,
                 entities: dict[str, list[str]] | None = None, shared: bool = False,
                 in_memory: bool = False) -> None:
        self.redis_url = redis_url
        # the proxies keep their counters in process memory (no Redis cache): only DB spend is sampled
        self.in_memory = in_memory
        # a deployment the harness shares (the external backend): plain SCAN / MGET / PTTL (no Lua), and no
        # counter of anyone else read — the other kinds only when the run has keys/teams of its own
        self.shared = shared
        self.server_side = not shared
        # the run's own keys/teams ({"key": [hashed tokens], "team": [team ids]}): only those in counters.csv;
        # None: every non-end-user counter (bounded)
        self.entities = None if not entities else {k: list(v) for k, v in entities.items() if v}
        self.other_truncated = 0
        self.last_kind_rows = 0
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
        self._kinds_out: _SamplesAppender | None = None
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

    def _kinds_appender(self) -> _SamplesAppender:
        if self._kinds_out is None:
            self._kinds_out = _SamplesAppender(self.run_dir / COUNTERS_FILE, COUNTERS_COLUMNS)
        return self._kinds_out

    def _read_kinds(self) -> list[tuple[str, str, tuple[float, float] | None, float | None]]:
        """(kind, id, counter or None, db spend or None) of this sample, sorted."""
        counters, truncated = read_kind_counters(self._redis, self.namespace, self.entities,
                                                 server_side=self.server_side)
        if truncated:
            self.other_truncated += 1
        ids: dict[str, set[str]] = {}
        for kind, ident in counters:
            ids.setdefault(kind, set()).add(ident)
        for kind, own in (self.entities or {}).items():
            ids.setdefault(kind, set()).update(own)
        db = read_kind_db_spend(self._db(), {k: sorted(v) for k, v in ids.items()}) if ids else {}
        names = set(counters) | set(db) | {(k, i) for k, own in (self.entities or {}).items() for i in own}
        return [(kind, ident, counters.get((kind, ident)), db.get((kind, ident))) for kind, ident in sorted(names)]

    def sample_once(self) -> int:
        """Take one sample now; returns the rows written (0 when the sample was skipped)."""
        with self._lock:
            t = time.time()
            started = time.perf_counter()
            try:
                counters = {} if self.in_memory else read_counters(
                    self._redis, self.namespace, server_side=self.server_side, user_prefix=self.user_prefix)
                db = read_db_spend(self._db(), self.user_prefix)
                kinds = [] if self.in_memory or (self.shared and self.entities is None) else self._read_kinds()
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
            if kinds:
                self._kinds_appender().append_rows(
                    [(ts, seq, kind, ident, _num(c[0]) if c else "", _num(c[1]) if c else "", _num(d))
                     for kind, ident, c, d in kinds])
            self.last_kind_rows = len(kinds)
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
            for out in (self._out, self._kinds_out):
                if out is not None:
                    out.close()
            self._out = self._kinds_out = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._redis.close()

    def dump_other_counters(self) -> int:
        """Write spend-counters-final.csv (the non-end-user spend counters now); returns the rows, -1 on error
        (0 and no file on a shared deployment: those counters are other people's; nor without Redis counters)."""
        if self.shared or self.in_memory:
            return 0
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
                "in_memory": self.in_memory,
                "last_duration_s": self.last_duration_s, "max_gap": self.max_gap,
                "other_truncated": self.other_truncated}
