"""The load client on the Anthropic Messages API (`mix.endpoint: messages`), without LiteLLM: against the mock LLM
itself (it answers /v1/messages) and against a recorder that plays the proxy's errors. Rows have the chat rows'
shape; walk-aways, client timeouts, faults and retries behave as for chat."""

from __future__ import annotations

import csv
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from harness.load import keys
from harness.load.client import ChatClient, RequestPlan, error_message
from harness.load.config import PATHS, LoadConfig
from harness.load.launch import run_locust
from harness.mockllm import MockControl
from harness.run.runfolder import REQUESTS_COLUMNS, REQUESTS_FILE
from harness.util.procs import group_alive
from tests.mockllm.test_mockllm import Mock, start_mock, stop_mock
from tests.stack_helpers import serve_http

MASTER = "sk-master-for-tests-0123456789"
BUDGET = "Budget has been exceeded! EndUser=over-1 Current cost: 111.29, Max budget: 100.0"


def _cfg(urls: list[str], **kw: Any) -> LoadConfig:
    base = LoadConfig(run_dir="/tmp", proxy_urls=urls, master_key_file=None, model="claude-sonnet-4-5",
                      endpoint="messages", path=PATHS["messages"], end_users=["eu-1", "eu-2"], client_timeout_s=10,
                      max_tokens_choices=[16], seed=3)
    return replace(base, **kw)


def _plan(end_user: str = "eu-1", stream: bool = False, disconnect_after: int | None = None,
          walk_away_s: float | None = None, max_tokens: int = 16, key: int | None = None) -> RequestPlan:
    rid = f"{random.getrandbits(128):032x}"
    return RequestPlan(rid, end_user, 0, stream, disconnect_after, walk_away_s, max_tokens, f"[{rid}] " + "x" * 40,
                       key)


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mock]:
    m = start_mock(tmp_path_factory.mktemp("mock"), config={"stream": {"chunks": 8, "chunk_delay_s": 0.05}})
    try:
        yield m
    finally:
        stop_mock(m.proc)


def _send(cfg: LoadConfig, plan: RequestPlan) -> dict[str, Any]:
    client = ChatClient(cfg, MASTER)
    try:
        row, killed = client.attempt(plan, 0)
    finally:
        client.close()
    assert killed is None
    assert set(REQUESTS_COLUMNS) <= set(row)
    return row


def test_answers_streams_and_walk_aways_against_the_mock(mock: Mock) -> None:
    cfg = _cfg([mock.url])
    plan = _plan(max_tokens=12)
    row = _send(cfg, plan)
    assert (row["status"], row["error_type"], row["chunks"], row["disconnected"]) == (200, "", 0, False)
    led = mock.row(plan.request_id)
    assert (led["end_user"], led["model"], led["stream"], led["outcome"]) == ("eu-1", "claude-sonnet-4-5", "0", "ok")
    assert (led["completion_tokens_promised"], led["completion_tokens_delivered"]) == ("12", "12")

    plan = _plan("eu-2", stream=True)
    row = _send(cfg, plan)
    assert (row["status"], row["error_type"], row["chunks"], row["disconnected"]) == (200, "", 8, False)
    assert mock.row(plan.request_id)["chunks_sent"] == "8"

    plan = _plan(stream=True, disconnect_after=2)          # walks away after 2 content_block_delta events
    row = _send(cfg, plan)
    assert (row["status"], row["error_type"], row["chunks"], row["disconnected"], row["disconnect_after"]) == \
        (200, "", 2, True, 2)
    led = mock.row(plan.request_id)
    assert led["outcome"] == "client_gone" and 2 <= int(led["chunks_sent"]) < 8


def test_faults_and_timeouts_against_the_mock(mock: Mock) -> None:
    ctl = MockControl(mock.url)
    cfg = _cfg([mock.url], client_timeout_s=0.6)
    try:
        ctl.set_faults({"rate_limit": 1.0})
        row = _send(cfg, _plan())
        assert (row["status"], row["error_type"], row["error_text"]) == (429, "http_error", "Rate limit reached (mock)")
        ctl.set_faults({"rate_limit": 0.0, "stream_cut": {"p": 1.0, "after_chunks": 2}})
        row = _send(cfg, _plan(stream=True))          # the chunked body breaks off: as on the chat route
        assert (row["status"], row["error_type"]) == (200, "protocol")
        assert row["error_text"] == "HTTP parse error: Incomplete response."
        ctl.set_faults({"stream_cut": 0.0, "hang": 1.0})
        row = _send(cfg, _plan())
        assert (row["status"], row["error_type"]) == (0, "timeout")
        ctl.set_faults({"hang": 0.0, "slow_first_token": {"p": 1.0, "delay_s": 3.0}})
        plan = _plan(stream=True, disconnect_after=3, walk_away_s=0.3)   # walks away before the first delta
        row = _send(cfg, plan)
        assert (row["disconnected"], row["chunks"], row["disconnect_after"], row["error_type"]) == (True, 0, 0, "")
        assert 0.25 <= row["latency_s"] < 0.6
        led = mock.row(plan.request_id, deadline_s=10)
        assert (led["outcome"], led["chunks_sent"]) == ("client_gone", "0")
    finally:
        ctl.reset()


