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
