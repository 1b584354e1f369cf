"""The in-process counter probe: read a proxy's own spend counter of a virtual key through its budget check.

Without Redis (scenario `counters: memory`) LiteLLM keeps `spend:key:<hashed token>` in each proxy process's
memory (`spend_counter_cache`, a DualCache with no Redis attached), where nothing outside the process can read it,
and no endpoint returns it (1.88.1 / 1.89.1 / 1.94.0 / 1.96.2: only the budget checks read it, through
`get_current_spend`; `x-litellm-key-spend` is the cached key object's DB spend). The probe reads it the way the
reporter of BerriAI/litellm#36926 did — through the rejection of a request over budget:

1. `POST /key/update {"key": <key>, "max_budget": 0}` through replica i. It writes the DB row and deletes that
   replica's cached key object (`_delete_cache_key_object`, in-process only); it never touches the counter (only
   a `spend` in the body does, 1.94.0+). max_budget 0 is accepted (`max_budget < 0` is refused).
2. One request with that key through the same replica (`max_tokens: 1`, no end user, header `x-harness-probe`,
   request id `probe-<round>-<key>-<replica>`). The key object is read back from the DB (max_budget 0), and the
   read-time key check (`_virtual_key_max_budget_check`, before any reservation) raises because
   `spend >= max_budget` holds for every spend ≥ 0, where `spend = get_current_spend(spend:key:<token>)`: the
   in-memory counter (or, when it is absent, the DB spend it reseeds the counter with — what a real request
   would do). Its message, `Budget has been exceeded! Current cost: X, Max budget: 0.0` (1.88.1: the
   exception's default text; 1.96.2: `… Key=<alias> (<key name>) Current cost: X, …`), prints X = that counter,
   without this request's reservation (reservations come later, in `reserve_budget_for_request`). The request
   never reaches the upstream, so the mock ledgers nothing and the counter is unchanged.
3. The budget is restored with `/key/update` through EVERY replica (each deletes its own cached key object, so
   none keeps a copy with max_budget 0), in a `finally`; a second restore pass follows a moment later, for a load
   request that read the key row with max_budget 0 and cached it after the first pass deleted it.

With several replicas each has its own counter (`counters: memory`): every replica is probed, one row each.
While a key's budget is 0 (about one round trip per replica), the load's own requests with that key that reload
the key object are rejected with `Max budget: 0.0`: the analyzer classes those as probe artifacts, never as budget
rejections. A probe request that is admitted (a stale cached key object) is recorded (`admitted` 1), not read.

Rows go to probes.csv (runfolder.PROBES_COLUMNS). The DB's max_budget of every probed key is checked after the
last round and restored again when it differs; `restore_failures` counts what could not be restored.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from harness.run.runfolder import PROBES_COLUMNS, PROBES_FILE, CsvAppender

log = logging.getLogger(__name__)

PROBE_BUDGET = 0.0                  # every spend >= 0: the read-time check always rejects
PROBE_HEADER = "x-harness-probe"
PROBE_ID_PREFIX = "probe-"          # the probe request's x-harness-request-id (a ledger row with it is a probe's)
RESTORE_TRIES = 3
RESTORE_SETTLE_S = 1.0              # the second restore pass, after the first

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_MESSAGE = re.compile(r"Budget has been exceeded!?\s*(?:Key=(?P<id>.+?)\s+)?Current cost:\s*(?P<x>" + _NUM +
                      r")\s*,?\s*(?:Estimated request cost:\s*" + _NUM + r"\s*,?\s*)?Max budget:\s*(?P<y>" + _NUM +
                      r")")

DbRead = Callable[[Sequence[str]], dict[str, tuple[float | None, float | None]]]


@dataclass(frozen=True)
class ProbeKey:
    """One of the run's virtual keys: its alias, hashed token, value (a secret, never written) and budget."""

    name: str
    token: str
    value: str = field(repr=False)
    max_budget: float


def parse_rejection(text: str, token: str) -> tuple[float | None, float | None, int | None]:
    """(X, Y, includes_reservation) of a key budget rejection; (None, None, None) when the text is none.

    includes_reservation: 1 when the message names the key by its hashed token — the reservation path
    (`budget_reservation.py`: `Key=<token> Current cost: <counter + this request's reservation>`); 0 for the
    read-time check (unnamed, or named by alias on 1.96.2), which prints the counter alone."""
    m = _MESSAGE.search(text)
    if m is None:
        return None, None, None
    named = (m.group("id") or "").strip()
    return float(m.group("x")), float(m.group("y")), int(named == token)


