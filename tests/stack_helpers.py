"""Helpers for end-to-end tests on a real stack (no fakes)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil

T = TypeVar("T")


def poll(fn: Callable[[], T], *, deadline_s: float, what: str, interval: float = 0.25) -> T:
    """Call fn until it returns a truthy value; fail the test at the deadline."""
    end = time.monotonic() + deadline_s
    last: T = fn()
    while not last:
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not true after {deadline_s} s (last value {last!r})")
        time.sleep(interval)
        last = fn()
    return last


def searchable_tmp(prefix: str) -> Path:
    """A temporary folder PostgreSQL (run as user `postgres` when the tests run as root) can reach."""
    path = Path(tempfile.mkdtemp(prefix=f"harness-{prefix}-"))
    path.chmod(0o755)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def listening_ports(ports: list[int]) -> list[int]:
    listening = {c.laddr.port for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
    return [p for p in ports if p in listening]


def processes_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def descendants_of_recorded(pgids: list[int]) -> list[int]:
    """Every live process whose process group is one the harness recorded."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) in pgids and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return found
