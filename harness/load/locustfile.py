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

Rows via the master (`rows_via_master`, workers on other machines): a worker never opens the file. Its
RowForwarder sends batches with `runner.send_message("harness_rows", …)` every FLUSH_S and at `test_stop`; the
master registers that message at `init` and appends what arrives with its RowWriter. The end of a run needs
more than that, because a headless master ends every run — `-t` expiring, the shape's last tick, SIGINT/SIGTERM
— with `MasterRunner.quit()` (locust 2.32.6 runners.py), which is `stop(send_stop_to_client=False)`, then
"quit" to each worker, `gevent.sleep(0.5)` and the end of its message loop: a worker's users finish their
in-flight requests (up to --stop-timeout) only after that "quit", so their rows would reach a master that no
longer listens. Hence the drain: the master's `test_stop` listener (fired at the end of that `stop()`, before
any "quit" is sent) sends "harness_drain" to every worker and waits (at most --stop-timeout + DRAIN_MARGIN_S)
until each has answered "harness_drained" or left. A worker answers from a greenlet of its own: `runner.stop()`
(users finish within --stop-timeout, the rest are killed, and a killed user's row is added as it dies), whose
`test_stop` sends the remaining rows, then "harness_drained". Both go out on the worker's one ZeroMQ socket
(`send` with NOBLOCK: queued in call order) and the master's single message loop handles messages in arrival
order, the rows handler inline (not concurrent): when "harness_drained" is handled, that worker's rows are
on disk. Only then does the master send "quit".
"""

from __future__ import annotations

import atexit
import functools
import itertools
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import gevent
from locust import LoadTestShape, User, constant, events, task
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner, Runner, WorkerRunner

from harness.load.client import ChatClient, RequestPlan, RequestPlanner
from harness.load.config import (
    CONFIG_DEST,
    CONFIG_OPTION,
    DRAIN_MARGIN_S,
    ENV_VAR,
    LoadConfig,
    config_from_option,
)
from harness.load.writer import RowForwarder, RowWriter, decode_rows
from harness.run.runfolder import REQUESTS_FILE

_user_seq = itertools.count()
_writer: RowWriter | RowForwarder | None = None   # a worker's rows; the master's file (rows_via_master)
_loaded: tuple[str, LoadConfig] | None = None     # (the option value it came from, the config)
_key: str | None = None                           # never logged
FLUSH_S = 0.5
ROWS_MESSAGE = "harness_rows"          # worker → master: a batch of rows (writer.encode_rows)
DRAIN_MESSAGE = "harness_drain"        # master → workers, at the master's test_stop: stop users, send the rest
DRAINED_MESSAGE = "harness_drained"    # worker → master: every row of mine was sent before this
log = logging.getLogger("harness.load")
_received: dict[str, int] = {}         # master: rows received per worker (Locust client id)
_drained: set[str] = set()             # master: workers that answered the current drain


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
    if isinstance(runner, WorkerRunner):
        runner.register_message(DRAIN_MESSAGE, _on_drain, concurrent=True)
        # quitting fires listeners in reverse order: this one runs before WorkerRunner's own (registered when
        # the runner was made, before `init`), which tells the master this worker quit
        environment.events.quitting.add_listener(_flush_now)
        return
    if environment.parsed_options is None:
        return
    cfg = config(environment)
    compact = cfg.to_json(indent=None)
    setattr(environment.parsed_options, CONFIG_DEST, compact)
    global _loaded, _writer
    _loaded = (compact, cfg)
    if cfg.stages and environment.shape_class is None:
        shape = StagesShape(cfg)
        shape.runner = runner
        environment.shape_class = shape
    if isinstance(runner, MasterRunner) and cfg.rows_via_master:
        _writer = RowWriter(Path(cfg.run_dir) / REQUESTS_FILE)
        runner.register_message(ROWS_MESSAGE, _on_rows)           # inline, in the master's message loop
        runner.register_message(DRAINED_MESSAGE, _on_drained)
        environment.events.test_stop.add_listener(_drain_workers)


def _on_rows(environment: Environment, msg: Any, **_: Any) -> None:
    """Master: append a worker's batch to requests.csv at once (one write per ≤ BATCH_ROWS rows)."""
    rows = decode_rows(msg.data)
    if isinstance(_writer, RowWriter):
        _writer.add_many(rows)
        _writer.flush()
    _received[msg.node_id] = _received.get(msg.node_id, 0) + len(rows)


def _on_drained(environment: Environment, msg: Any, **_: Any) -> None:
    _drained.add(msg.node_id)
    sent = (msg.data or {}).get("rows")
    got = _received.get(msg.node_id, 0)
    log.info("harness: worker %s drained: it sent %s rows, the master wrote %d%s", msg.node_id, sent, got,
             "" if sent == got else " (MISMATCH)")


def _drain_workers(environment: Environment, **_: Any) -> None:
    """Master, at test_stop (inside MasterRunner.stop, before quit() sends "quit"): every worker stops its
    users and sends its last rows; wait for each answer (or its leaving) before the run goes on to quit."""
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return
    waiting = {node.id for node in runner.clients.all if node.state != STATE_MISSING}
    if not waiting:
        return
    _drained.difference_update(waiting)
    runner.send_message(DRAIN_MESSAGE)
    limit = float(environment.stop_timeout or 0) + DRAIN_MARGIN_S
    deadline = time.monotonic() + limit
    while pending := {i for i in waiting if i not in _drained and i in runner.clients}:
        if time.monotonic() >= deadline:
            log.warning("harness: %d worker(s) did not drain within %.0f s; their last rows may be missing: %s",
                        len(pending), limit, ", ".join(sorted(pending)))
            break
        gevent.sleep(0.05)
    log.info("harness: rows from %d worker(s) drained, %d rows in all", len(waiting & _drained),
             sum(_received.values()))


def _on_drain(environment: Environment, msg: Any = None, **_: Any) -> None:
    """Worker (its own greenlet): stop the users — in-flight requests finish within --stop-timeout, the rest
    are killed and add their row — so `test_stop` sends the last rows; then tell the master."""
    runner = environment.runner
    if runner is None:
        return
    runner.stop()
    _flush_now()                      # (also when stop() had nothing to do: the worker had stopped already)
    sent = _writer.sent if isinstance(_writer, RowForwarder) and _writer.pid == os.getpid() else 0
    log.info("harness: drained: %d rows sent to the master", sent)
    runner.send_message(DRAINED_MESSAGE, {"rows": sent})


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    """A worker has the master's value from here on: read it before the first user starts (elsewhere cached)."""
    config(environment)


def writer(cfg: LoadConfig, environment: Environment | None = None) -> RowWriter | RowForwarder:
    """The process's rows: a RowWriter on requests.csv, or on a worker with `rows_via_master` a RowForwarder to
    the master (created after a --processes fork, never shared across processes)."""
    global _writer
    if _writer is None or _writer.pid != os.getpid():
        runner = environment.runner if environment is not None else None
        if cfg.rows_via_master and isinstance(runner, WorkerRunner):
            _writer = RowForwarder(functools.partial(runner.send_message, ROWS_MESSAGE))
        else:
            _writer = RowWriter(Path(cfg.run_dir) / REQUESTS_FILE)
        gevent.spawn(_flush_loop, _writer)
    return _writer


def _flush_loop(w: RowWriter | RowForwarder) -> None:
    while True:
        gevent.sleep(FLUSH_S)
        w.flush()


def _flush_now(**_: Any) -> None:
    if _writer is not None and _writer.pid == os.getpid():
        _writer.flush()


def _flush_at_exit() -> None:
    """The file's last rows; a forwarder sends nothing at interpreter exit (the socket may be gone, and a failed
    send retries for seconds): its rows went at test_stop / quitting."""
    if isinstance(_writer, RowWriter) and _writer.pid == os.getpid():
        _writer.flush()


events.test_stop.add_listener(_flush_now)
events.quitting.add_listener(_flush_now)
atexit.register(_flush_at_exit)


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
        writer(cfg, self.environment)

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
            writer(cfg, self.environment).add(row)
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
