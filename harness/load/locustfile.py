"""Locust users that send chat completions to the proxies. Config: $HARNESS_LOAD_CONFIG (a LoadConfig JSON).

    HARNESS_LOAD_CONFIG=run/load-config.json locust -f harness/load/locustfile.py --headless -u 50 -r 50 -t 60s \\
        --csv run/locust --html run/locust.html

Every attempt is one row of <run_dir>/requests.csv (REQUESTS_COLUMNS) and one Locust request event
(names: "chat", "stream", "stream walk-away"). With stages in the config a LoadTestShape drives the users.
"""

from __future__ import annotations

import atexit
import itertools
import os
import random
from pathlib import Path
from typing import Any

import gevent
from locust import LoadTestShape, User, constant, events, task

from harness.load.client import ChatClient, RequestPlan, RequestPlanner
from harness.load.config import load_from_env
from harness.load.writer import RowWriter
from harness.run.runfolder import REQUESTS_FILE

CONFIG = load_from_env()
_KEY = CONFIG.master_key()       # never logged
_RETRY_ON = frozenset(CONFIG.retry_on_status)
_user_seq = itertools.count()
_writer: RowWriter | None = None
FLUSH_S = 0.5


def writer() -> RowWriter:
    """The process's writer (created after a --processes fork, never shared across processes)."""
    global _writer
    if _writer is None or _writer.pid != os.getpid():
        _writer = RowWriter(Path(CONFIG.run_dir) / REQUESTS_FILE)
        gevent.spawn(_flush_loop, _writer)
    return _writer


def _flush_loop(w: RowWriter) -> None:
    while True:
        gevent.sleep(FLUSH_S)
        w.flush()


def _flush_now(**_: Any) -> None:
    if _writer is not None and _writer.pid == os.getpid():
        _writer.flush()


events.test_stop.add_listener(_flush_now)
events.quitting.add_listener(_flush_now)
atexit.register(_flush_now)


def _event_name(plan: RequestPlan, row: dict[str, Any]) -> str:
    if not plan.stream:
        return "chat"
    return "stream walk-away" if row["disconnected"] and not row["error_type"] else "stream"


class ChatUser(User):
    # Think time is slept inside the task (the user is RUNNING, so a graceful stop lets it finish), not in
    # Locust's wait: a user stopped while WAITING is killed, and when its sleep had already ended the kill
    # lands inside the next request — an unplanned client disconnect (a leak on the proxy). The sleep at
    # the start of the task (even of 0 s) yields once, so a kill queued before the task lands before the
    # request is sent.
    wait_time = constant(0)

    def on_start(self) -> None:
        seq = next(_user_seq)
        self.planner = RequestPlanner(CONFIG, random.Random(f"{CONFIG.seed}:{os.getpid()}:{seq}"))
        self.chat_client = ChatClient(CONFIG, _KEY)
        writer()

    def on_stop(self) -> None:
        self.chat_client.close()

    @task
    def chat(self) -> None:
        gevent.sleep(self.planner.rng.uniform(*CONFIG.wait_s))
        plan = self.planner.next()
        for attempt in range(CONFIG.retries_max + 1):
            row, killed = self.chat_client.attempt(plan, attempt)
            nbytes = row.pop("_bytes", 0)
            writer().add(row)
            exc = None
            if row["error_type"]:
                exc = RuntimeError(f"{row['status']} {row['error_type']}: {str(row['error_text'])[:120]}")
            self.environment.events.request.fire(
                request_type="POST", name=_event_name(plan, row), response_time=row["latency_s"] * 1000.0,
                response_length=nbytes, exception=exc, context={"end_user": plan.end_user}, response=None)
            if killed is not None:
                raise killed
            if attempt < CONFIG.retries_max and row["status"] in _RETRY_ON:
                gevent.sleep(CONFIG.retry_backoff_s * (2 ** attempt))
                continue
            break


if CONFIG.stages:
    class StagesShape(LoadTestShape):
        """Stages from the scenario: (duration_s, users, spawn_rate) one after the other."""

        stages = [(float(s["duration_s"]), int(s["users"]), float(s.get("spawn_rate", 50.0))) for s in CONFIG.stages]

        def tick(self) -> tuple[int, float] | None:
            t = self.get_run_time()
            end = 0.0
            for duration, users, rate in self.stages:
                end += duration
                if t < end:
                    return users, rate
            return None
