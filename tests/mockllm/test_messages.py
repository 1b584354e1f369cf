"""The mock's Anthropic Messages route (`POST /v1/messages`), over real HTTP against a real mock process: the wire
format, the SSE events, the faults and the ledger rows (the same as the chat route's)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.mockllm.tokens import prompt_tokens
from tests.mockllm.test_mockllm import FAST_STREAM, Mock, headers, rid, start_mock, stop_mock

EVENTS = ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop",
          "message_delta", "message_stop"]


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mock]:
    m = start_mock(tmp_path_factory.mktemp("mock-messages"), config=FAST_STREAM)
    try:
        yield m
    finally:
        stop_mock(m.proc)


def msg(stream: bool = False, max_tokens: int | None = 10, user: str | None = "alice", content: Any = "hello world!",
        **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": content}],
                            "stream": stream}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if user is not None:
        body["metadata"] = {"user_id": user}
    body.update(extra)
    return body


def events(lines: list[str]) -> list[tuple[str, str]]:
    """(event, data) pairs of an SSE body, in order."""
    out: list[tuple[str, str]] = []
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            out.append((name, line[len("data: "):]))
            name = ""
    return out


def test_prompt_tokens_count_the_system_prompt_and_text_blocks() -> None:
    body = {"system": [{"type": "text", "text": "x" * 8}], "messages": [
        {"role": "user", "content": [{"type": "text", "text": "y" * 8}]}, {"role": "assistant", "content": "z" * 4}]}
    assert prompt_tokens(body) == 5
    assert prompt_tokens({"system": "s" * 40, "messages": []}) == 10


def test_non_streaming_message(mock: Mock) -> None:
    r = rid()
    resp = httpx.post(mock.url + "/v1/messages", json=msg(max_tokens=12, content="x" * 40, system="y" * 8),
                      headers={**headers(r), "x-api-key": "anything", "anthropic-version": "2023-06-01"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["id"] == f"msg_{r}" and body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == "claude-sonnet-4-5" and body["stop_reason"] == "max_tokens"
    assert body["stop_sequence"] is None
    assert body["content"] == [{"type": "text", "text": "lo " * 12}]
    assert body["usage"] == {"input_tokens": 12, "output_tokens": 12}
    row = mock.row(r)
    assert (row["outcome"], row["end_user"], row["stream"], row["model"]) == ("ok", "alice", "0", "claude-sonnet-4-5")
    assert (row["prompt_tokens"], row["completion_tokens_promised"], row["completion_tokens_delivered"]) == \
        ("12", "12", "12")


def test_path_without_v1_default_tokens_and_end_user_from_header(mock: Mock) -> None:
    r = rid()
    resp = httpx.post(mock.url + "/messages", json=msg(max_tokens=None, user=None),
                      headers={**headers(r), "Authorization": "Bearer x", "x-litellm-end-user-id": "bob"})
    body = resp.json()
    assert body["usage"]["output_tokens"] == 64 and body["stop_reason"] == "end_turn"   # the configured default
    row = mock.row(r)
    assert row["end_user"] == "bob" and row["completion_tokens_promised"] == "64"


def test_streaming_events(mock: Mock) -> None:
    r = rid()
    with httpx.stream("POST", mock.url + "/v1/messages", json=msg(stream=True, max_tokens=20),
                      headers=headers(r)) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        got = events(list(resp.iter_lines()))
    names = [name for name, _ in got]
    assert names == EVENTS[:3] + ["content_block_delta"] * 8 + EVENTS[4:]
    frames = [json.loads(data) for _, data in got]
    assert all(frame["type"] == name for (name, _), frame in zip(got, frames, strict=True))
    start = frames[0]["message"]
    assert start["id"] == f"msg_{r}" and start["model"] == "claude-sonnet-4-5"
    assert start["usage"] == {"input_tokens": 3, "output_tokens": 1}
    deltas = [f["delta"] for f in frames if f["type"] == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas).count("lo") == 20
    delta = frames[-2]
    assert delta["delta"]["stop_reason"] == "max_tokens" and delta["usage"] == {"output_tokens": 20}
    row = mock.row(r)
    assert (row["outcome"], row["stream"], row["chunks_sent"], row["completion_tokens_delivered"]) == \
        ("ok", "1", "8", "20")


@pytest.mark.parametrize(("fault", "status", "etype", "kind"), [
    ("429:7", 429, "rate_limit_error", "rate_limit"), ("500", 500, "api_error", "error_500"),
    ("error_503", 503, "overloaded_error", "error_503")])
def test_error_statuses_in_anthropic_format(mock: Mock, fault: str, status: int, etype: str, kind: str) -> None:
    r = rid()
    resp = httpx.post(mock.url + "/v1/messages", json=msg(), headers=headers(r, fault))
    assert resp.status_code == status
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == etype and body["error"]["message"]
    if status == 429:
        assert resp.headers["retry-after"] == "7"
    row = mock.row(r)
    assert row["outcome"] == f"fault:{kind}" and row["completion_tokens_delivered"] == "0"


def test_bad_bodies_and_fault_headers_are_anthropic_400s(mock: Mock) -> None:
    resp = httpx.post(mock.url + "/v1/messages", content=b"[1, 2]", headers=headers(rid()))
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    resp = httpx.post(mock.url + "/v1/messages", json=msg(), headers=headers(rid(), "teleport"))
    assert resp.status_code == 400 and resp.json()["type"] == "error"


def test_stream_cut_after_k_deltas(mock: Mock) -> None:
    r = rid()
    got: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError), \
            httpx.stream("POST", mock.url + "/v1/messages", json=msg(stream=True, max_tokens=16),
                         headers=headers(r, "stream_cut:3")) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            got.append(line)
    names = [name for name, _ in events(got)]
    assert names == EVENTS[:3] + ["content_block_delta"] * 3
    row = mock.row(r)
    assert (row["outcome"], row["chunks_sent"], row["completion_tokens_delivered"]) == ("fault:stream_cut", "3", "6")


def test_hang_reset_latency(mock: Mock) -> None:
    r = rid()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(mock.url + "/v1/messages", json=msg(), headers=headers(r, "hang"), timeout=0.5)
    assert mock.row(r)["outcome"] == "fault:hang"
    r = rid()
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.post(mock.url + "/v1/messages", json=msg(), headers=headers(r, "reset"))
    assert mock.row(r)["outcome"] == "fault:reset"
    r = rid()
    t0 = time.monotonic()
    assert httpx.post(mock.url + "/v1/messages", json=msg(), headers=headers(r, "latency:0.3")).status_code == 200
    assert time.monotonic() - t0 >= 0.3 and mock.row(r)["outcome"] == "ok"


def test_malformed_events(mock: Mock) -> None:
    r = rid()
    with httpx.stream("POST", mock.url + "/v1/messages", json=msg(stream=True),
                      headers=headers(r, "malformed_json:2")) as resp:
        got = events(list(resp.iter_lines()))
    with pytest.raises(json.JSONDecodeError):
        json.loads(got[5][1])        # message_start, content_block_start, ping, 2 deltas, then the broken one
    assert mock.row(r)["outcome"] == "fault:malformed_json"
    r = rid()
    with httpx.stream("POST", mock.url + "/v1/messages", json=msg(stream=True),
                      headers=headers(r, "malformed_sse:1")) as resp:
        text = "\n".join(resp.iter_lines())
    assert "\nnot-a-field\n" in text and mock.row(r)["outcome"] == "fault:malformed_sse"
    r = rid()
    resp = httpx.post(mock.url + "/v1/messages", json=msg(), headers=headers(r, "malformed_json"))
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.text)


def test_slow_first_token_then_walk_away(mock: Mock) -> None:
    r = rid()
    t0 = time.monotonic()
    with httpx.stream("POST", mock.url + "/v1/messages", json=msg(stream=True),
                      headers=headers(r, "slow_first_token:30")) as resp:
        lines = resp.iter_lines()
        assert next(lines) == "event: message_start"       # the head comes at once, before the delay
        assert resp.status_code == 200 and time.monotonic() - t0 < 5
    row = mock.row(r)
    assert (row["outcome"], row["chunks_sent"]) == ("client_gone", "0")


def test_client_walks_away_mid_stream(tmp_path: Path) -> None:
    m = start_mock(tmp_path, config={"stream": {"chunks": 20, "chunk_delay_s": 0.1}})
    try:
        r = rid()
        seen = 0
        with httpx.stream("POST", m.url + "/v1/messages", json=msg(stream=True, max_tokens=40),
                          headers=headers(r)) as resp:
            for line in resp.iter_lines():
                if line == "event: content_block_delta":
                    seen += 1
                if seen == 3:
                    break
        row = m.row(r)
        assert row["outcome"] == "client_gone" and 3 <= int(row["chunks_sent"]) <= 4
        assert int(row["completion_tokens_delivered"]) == 2 * int(row["chunks_sent"])
    finally:
        stop_mock(m.proc)


def test_same_seeded_decisions_as_the_chat_route(tmp_path: Path) -> None:
    """One fault draw per request id, whatever the route: a run switched to /v1/messages sees the same faults."""
    config = {"faults": {"rate_limit": 0.2, "error_500": 0.2, "stream_cut": 0.2}, "stream": {"chunk_delay_s": 0.0}}
    outcomes: dict[str, list[str]] = {}
    for route, body in (("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                                  "max_tokens": 4}),
                        ("/v1/messages", msg(max_tokens=4))):
        m = start_mock(tmp_path / route.strip("/").replace("/", "-"), seed=7, config=config)
        try:
            ids = [f"same-{i}" for i in range(30)]
            with httpx.Client(base_url=m.url) as client:
                for i in ids:
                    try:
                        client.post(route, json=body, headers=headers(i))
                    except httpx.HTTPError:
                        pass
            outcomes[route] = [m.row(i)["outcome"] for i in ids]
        finally:
            stop_mock(m.proc)
    assert outcomes["/v1/chat/completions"] == outcomes["/v1/messages"]
    assert len(set(outcomes["/v1/messages"])) >= 3
