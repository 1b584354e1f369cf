"""Helpers for end-to-end tests on a real stack (no fakes)."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from harness.litellm import env as litellm_env

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


def skip_unless_built(version: str) -> None:
    """Skip (with the command that builds it) when LiteLLM `version`'s environment is not cached; CI builds every
    version its end-to-end tests name (.ci/run)."""
    if not any(env.version == version for env in litellm_env.cached()):
        pytest.skip(f"LiteLLM {version} environment not built (`harness env build {version}`; CI: .ci/run)")


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on a free loopback port in a thread; yields its base URL, shuts it down after."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
