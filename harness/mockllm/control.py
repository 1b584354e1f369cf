"""`MockControl`: the nemesis's client for the mock's run-time fault control."""

from __future__ import annotations

from typing import Any

import httpx


class MockControl:
    """Change the mock's faults while it runs; every change lands in the mock's events CSV."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = httpx.request(method, self.base_url + path, json=payload, timeout=self.timeout)
        if resp.status_code != 200:
            raise ValueError(f"mock {method} {path}: HTTP {resp.status_code}: {resp.text}")
        return resp.json()

    def set_faults(self, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge `patch` ({kind: p | {p, param...}} or {"faults": ..., "stream": ...}); returns the new config."""
        return self._call("POST", "/control/faults", patch)

    def get_faults(self) -> dict[str, Any]:
        return self._call("GET", "/control/faults")

    def reset(self) -> dict[str, Any]:
        """Back to the configuration the mock started with."""
        return self._call("POST", "/control/reset")

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")
