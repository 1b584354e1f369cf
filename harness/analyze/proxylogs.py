"""What the proxies' own logs say about the leak paths (counted per signal, with one example line each).

These are LiteLLM's log lines of the paths on which a reservation can stay behind: success logging
cancelled by the logging worker's time limit, Redis errors on the spend paths, counter increments that did
not land. They explain a result; they never decide the verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Signal:
    key: str
    pattern: re.Pattern[str]
    meaning: str


SIGNALS = (
    Signal("logging_callback_timeout", re.compile(r"callback\(s\) timed out after [\d.]+s"),
           "success/failure callbacks cancelled by LiteLLM's logging worker time limit "
           "(LOGGING_WORKER_MAX_TIME_PER_COROUTINE): the reconcile of those requests never ran"),
    Signal("counter_increment_not_landed", re.compile(r"Spend counter \S+ increment did not land"),
           "a spend-counter increment did not land in Redis"),
    Signal("redis_error", re.compile(r"Got exception from REDIS|redis error|Redis.*(Timeout|ConnectionError)",
                                     re.IGNORECASE),
           "Redis calls failed (release / reconcile / cache paths)"),
    Signal("spend_buffer_push_failed", re.compile(r"failed to push aggregated spend updates"),
           "the Redis transaction buffer could not take spend updates"),
    Signal("circuit_breaker", re.compile(r"circuit[ _-]?breaker", re.IGNORECASE),
           "a Redis circuit breaker opened (calls skipped)"),
    Signal("cancelled", re.compile(r"CancelledError|GeneratorExit"), "request tasks cancelled (client gone)"),
)


def scan_proxy_logs(run_dir: Path, max_bytes: int = 200_000_000) -> dict[str, Any]:
    """{signal: {count, replicas: {log name: count}, example, meaning}} over every proxy-*.log."""
    found: dict[str, dict[str, Any]] = {}
    for log in sorted(run_dir.glob("proxy-*.log")):
        if log.suffix != ".log":
            continue
        seen = 0
        with open(log, errors="replace") as fh:
            for raw in fh:
                seen += len(raw)
                if seen > max_bytes:
                    break
                for sig in SIGNALS:
                    if sig.pattern.search(raw):
                        entry = found.setdefault(sig.key, {"count": 0, "replicas": {}, "meaning": sig.meaning,
                                                           "example": ANSI.sub("", raw).strip()[:300]})
                        entry["count"] += 1
                        entry["replicas"][log.stem] = entry["replicas"].get(log.stem, 0) + 1
    return found
