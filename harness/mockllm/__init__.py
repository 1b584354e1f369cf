"""Mock OpenAI-compatible upstream with fault injection and a ground-truth ledger (see README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.mockllm.control import MockControl

__all__ = ["MockControl", "mock_command"]


def mock_command(python: str, port: int, ledger: Path, events: Path, seed: int, config: dict[str, Any],
                 host: str = "127.0.0.1") -> list[str]:
    """The command line that starts the mock (run it in its own process group)."""
    cmd = [python, "-m", "harness.mockllm", "--host", host, "--port", str(port), "--ledger", str(ledger),
           "--events", str(events), "--seed", str(seed)]
    if config:
        cmd += ["--config", json.dumps(config, separators=(",", ":"))]
    return cmd
