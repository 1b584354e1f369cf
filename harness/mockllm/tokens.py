"""Deterministic token counts from a request (OpenAI chat completions or Anthropic Messages): no tokenizer, just
arithmetic on the request."""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4
TOKEN_TEXT = "lo "  # one completion token's worth of text (one cl100k token per "lo")


def _text_len(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        total = 0
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    total += len(text)
            elif isinstance(part, str):
                total += len(part)
        return total
    return 0


def prompt_tokens(body: dict[str, Any]) -> int:
    """ceil(characters of all message contents / 4), at least 1 (also counts a legacy `prompt` and Anthropic's
    top-level `system`, a string or text blocks)."""
    chars = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                chars += _text_len(message.get("content"))
    chars += _text_len(body.get("prompt"))
    chars += _text_len(body.get("system"))
    return max(1, -(-chars // CHARS_PER_TOKEN))


def requested_tokens(body: dict[str, Any]) -> int | None:
    """`max_completion_tokens`, else `max_tokens` (a positive integer), else None: the request sets no limit."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def completion_tokens(body: dict[str, Any], default: int) -> int:
    """`max_completion_tokens`, else `max_tokens`, else the configured default (at least 1)."""
    requested = requested_tokens(body)
    return requested if requested is not None else max(1, default)


def spread(total: int, chunks: int) -> list[int]:
    """Split `total` tokens over at most `chunks` chunks, as evenly as possible, none empty."""
    n = max(1, min(chunks, total))
    base, extra = divmod(total, n)
    return [base + 1 if i < extra else base for i in range(n)]
