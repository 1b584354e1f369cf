"""OpenAI wire format: chat completion bodies, stream chunks (SSE frames) and error bodies, as bytes."""

from __future__ import annotations

from typing import Any

import orjson

from harness.mockllm.tokens import TOKEN_TEXT

DONE_FRAME = b"data: [DONE]\n\n"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def text_for(tokens: int) -> str:
    return TOKEN_TEXT * tokens


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(cid: str, created: int, model: str, prompt: int, completion: int) -> bytes:
    return orjson.dumps({
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text_for(completion)},
                     "finish_reason": "length", "logprobs": None}],
        "usage": usage(prompt, completion),
    })


def _frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def content_frame(cid: str, created: int, model: str, tokens: int, first: bool) -> bytes:
    delta: dict[str, str] = {"role": "assistant", "content": text_for(tokens)} if first else \
        {"content": text_for(tokens)}
    return _frame({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})


def finish_frame(cid: str, created: int, model: str) -> bytes:
    return _frame({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})


def usage_frame(cid: str, created: int, model: str, prompt: int, completion: int) -> bytes:
    return _frame({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [], "usage": usage(prompt, completion)})


def malformed_json_frame(cid: str) -> bytes:
    """A `data:` frame whose JSON is cut off."""
    return b'data: {"id": "' + cid.encode() + b'", "object": "chat.completion.chunk", "choices": [{"delta": {"con\n\n'


def malformed_sse_frame() -> bytes:
    """A frame without the `data:` field name and with a stray line: not valid SSE for an OpenAI client."""
    return b'{"object": "chat.completion.chunk" ???\nnot-a-field\n\n'


def error_body(message: str, etype: str, code: str | int | None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": etype, "param": None, "code": code}})


def models_body(models: list[str], created: int) -> bytes:
    return orjson.dumps({"object": "list", "data": [
        {"id": m, "object": "model", "created": created, "owned_by": "mockllm"} for m in models]})


_ERROR_TYPES = {400: ("invalid_request_error", None), 429: ("rate_limit_exceeded", "rate_limit_exceeded")}


class OpenAIWire:
    """The chat completions route's wire format (`server.Wire`): the functions above."""

    name = "openai"
    id_prefix = "chatcmpl-"

    def end_user(self, body: dict[str, Any]) -> str:
        user = body.get("user")
        return user if isinstance(user, str) else ""

    def error(self, status: int, message: str) -> bytes:
        etype, code = _ERROR_TYPES.get(status, ("server_error", None))
        return error_body(message, etype, code)

    def body(self, cid: str, created: int, model: str, prompt: int, completion: int, capped: bool) -> bytes:
        return completion_body(cid, created, model, prompt, completion)

    def with_usage(self, mode: str, body: dict[str, Any]) -> bool:
        """A usage frame at the end of a stream: `always`, or `auto` when the request asks for it (like OpenAI)."""
        options = body.get("stream_options")
        return mode == "always" or (mode == "auto" and isinstance(options, dict)
                                    and options.get("include_usage") is True)

    def stream_head(self, cid: str, created: int, model: str, prompt: int, completion: int) -> bytes:
        return b""

    def content(self, cid: str, created: int, model: str, tokens: int, first: bool) -> bytes:
        return content_frame(cid, created, model, tokens, first)

    def stream_tail(self, cid: str, created: int, model: str, prompt: int, completion: int, capped: bool,
                    with_usage: bool) -> bytes:
        tail = finish_frame(cid, created, model)
        if with_usage:
            tail += usage_frame(cid, created, model, prompt, completion)
        return tail + DONE_FRAME

    def malformed_json(self, cid: str) -> bytes:
        return malformed_json_frame(cid)

    def malformed_sse(self) -> bytes:
        return malformed_sse_frame()
