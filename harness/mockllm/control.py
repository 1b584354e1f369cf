"""`MockControl`: the nemesis's client for the mock's run-time fault control."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from harness.util.control_client import JsonControlClient


class MockControl(JsonControlClient):
    """Change the mock's faults while it runs; every change lands in the mock's events CSV."""

    what = "mock"
    error = ValueError

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

    def download(self, what: str, out: Path, since: float = 0.0, end_user_prefix: str | None = None,
                 timeout: float = 300.0) -> int:
        """Stream the mock's `what` ("ledger" or "events") rows since `since` into `out` (CSV with its header);
        returns the rows written. For a harness that does not share the mock's disk."""
        params: dict[str, str] = {"since": repr(since)}
        if end_user_prefix is not None:
            params["end_user_prefix"] = end_user_prefix
        lines = 0
        tmp = out.with_name(out.name + ".part")
        with httpx.stream("GET", f"{self.url}/control/{what}", params=params, timeout=timeout) as resp:
            if resp.status_code != 200:
                raise self.error(f"mock GET /control/{what}: HTTP {resp.status_code}: {resp.read().decode()[:200]}")
            with open(tmp, "wb") as fh:
                for piece in resp.iter_bytes():
                    fh.write(piece)
                    lines += piece.count(b"\n")
        tmp.replace(out)
        return max(0, lines - 1)
