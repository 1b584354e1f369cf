"""Locust users that send chat completions to the proxies. Config: the option `--harness-config` (LoadConfig).

    locust -f harness/load/locustfile.py --harness-config run/load-config.json --headless -u 50 -r 50 -t 60s \\
        --csv run/locust --html run/locust.html

`--harness-config` takes the LoadConfig JSON itself or the path of a JSON file; $HARNESS_LOAD_CONFIG is its
fallback (Locust's `env_var`). Importing this file reads nothing: the config is read on first use — at `init`
on a master or a stand-alone Locust (to install the stages' LoadTestShape), at `test_start` / the first user
on a worker. A master replaces the option's value by the config's compact JSON, and Locust forwards every
custom option's value to the workers in each spawn message (runners.py: MasterRunner.start puts
`vars(parsed_options)` in the message, WorkerRunner.worker copies the options Locust does not define itself
into its own `parsed_options` before `test_start`), so a worker needs neither a file nor the variable.

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
from locust.env import Environment
from locust.runners import Runner, WorkerRunner

from harness.load.client import ChatClient, RequestPlan, RequestPlanner
from harness.load.config import CONFIG_DEST, CONFIG_OPTION, ENV_VAR, LoadConfig, config_from_option
from harness.load.writer import RowWriter
from harness.run.runfolder import REQUESTS_FILE

_user_seq = itertools.count()
_writer: RowWriter | None = None
_loaded: tuple[str, LoadConfig] | None = None     # (the option value it came from, the config)
_key: str | None = None                           # never logged
FLUSH_S = 0.5


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    parser.add_argument(CONFIG_OPTION, dest=CONFIG_DEST, env_var=ENV_VAR, default="", include_in_web_ui=False,
                        help="the load config (harness.load.config.LoadConfig): its JSON, or the path of a JSON "
                             f"file; default ${ENV_VAR}. A master forwards it to its workers")


def option_value(environment: Environment) -> str:
    """What --harness-config holds in this process (on a worker: what the master sent), else $HARNESS_LOAD_CONFIG."""
    value = getattr(environment.parsed_options, CONFIG_DEST, "") if environment.parsed_options else ""
    return str(value or os.environ.get(ENV_VAR, ""))


def config(environment: Environment) -> LoadConfig:
    """The run's config, read once per option value (a worker reads what the master forwarded)."""
    global _loaded
    value = option_value(environment)
    if _loaded is None or _loaded[0] != value:
        _loaded = (value, config_from_option(value))
    return _loaded[1]


def master_key(cfg: LoadConfig) -> str:
    """Read once per process, only where users run (a master never reads it)."""
    global _key
    if _key is None:
        _key = cfg.master_key()
    return _key


class StagesShape(LoadTestShape):
    """Stages from the config: (duration_s, users, spawn_rate) one after the other. Installed by `_on_init`
    when the config has stages (abstract, so Locust does not pick it up at import, before the config is known)."""

    abstract = True

    def __init__(self, cfg: LoadConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def tick(self) -> tuple[int, float] | None:
        return self.cfg.stage_at(self.get_run_time())


@events.init.add_listener
def _on_init(environment: Environment, runner: Runner | None = None, **_: Any) -> None:
    """Master or stand-alone Locust: read the config now (a bad one fails the start), make the option carry its
    JSON for the workers, and drive the stages with a LoadTestShape. A worker waits for the master's value."""
    if isinstance(runner, WorkerRunner) or environment.parsed_options is None:
        return
    cfg = config(environment)
    compact = cfg.to_json(indent=None)
    setattr(environment.parsed_options, CONFIG_DEST, compact)
    global _loaded
    _loaded = (compact, cfg)
    if cfg.stages and environment.shape_class is None:
        shape = StagesShape(cfg)
        shape.runner = runner
        environment.shape_class = shape


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    """A worker has the master's value from here on: read it before the first user starts (elsewhere cached)."""
    config(environment)


def writer(cfg: LoadConfig) -> RowWriter:
    """The process's writer (created after a --processes fork, never shared across processes)."""
    global _writer
    if _writer is None or _writer.pid != os.getpid():
        _writer = RowWriter(Path(cfg.run_dir) / REQUESTS_FILE)
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
        cfg = self.cfg = config(self.environment)
        seq = next(_user_seq)
        self.retry_on = frozenset(cfg.retry_on_status)
        self.planner = RequestPlanner(cfg, random.Random(f"{cfg.seed}:{os.getpid()}:{seq}"))
        self.chat_client = ChatClient(cfg, master_key(cfg))
        writer(cfg)

    def on_stop(self) -> None:
        self.chat_client.close()

    @task
    def chat(self) -> None:
        cfg = self.cfg
        gevent.sleep(self.planner.rng.uniform(*cfg.wait_s))
        plan = self.planner.next()
        for attempt in range(cfg.retries_max + 1):
            row, killed = self.chat_client.attempt(plan, attempt)
            nbytes = row.pop("_bytes", 0)
            writer(cfg).add(row)
            exc = None
            if row["error_type"]:
                exc = RuntimeError(f"{row['status']} {row['error_type']}: {str(row['error_text'])[:120]}")
            self.environment.events.request.fire(
                request_type="POST", name=_event_name(plan, row), response_time=row["latency_s"] * 1000.0,
                response_length=nbytes, exception=exc, context={"end_user": plan.end_user}, response=None)
            if killed is not None:
                raise killed
            if attempt < cfg.retries_max and row["status"] in self.retry_on:
                gevent.sleep(cfg.retry_backoff_s * (2 ** attempt))
                continue
            break
