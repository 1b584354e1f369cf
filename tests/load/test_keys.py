"""The run's virtual keys on the load side: which key a request uses (deterministic from the seed, the same in
every process), what the client sends, and what requests.csv records (the key's index, never its value)."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from harness.load import keys
from harness.load.client import ChatClient, RequestPlanner
from harness.load.config import LoadConfig
from harness.run.runfolder import REQUESTS_COLUMNS
from tests.stack_helpers import serve_http

MASTER = "sk-master-for-tests-0123456789"


def _cfg(**kw: Any) -> LoadConfig:
    base: dict[str, Any] = {"run_dir": "/tmp", "proxy_urls": ["http://127.0.0.1:1"], "master_key_file": None,
                            "end_users": [f"eu-{i:04d}" for i in range(200)], "seed": 27639, "keys": 8,
                            "key_salt": "run-x"}
    return LoadConfig(**{**base, **kw})


def test_each_end_user_always_uses_the_same_key_in_every_process() -> None:
    cfg = _cfg()
    a = RequestPlanner(cfg, random.Random(1))
    b = RequestPlanner(LoadConfig.from_json(cfg.to_json()), random.Random(2))    # another process, other RNG
    plans = [a.next() for _ in range(400)] + [b.next() for _ in range(400)]
    by_user: dict[str, set[int | None]] = {}
    for plan in plans:
        by_user.setdefault(plan.end_user, set()).add(plan.key)
    assert all(len(v) == 1 for v in by_user.values())
    assert all(plan.key == keys.key_index_for(plan.end_user, 27639, 8) for plan in plans)
    spread = Counter(keys.key_index_for(u, 27639, 8) for u in cfg.end_users)
    assert set(spread) == set(range(8)) and min(spread.values()) >= 10       # every key carries load
    # another seed, another assignment; no keys: the master key
    assert [keys.key_index_for(u, 1, 8) for u in cfg.end_users] != [keys.key_index_for(u, 27639, 8)
                                                                    for u in cfg.end_users]
    assert RequestPlanner(_cfg(keys=0), random.Random(1)).next().key is None


def test_key_values_are_derived_from_the_master_key_and_the_run() -> None:
    k = keys.virtual_key(MASTER, "run-x", 3)
    assert k.startswith("sk-") and len(k) >= 16 and k == keys.virtual_key(MASTER, "run-x", 3)
    assert k not in {keys.virtual_key(MASTER, "run-y", 3), keys.virtual_key(MASTER, "run-x", 2),
                     keys.virtual_key("sk-other-master-key-xyz", "run-x", 3)}
    # LiteLLM's hash_token (proxy/_types.py): sha256 hex of the key
    assert keys.hashed_token("sk-1234") == hashlib.sha256(b"sk-1234").hexdigest()


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append({"auth": self.headers["Authorization"], "user": self.headers["x-litellm-end-user-id"]})
        body = json.dumps({"choices": [{"message": {"content": "hi"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Recorder.seen = []
    with serve_http(_Recorder) as url:
        yield url


def test_the_client_sends_the_planned_key_and_records_its_index(server: str) -> None:
    cfg = _cfg(proxy_urls=[server], stream_share=0.0)
    client = ChatClient(cfg, MASTER)
    planner = RequestPlanner(cfg, random.Random(5))
    rows = []
    try:
        for _ in range(6):
            row, killed = client.attempt(planner.next(), 0)
            assert killed is None and row["status"] == 200
            rows.append(row)
    finally:
        client.close()
    for row, seen in zip(rows, _Recorder.seen, strict=True):
        index = keys.key_index_for(row["end_user"], cfg.seed, cfg.keys)
        assert row["key"] == index and seen["user"] == row["end_user"]
        assert seen["auth"] == f"Bearer {keys.virtual_key(MASTER, 'run-x', index)}"
    assert "key" in REQUESTS_COLUMNS and REQUESTS_COLUMNS[-1] == "key"       # added at the end
    assert not any(str(v).startswith("sk-") for row in rows for v in row.values())     # the index, not the key
    master = ChatClient(_cfg(proxy_urls=[server], keys=0, stream_share=0.0), MASTER)
    try:
        row, _ = master.attempt(RequestPlanner(_cfg(keys=0), random.Random(1)).next(), 0)
    finally:
        master.close()
    assert row["key"] is None and _Recorder.seen[-1]["auth"] == f"Bearer {MASTER}"


def test_load_config_carries_the_keys_from_the_scenario() -> None:
    from harness.scenario.model import load_scenario

    s = load_scenario(Path("scenarios/key-team-budgets.yaml"))
    endpoints = type("E", (), {"proxy_urls": ["http://127.0.0.1:1"], "master_key": ""})()
    cfg = LoadConfig.from_scenario(s, endpoints, Path("/tmp"), key_salt="run-z")
    assert (cfg.keys, cfg.key_salt) == (8, "run-z")
    assert MASTER not in cfg.to_json() and "sk-" not in cfg.to_json()
