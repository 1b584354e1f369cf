"""The in-process counter probe against a fake of the two LiteLLM routes it uses (our own fake, not LiteLLM's code).

The fake keeps what the probe relies on: `/key/update` writes the DB row and drops the cached key object of the
replica that served it; a chat request reads the key object (cached, or from the DB) and is rejected by the
read-time check when counter >= max_budget, printing the counter without any reservation.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import pytest

from harness.load.keys import hashed_token
from harness.run.probe import PROBE_HEADER, CounterProbe, ProbeKey, parse_rejection
from harness.run.runfolder import PROBES_COLUMNS, PROBES_FILE

MASTER = "sk-master"


class FakeProxies:
    """N replicas of a proxy without Redis: a counter per replica and key, a key-object cache per replica."""

    def __init__(self, replicas: int, budgets: dict[str, float], counters: dict[tuple[int, str], float],
                 wording: str = "1.88.1") -> None:
        self.db_budget = dict(budgets)                        # token -> max_budget
        self.db_spend = {t: 0.5 for t in budgets}
        self.counters = dict(counters)                        # (replica, token) -> in-memory counter
        self.cached: dict[tuple[int, str], float] = {}        # (replica, token) -> cached max_budget
        self.calls: list[tuple[int, str, str, float | None]] = []   # (replica, path, token, budget)
        self.wording = wording
        self.fail_updates: dict[float, int] = {}              # budget -> how many /key/update calls fail
        self.fail_chat = False
        self.stale_admit = False                              # the probe request meets a stale cached object
        self.replicas = replicas

    def handler(self, request: httpx.Request) -> httpx.Response:
        replica = int(request.url.host.rsplit("-", 1)[1])
        body = json.loads(request.content)
        if request.url.path == "/key/update":
            assert request.headers["authorization"] == f"Bearer {MASTER}"
            token = hashed_token(body["key"])
            budget = float(body["max_budget"])
            self.calls.append((replica, "update", token, budget))
            if self.fail_updates.get(budget, 0) > 0:
                self.fail_updates[budget] -= 1
                return httpx.Response(500, text="db busy")
            self.db_budget[token] = budget
            self.cached.pop((replica, token), None)
            return httpx.Response(200, json={"key": body["key"], "max_budget": budget})
        assert request.url.path == "/chat/completions"
        assert request.headers[PROBE_HEADER] == "1" and body["max_tokens"] == 1 and "user" not in body
        token = hashed_token(request.headers["authorization"].removeprefix("Bearer "))
        self.calls.append((replica, "chat", token, None))
        if self.fail_chat:
            raise httpx.ConnectError("refused")
        if self.stale_admit:
            return httpx.Response(200, json={"id": "chatcmpl-x"})
        budget = self.cached.setdefault((replica, token), self.db_budget[token])
        spend = self.counters.get((replica, token), self.db_spend[token])   # absent: reseeded from the DB
        if spend >= budget:
            if self.wording == "1.96.2":
                text = f"Budget has been exceeded! Key=key-a (sk-...xyz) Current cost: {spend}, Max budget: {budget}"
            else:
                text = f"Budget has been exceeded! Current cost: {spend}, Max budget: {budget}"
            return httpx.Response(400, json={"error": {"message": text, "type": "budget_exceeded"}})
        return httpx.Response(200, json={"id": "chatcmpl-y"})

    def db(self, tokens: list[str]) -> dict[str, tuple[float | None, float | None]]:
        return {t: (self.db_spend[t], self.db_budget[t]) for t in tokens if t in self.db_budget}


def _keys(*names: str) -> list[ProbeKey]:
    return [ProbeKey(name=n, token=hashed_token(f"sk-{n}"), value=f"sk-{n}", max_budget=5.0) for n in names]


def _probe(fake: FakeProxies, keys: list[ProbeKey], tmp_path: Path) -> CounterProbe:
    urls = [f"http://proxy-{i}" for i in range(fake.replicas)]
    probe = CounterProbe(urls, MASTER, keys, tmp_path, model="mock-gpt", every_s=60, db=fake.db,
                         transport=httpx.MockTransport(fake.handler), settle_s=0.0)
    probe.retry_pause_s = 0.0
    return probe


def _rows(tmp_path: Path) -> list[dict[str, str]]:
    with open(tmp_path / PROBES_FILE, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == PROBES_COLUMNS
        return list(reader)


@pytest.mark.parametrize("wording", ["1.88.1", "1.96.2"])
def test_a_round_reads_each_replicas_counter_and_restores_every_budget(tmp_path: Path, wording: str) -> None:
    a, b = _keys("a", "b")
    fake = FakeProxies(2, {a.token: 5.0, b.token: 5.0},
                       {(0, a.token): 1.25, (1, a.token): 7.5, (0, b.token): 0.0}, wording)
    fake.cached = {(r, k.token): 5.0 for r in (0, 1) for k in (a, b)}   # every replica holds the key objects
    probe = _probe(fake, [a, b], tmp_path)
    assert probe.probe_round() == 4
    probe.stop(last_round=False)
    rows = _rows(tmp_path)
    got = {(r["name"], r["replica"]): (float(r["counter"]), r["printed_budget"], r["includes_reservation"],
                                       r["db_spend"], r["max_budget"], r["error"]) for r in rows}
    assert got == {("a", "0"): (1.25, "0.0", "0", "0.5", "5.0", ""), ("a", "1"): (7.5, "0.0", "0", "0.5", "5.0", ""),
                   ("b", "0"): (0.0, "0.0", "0", "0.5", "5.0", ""),   # a fresh counter: 0 >= 0 is still read
                   ("b", "1"): (0.5, "0.0", "0", "0.5", "5.0", "")}   # none on replica 1: the DB reseed
    # each replica: budget 0 through it, then the probe through it; then the budget back through every replica,
    # twice (the second pass drops a copy a load request cached between the DB write and the first pass)
    assert [c for c in fake.calls if c[2] == a.token] == [
        (0, "update", a.token, 0.0), (0, "chat", a.token, None), (1, "update", a.token, 0.0),
        (1, "chat", a.token, None), (0, "update", a.token, 5.0), (1, "update", a.token, 5.0),
        (0, "update", a.token, 5.0), (1, "update", a.token, 5.0)]
    assert fake.db_budget == {a.token: 5.0, b.token: 5.0} and fake.cached == {}
    assert probe.status()["reads"] == 4 and probe.restore_failures == []


def test_the_budget_is_restored_when_the_probe_request_fails(tmp_path: Path) -> None:
    [a] = _keys("a")
    fake = FakeProxies(1, {a.token: 5.0}, {(0, a.token): 2.0})
    fake.fail_chat = True
    fake.fail_updates = {5.0: 2}          # the first two restores fail: retried
    probe = _probe(fake, [a], tmp_path)
    assert probe.probe_round() == 0
    probe.stop(last_round=False)
    assert fake.db_budget[a.token] == 5.0 and probe.restore_failures == []
    [row] = _rows(tmp_path)
    assert row["counter"] == "" and row["error"].startswith("no answer: ConnectError")


def test_a_budget_that_could_not_be_restored_is_restored_at_stop(tmp_path: Path) -> None:
    [a] = _keys("a")
    fake = FakeProxies(1, {a.token: 5.0}, {(0, a.token): 2.0})
    fake.fail_updates = {5.0: 6}          # both restore passes of the round fail (3 tries each)
    probe = _probe(fake, [a], tmp_path)
    probe.probe_round()
    assert fake.db_budget[a.token] == 0.0 and probe._dirty == {a.token}
    probe.stop(last_round=False)          # the DB shows 0: restored again
    assert fake.db_budget[a.token] == 5.0 and probe.restore_failures == []


def test_a_failed_update_reads_nothing_and_an_admitted_probe_is_no_read(tmp_path: Path) -> None:
    a, b = _keys("a", "b")
    fake = FakeProxies(1, {a.token: 5.0, b.token: 5.0}, {})
    fake.fail_updates = {0.0: 1}          # key a: /key/update to 0 fails once
    probe = _probe(fake, [a, b], tmp_path)
    fake.stale_admit = True               # key b: the replica admits the probe (a stale key object)
    probe.probe_round()
    probe.stop(last_round=False)
    rows = {r["name"]: r for r in _rows(tmp_path)}
    assert rows["a"]["error"].startswith("/key/update max_budget 0: HTTP 500") and rows["a"]["counter"] == ""
    assert rows["b"]["admitted"] == "1" and rows["b"]["counter"] == "" and rows["b"]["status"] == "200"
    assert probe.admitted == 1 and fake.db_budget == {a.token: 5.0, b.token: 5.0}
    assert ("0", "chat") not in {(str(c[0]), c[1]) for c in fake.calls if c[2] == a.token}


def test_the_thread_takes_rounds_until_stop_and_one_more(tmp_path: Path) -> None:
    [a] = _keys("a")
    fake = FakeProxies(1, {a.token: 5.0}, {(0, a.token): 3.0})
    probe = _probe(fake, [a], tmp_path)
    probe.every_s = 0.05
    probe.start()
    import time

    deadline = time.monotonic() + 5
    while probe.rounds < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    probe.stop()
    rounds = [int(r["round"]) for r in _rows(tmp_path)]
    assert rounds == list(range(len(rounds))) and len(rounds) >= 4
    assert fake.db_budget[a.token] == 5.0


@pytest.mark.parametrize(("text", "expected"), [
    ("Budget has been exceeded! Current cost: 12.5, Max budget: 0.0", (12.5, 0.0, 0)),
    ("Budget has been exceeded! Key=key-ab12-0 (sk-...wxyz) Current cost: 1e-05, Max budget: 0.0", (1e-05, 0.0, 0)),
    (f"Budget has been exceeded! Key={'f' * 64} Current cost: 3.25, Max budget: 0.0", (3.25, 0.0, 1)),
    ('{"error": {"message": "Budget has been exceeded! Current cost: 2, Max budget: 0"}}', (2.0, 0.0, 0)),
    ("Authentication Error, Invalid proxy server token passed.", (None, None, None)),
])
def test_parse_rejection(text: str, expected: tuple[float | None, float | None, int | None]) -> None:
    assert parse_rejection(text, "f" * 64) == expected
