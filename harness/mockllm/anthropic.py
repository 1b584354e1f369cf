"""Anthropic Messages API wire format (`POST /v1/messages`): message bodies, SSE events and error bodies, as bytes.

Streams are named SSE events, `event: <type>\\ndata: <json>\\n\\n`, in Anthropic's order: message_start (usage with the
input tokens and a first output token), content_block_start, ping, one content_block_delta (text_delta) per chunk,
content_block_stop, message_delta (stop_reason and the cumulative output tokens), message_stop.
"""

from __future__ import annotations

from typing import Any

import orjson

from harness.mockllm.responses import text_for

# an HTTP status of the mock → Anthropic's error type (529 overloaded_error is Anthropic's; the mock keeps its 503)
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               429: "rate_limit_error", 500: "api_error", 503: "overloaded_error", 529: "overloaded_error"}


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stop_reason(capped: bool) -> str:
    """`max_tokens` when the answer is as long as the request's max_tokens allowed (the mock's always is), else
    `end_turn` (no max_tokens sent: the mock's default length)."""
    return "max_tokens" if capped else "end_turn"


def message_body(mid: str, model: str, prompt: int, completion: int, capped: bool) -> bytes:
    return orjson.dumps({
        "id": mid, "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text_for(completion)}],
        "stop_reason": stop_reason(capped), "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    })


def stream_head(mid: str, model: str, prompt: int, completion: int) -> bytes:
    """message_start (output_tokens: 1, Anthropic's placeholder; 0 for an empty answer), content_block_start, ping."""
    return (event("message_start", {"type": "message_start", "message": {
                "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": prompt, "output_tokens": min(1, completion)}}})
            + event("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}})
            + event("ping", {"type": "ping"}))


def delta_event(tokens: int) -> bytes:
    return event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": text_for(tokens)}})


def stream_tail(completion: int, capped: bool) -> bytes:
    return (event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + event("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": stop_reason(capped), "stop_sequence": None},
                                      "usage": {"output_tokens": completion}})
            + event("message_stop", {"type": "message_stop"}))


def malformed_json_event() -> bytes:
    """A content_block_delta event whose JSON is cut off."""
    return b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {"ty\n\n'


def malformed_sse_event() -> bytes:
    """An event without the `data:` field name and with a stray line: not valid SSE for an Anthropic client."""
    return b'event: content_block_delta\n{"type": "content_block_delta" ???\nnot-a-field\n\n'


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"),
                                                    "message": message}})


class AnthropicWire:
    """The Messages route's wire format (`server.Wire`)."""

    name = "anthropic"
    id_prefix = "msg_"

    def end_user(self, body: dict[str, Any]) -> str:
        """`metadata.user_id` (what Anthropic's API and Claude Code use for the end user)."""
        metadata = body.get("metadata")
        user = metadata.get("user_id") if isinstance(metadata, dict) else None
        return user if isinstance(user, str) else ""

    def error(self, status: int, message: str) -> bytes:
        return error_body(status, message)

    def body(self, cid: str, created: int, model: str, prompt: int, completion: int, capped: bool) -> bytes:
        return message_body(cid, model, prompt, completion, capped)

    def with_usage(self, mode: str, body: dict[str, Any]) -> bool:
        return True     # Anthropic always reports usage (message_start, message_delta); `stream.usage` is chat's

    def stream_head(self, cid: str, created: int, model: str, prompt: int, completion: int) -> bytes:
        return stream_head(cid, model, prompt, completion)

    def content(self, cid: str, created: int, model: str, tokens: int, first: bool) -> bytes:
        return delta_event(tokens)

    def stream_tail(self, cid: str, created: int, model: str, prompt: int, completion: int, capped: bool,
                    with_usage: bool) -> bytes:
        return stream_tail(completion, capped)

    def malformed_json(self, cid: str) -> bytes:
        return malformed_json_event()

    def malformed_sse(self) -> bytes:
        return malformed_sse_event()
