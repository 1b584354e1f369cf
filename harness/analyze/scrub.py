"""Remove anything that looks like a secret before text leaves the analyzer (report, verdict, console)."""

from __future__ import annotations

import re
from typing import Any

_PATTERNS = (
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{2,}"), "sk-***"),                                  # LiteLLM / OpenAI keys
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._\-~+/=]{8,}"), r"\1 ***"),
    (re.compile(r"(?i)\b([a-z_]*(?:master_key|api_key|secret|password|passwd|access_token|auth_token|access_key))"
                r"(\"?\s*[:=]\s*\"?)[^\s\"',}&]+"), r"\1\2***"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]+):[^\s@/]+@"), r"\1:***@"),        # user:password@ in URLs
)


def scrub(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def scrub_obj(obj: Any) -> Any:
    """Scrub every string inside a JSON-like object."""
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, dict):
        return {k: scrub_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [scrub_obj(v) for v in obj]
    return obj
