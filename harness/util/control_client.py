"""The client side of the harness's control endpoints (the mock LLM's, the Redis relay's)."""

from __future__ import annotations

from typing import Any

import httpx


class JsonControlClient:
    """A small JSON-over-HTTP client of a control endpoint (the mock LLM's, the Redis relay's)."""

    what = "control"                           # named in error messages
    error: type[Exception] = RuntimeError      # raised on a non-200 answer

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = httpx.request(method, self.url + path, json=body, timeout=self.timeout)
        if resp.status_code != 200:
            raise self.error(f"{self.what} {method} {path}: HTTP {resp.status_code}: {resp.text}")
        data: dict[str, Any] = resp.json()
        return data