def db_reader(dsn: str, options: dict[str, Any] | None = None) -> DbRead:
    """A DbRead on Postgres: {hashed token: (spend, max_budget)} from LiteLLM_VerificationToken."""

    def read(tokens: Sequence[str]) -> dict[str, tuple[float | None, float | None]]:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5, **(options or {})) as conn, \
                conn.cursor() as cur:
            cur.execute('SELECT token, spend, max_budget FROM "LiteLLM_VerificationToken" WHERE token = ANY(%s)',
                        (list(tokens),))
            return {str(t): (None if s is None else float(s), None if b is None else float(b))
                    for t, s, b in cur.fetchall()}

    return read


class CounterProbe:
    """Probe rounds every `every_s` in a thread (start/stop); `probe_round()` does one now."""

    def __init__(self, proxy_urls: Sequence[str], master_key: str, keys: Sequence[ProbeKey], run_dir: Path, *,
                 model: str, every_s: float = 10.0, timeout_s: float = 10.0, db: DbRead | None = None,
                 transport: httpx.BaseTransport | None = None, clock: Callable[[], float] = time.time,
                 settle_s: float = RESTORE_SETTLE_S) -> None:
        self.urls = [u.rstrip("/") for u in proxy_urls]
        self._admin = {"Authorization": f"Bearer {master_key}", "Connection": "close"}
        self.keys = list(keys)
        self.run_dir = Path(run_dir)
        self.model = model
        self.every_s = every_s
        self.settle_s = settle_s
        self.retry_pause_s = 0.5               # between tries of a restore (× the try)
        self._db = db
        self._clock = clock
        self._http = httpx.Client(timeout=timeout_s, transport=transport)
        self._out: CsvAppender | None = None
        self._lock = threading.Lock()          # one round at a time (the thread, or stop()'s last round)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.reads = 0
        self.admitted = 0
        self.errors = 0
        self.last_error: str | None = None
        self.restore_failures: list[str] = []   # keys whose budget could not be restored (names)
        self._dirty: set[str] = set()           # tokens whose last restore failed

    # -- one round ------------------------------------------------------------------------------------
    def probe_round(self) -> int:
        """Probe every key through every replica; returns the counters read."""
        with self._lock:
            n = self.rounds
            self.rounds += 1
            db: dict[str, tuple[float | None, float | None]] = {}
            if self._db is not None:
                try:
                    db = self._db([k.token for k in self.keys])
                except (psycopg.Error, OSError) as exc:
                    self._error(f"DB spend not read: {type(exc).__name__}: {exc}")
            read = 0
            touched: list[ProbeKey] = []
            for ki, key in enumerate(self.keys):
                touched.append(key)
                try:
                    for replica, url in enumerate(self.urls):
                        row = self._probe(n, ki, key, replica, url, db.get(key.token, (None, None))[0])
                        self._append(row)
                        read += row["counter"] is not None
                finally:
                    self._restore(key)
            if touched and self.settle_s > 0:
                time.sleep(self.settle_s)
            for key in touched:
                self._restore(key)
            self.reads += read
            return read

    def _probe(self, n: int, ki: int, key: ProbeKey, replica: int, url: str, db_spend: float | None
               ) -> dict[str, Any]:
        row: dict[str, Any] = {"round": n, "kind": "key", "id": key.token, "name": key.name, "replica": replica,
                               "status": 0, "counter": None, "printed_budget": None, "includes_reservation": None,
                               "db_spend": db_spend, "max_budget": key.max_budget, "admitted": 0, "latency_s": None,
                               "error": ""}
        problem = self._update(url, key, PROBE_BUDGET)
        if problem:
            row.update(t=self._clock(), error=f"/key/update max_budget 0: {problem}")
            self._error(row["error"])
            return row
        headers = {"Authorization": f"Bearer {key.value}", "x-harness-request-id": f"{PROBE_ID_PREFIX}{n}-{ki}-"
                   f"{replica}", PROBE_HEADER: "1"}
        body = {"model": self.model, "messages": [{"role": "user", "content": "probe"}], "max_tokens": 1,
                "stream": False}
        t0 = time.perf_counter()
        try:
            resp = self._http.post(f"{url}/chat/completions", headers=headers, json=body)
        except httpx.HTTPError as exc:
            row.update(t=self._clock(), latency_s=time.perf_counter() - t0,
                       error=f"no answer: {type(exc).__name__}: {exc}")
            self._error(row["error"])
            return row
        row.update(t=self._clock(), latency_s=time.perf_counter() - t0, status=resp.status_code)
        if 200 <= resp.status_code < 300:
            self.admitted += 1
            row.update(admitted=1, error="admitted: the budget check let the probe through (a cached key object)")
            self._error(row["error"])
            return row
        x, y, with_reservation = parse_rejection(resp.text, key.token)
        if x is None:
            row["error"] = f"HTTP {resp.status_code}: no budget rejection: {' '.join(resp.text.split())[:200]}"
            self._error(row["error"])
            return row
        row.update(counter=x, printed_budget=y, includes_reservation=with_reservation)
        return row

    def _update(self, url: str, key: ProbeKey, budget: float) -> str:
        """`/key/update` of `key`'s max_budget through `url`; "" or what went wrong."""
        try:
            resp = self._http.post(f"{url}/key/update", headers=self._admin,
                                   json={"key": key.value, "max_budget": budget})
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if resp.status_code >= 300:
            return f"HTTP {resp.status_code} {' '.join(resp.text.split())[:200]}"
        return ""

    def _restore(self, key: ProbeKey) -> bool:
        """Its budget back through every replica (each drops its cached key object), a few tries each."""
        ok = True
        for url in self.urls:
            problem = ""
            for attempt in range(RESTORE_TRIES):
                problem = self._update(url, key, key.max_budget)
                if not problem:
                    break
                time.sleep(self.retry_pause_s * (attempt + 1))
            if problem:
                ok = False
                self._error(f"restore of {key.name} through {url} failed: {problem}")
        if ok:
            self._dirty.discard(key.token)
        else:
            self._dirty.add(key.token)
        return ok

    def _error(self, text: str) -> None:
        self.errors += 1
        self.last_error = text
        log.warning("probe: %s", text)

    def _append(self, row: dict[str, Any]) -> None:
        if self._out is None:
            self._out = CsvAppender(self.run_dir / PROBES_FILE, PROBES_COLUMNS, flush_s=0.0)
        self._out.append(row)

    # -- the thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="counter-probe", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.probe_round()
            except Exception as exc:  # noqa: BLE001 - the probe must outlive anything a round hits
                self._error(f"{type(exc).__name__}: {exc}")
                log.exception("probe round failed")
            next_at += self.every_s
            now = time.monotonic()
            if next_at < now:
                next_at += ((now - next_at) // self.every_s + 1) * self.every_s
            self._stop.wait(next_at - now)

    def stop(self, last_round: bool = True) -> None:
        """Stop the thread (a round in progress finishes, restores included), take one more round, make sure every
        probed key has its budget back (the DB's max_budget; restored again where it differs), close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
            self._thread = None
        try:
            if last_round:
                self.probe_round()
        finally:
            self._verify_restored()
            if self._out is not None:
                self._out.close()
                self._out = None
            self._http.close()

    def _verify_restored(self) -> None:
        wrong: set[str] = set(self._dirty)
        if self._db is not None:
            try:
                db = self._db([k.token for k in self.keys])
                wrong |= {k.token for k in self.keys if (b := db.get(k.token, (None, None))[1]) is not None
                          and not math.isclose(b, k.max_budget, rel_tol=1e-9, abs_tol=1e-12)}
            except (psycopg.Error, OSError) as exc:
                self._error(f"budgets not verified in the DB: {type(exc).__name__}: {exc}")
        for key in self.keys:
            if key.token in wrong and not self._restore(key):
                self.restore_failures.append(key.name)

    def status(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "reads": self.reads, "admitted": self.admitted, "errors": self.errors,
                "last_error": self.last_error, "restore_failures": list(self.restore_failures),
                "replicas": len(self.urls), "keys": len(self.keys), "every_s": self.every_s}
