"""`MockControl`: the nemesis's client for the mock's run-time fault control."""

from __future__ import annotations

from typing import Any

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
