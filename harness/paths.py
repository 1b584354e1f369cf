"""Where the harness keeps its caches, stack state and results."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def cache_dir() -> Path:
    """Cached LiteLLM environments (`.cache/litellm/<version>/`)."""
    return Path(os.environ.get("HARNESS_CACHE_DIR", REPO_ROOT / ".cache"))


def state_root() -> Path:
    """Stack state folders (`.state/<stack-name>/`): state file, secrets, data dirs, logs."""
    return Path(os.environ.get("HARNESS_STATE_DIR", REPO_ROOT / ".state"))


def results_dir() -> Path:
    return Path(os.environ.get("HARNESS_RESULTS_DIR", REPO_ROOT / "results"))


def engine_dir() -> Path:
    """The Prisma query-engine stand-in (Node project)."""
    return PACKAGE_DIR / "engine"