class _Proxy(BaseHTTPRequestHandler):
    """Plays LiteLLM's /v1/messages: records what arrived; `over-*` gets a budget rejection (LiteLLM's error JSON),
    `anthropic-*` one in Anthropic's error JSON, `midstream-*` a stream with an error event after one delta,
    `nostop-*` a whole body without message_stop."""

    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                "body": body})
        user = body["metadata"]["user_id"]
        if user.startswith(("over-", "anthropic-")):
            error = {"error": {"message": BUDGET, "type": "budget_exceeded", "param": None, "code": "400"}} \
                if user.startswith("over-") else {"type": "error", "error": {"type": "invalid_request_error",
                                                                            "message": BUDGET}}
            self._send(400, "application/json", json.dumps(error).encode())
            return
        frames = [("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 3}}}),
                  ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta",
                                                                                     "text": "lo "}})]
        if user.startswith("midstream-"):
            frames.append(("error", {"type": "error", "error": {"type": "api_error", "message": "upstream broke"}}))
        elif not user.startswith("nostop-"):
            frames.append(("message_stop", {"type": "message_stop"}))
        payload = b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in frames)
        self._send(200, "text/event-stream", payload)

    def _send(self, status: int, ctype: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    _Proxy.seen = []
    with serve_http(_Proxy) as url:
        yield url


def test_what_the_proxy_gets_and_budget_rejections(proxy: str) -> None:
    cfg = _cfg([proxy], keys=4, key_salt="run-m")
    key = keys.key_index_for("eu-1", cfg.seed, 4)
    row = _send(cfg, _plan(stream=True, key=key))
    assert (row["status"], row["chunks"], row["error_type"], row["key"]) == (200, 1, "", key)
    seen = _Proxy.seen[-1]
    assert seen["path"] == "/v1/messages"
    h, body = seen["headers"], seen["body"]
    assert h["x-api-key"] == keys.virtual_key(MASTER, "run-m", key) and "authorization" not in h
    assert h["anthropic-version"] == "2023-06-01" and h["x-litellm-end-user-id"] == "eu-1"
    assert body["metadata"] == {"user_id": "eu-1"} and body["max_tokens"] == 16 and body["stream"] is True
    assert body["model"] == "claude-sonnet-4-5" and "user" not in body and "stream_options" not in body
    assert body["messages"] == [{"role": "user", "content": body["messages"][0]["content"]}]

    _send(_cfg([proxy]), _plan(key=None))
    assert _Proxy.seen[-1]["headers"]["x-api-key"] == MASTER            # no keys in the run: the master key

    for user in ("over-1", "anthropic-1"):                              # either error JSON: the same text
        row = _send(_cfg([proxy]), _plan(user))
        assert (row["status"], row["error_type"], row["error_text"]) == (400, "http_error", BUDGET)
    row = _send(_cfg([proxy]), _plan("midstream-1", stream=True))
    assert (row["status"], row["chunks"], row["error_type"], row["error_text"]) == \
        (200, 1, "stream_error", "upstream broke")
    row = _send(_cfg([proxy]), _plan("nostop-1", stream=True))
    assert (row["status"], row["chunks"], row["error_type"], row["error_text"]) == \
        (200, 1, "truncated", "stream ended without message_stop after 1 chunk(s)")
    assert error_message(b'{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}') == "busy"


def test_locust_run_on_messages_rows_join_the_ledger(tmp_path: Path) -> None:
    """A short Locust run on /v1/messages against the mock with 429s retried: one requests.csv row per attempt,
    each attempt one ledger row with the same request id and end user; walk-aways are client_gone."""
    m = start_mock(tmp_path / "mock", seed=5, config={"stream": {"chunks": 8, "chunk_delay_s": 0.03},
                                                      "faults": {"rate_limit": {"p": 0.2, "retry_after_s": 0}}})
    run = tmp_path / "run"
    key_file = tmp_path / "key"
    key_file.write_text(MASTER)
    key_file.chmod(0o600)
    cfg = _cfg([m.url], run_dir=str(run), master_key_file=str(key_file),
               end_users=[f"eu-{i}" for i in range(6)], stream_share=0.7, disconnect_share=0.5,
               disconnect_after_chunks=(2, 2), max_tokens_choices=[16, 32], retries_max=2, retry_on_status=[429],
               retry_backoff_s=0.01, wait_s=(0.0, 0.02), users=4, spawn_rate=10, duration_s=3)
    try:
        handle = run_locust(cfg, run)
        try:
            assert handle.wait(timeout=60) == 0
        finally:
            handle.stop()
            assert not group_alive(handle.pid)
        time.sleep(1.0)                                  # the mock flushes its ledger every 0.5 s
    finally:
        stop_mock(m.proc)
    with open(run / REQUESTS_FILE, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == REQUESTS_COLUMNS
        rows = list(reader)
    ledger = m.rows()
    assert len(rows) > 20
    assert Counter(r["request_id"] for r in rows) == Counter(r["request_id"] for r in ledger)
    users = {r["request_id"]: r["end_user"] for r in rows}
    assert all(users[r["request_id"]] == r["end_user"] for r in ledger)
    assert {r["status"] for r in rows} == {"200", "429"}
    retried = [r for r in rows if r["attempt"] != "0"]
    assert retried and all(r["request_id"] in {x["request_id"] for x in rows if x["status"] == "429"}
                           for r in retried)
    walked = [r for r in rows if r["disconnected"] == "1"]
    assert walked and all((r["chunks"], r["error_type"]) == ("2", "") for r in walked)
    outcome = {(r["request_id"], r["outcome"]) for r in ledger}
    assert all((r["request_id"], "client_gone") in outcome for r in walked)
    ok = [r for r in rows if r["status"] == "200" and r["disconnected"] == "0"]
    assert ok and all(r["error_type"] == "" for r in ok)
    assert all(r["chunks"] == "8" for r in ok if r["stream"] == "1")
