"""Start Locust in its own process group, stop it early, and count what it did while it runs."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.load.config import CONFIG_FILE, CONFIG_OPTION, LoadConfig
from harness.load.locust_main import LOCUSTFILE
from harness.load.writer import open_appender
from harness.run.runfolder import REQUESTS_FILE
from harness.util.procs import stop_group

PROC_NAME = "locust"
LOCUST_PREFIX = "locust"          # <run>/locust_stats.csv, locust_stats_history.csv, locust_failures.csv, ...
LOCUST_HTML = "locust.html"
LOCUST_LOG = "locust.log"
# Mirrors harness.analyze.classify.BUDGET_ANY (kept here so the live display needs no pandas).
BUDGET_ANY = re.compile(r"Budget has been exceeded|ExceededBudget|over budget|budget_exceeded", re.IGNORECASE)


def default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default. An ignored SIGINT is inherited through fork and exec
    (a harness started as a background job of a non-interactive shell has it ignored), and Python then leaves it
    ignored, so `stop()`'s SIGINT would not reach Locust: seen in a CI run, where the master only ended at the
    SIGTERM after the stop's deadline (58 s)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_timeout_s(config: LoadConfig) -> int:
    """Locust's --stop-timeout: in-flight requests may finish (the client timeout + 2 s unless configured)."""
    return math.ceil(config.stop_timeout_s if config.stop_timeout_s is not None else config.client_timeout_s + 2)


def locust_args(config: LoadConfig, run_dir: Path) -> list[str]:
    """The options of a run's master (or stand-alone Locust), after `-f <locustfile>`: the config file named
    by the locustfile's --harness-config, headless, the CSV/HTML reports in the run folder, --stop-timeout, the
    exit code, and the shape (users/spawn rate/run time; with stages the LoadTestShape drives it instead).
    Shared by `locust_command` (this machine) and harness.load.distributed (a master on another host)."""
    args = [CONFIG_OPTION, str(run_dir / CONFIG_FILE), "--headless", "--only-summary",
            "--csv", str(run_dir / LOCUST_PREFIX), "--html", str(run_dir / LOCUST_HTML),
            "--stop-timeout", str(stop_timeout_s(config)), "--exit-code-on-error", "0", "--loglevel", "INFO"]
    if not config.stages:
        args += ["-u", str(config.users), "-r", str(config.spawn_rate), "-t", f"{math.ceil(config.duration_s)}s"]
    return args


def locust_command(config: LoadConfig, run_dir: Path, processes: int = 1) -> list[str]:
    """Host Locust; the config is <run>/load-config.json, named by the locustfile's --harness-config."""
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *locust_args(config, run_dir)]
    if processes > 1:
        cmd += ["--processes", str(processes)]
    return cmd


def prepare_run_dir(config: LoadConfig, run_dir: Path) -> None:
    """<run>/load-config.json written, requests.csv created with its header (what every launcher does first)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config.write(run_dir / CONFIG_FILE)
    open_appender(run_dir / REQUESTS_FILE).close()


@dataclass
class LocustHandle:
    """The running Locust master, in its own process group (with --processes its workers are in it too)."""

    proc: subprocess.Popen[bytes]
    config: LoadConfig
    name: str = PROC_NAME
    started: float = field(default_factory=time.time)

    @property
    def pid(self) -> int:
        """Also the process group id (started in its own session): what the stack tracks for `harness down`."""
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float | None = None) -> int | None:
        """Stop early: SIGINT to Locust (users finish in-flight requests within --stop-timeout, then the CSVs
        and the HTML report are written); the whole group is killed if it is still there after `timeout`.
        Also reaps what is left of the group after a normal exit (forked workers)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)
            if timeout is None:
                timeout = (self.config.stop_timeout_s or self.config.client_timeout_s) + 20
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        stop_group(self.proc.pid, timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        return self.proc.returncode


def run_locust(config: LoadConfig, run_dir: Path, processes: int = 1, stages: list[dict[str, float]] | None = None,
               extra_env: dict[str, str] | None = None) -> LocustHandle:
    """Start Locust headless for the config's shape (users/spawn rate/duration, or stages) and return at once.

    Locust runs in its own session (a Ctrl-C at the terminal does not reach it: the caller stops it with
    `LocustHandle.stop()`, which lets in-flight requests finish). The config (no secrets: the key is in
    `config.master_key_file`) goes to <run>/load-config.json, named on the command line (--harness-config);
    requests.csv is created with its header first.
    """
    if stages is not None:
        config.stages = [dict(s) for s in stages]
    prepare_run_dir(config, run_dir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    cmd = locust_command(config, run_dir, processes)
    with open(run_dir / LOCUST_LOG, "ab") as log_fh:
        proc = subprocess.Popen(  # noqa: S603 - the command is built above
            cmd, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=run_dir,
            start_new_session=True, preexec_fn=default_sigint)
    return LocustHandle(proc=proc, config=config)


class LiveStats:
    """Counts requests.csv rows as they are appended (incremental; cheap to poll every 0.5 s)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / REQUESTS_FILE
        self._offset = 0
        self._columns: list[str] | None = None
        self.counts: dict[str, int] = {"requests": 0, "ok": 0, "budget_rejections": 0, "errors": 0,
                                       "disconnects": 0}

    def poll(self) -> dict[str, int]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return dict(self.counts)
        cut = _complete_records(data)
        if cut:
            self._offset += cut
            self._count(data[:cut].decode(errors="replace"))
        return dict(self.counts)

    def _count(self, text: str) -> None:
        reader = csv.reader(io.StringIO(text))
        if self._columns is None:
            self._columns = next(reader, None)
            if self._columns is None:
                return
        idx = {name: i for i, name in enumerate(self._columns)}
        i_status, i_type, i_text, i_disc = idx["status"], idx["error_type"], idx["error_text"], idx["disconnected"]
        c = self.counts
        for row in reader:
            if len(row) < len(self._columns):
                continue
            c["requests"] += 1
            if row[i_disc] == "1":
                c["disconnects"] += 1
            if row[i_type]:
                if BUDGET_ANY.search(row[i_text]):
                    c["budget_rejections"] += 1
                else:
                    c["errors"] += 1
            elif row[i_status].startswith("2") and row[i_disc] != "1":
                c["ok"] += 1


def _complete_records(data: bytes) -> int:
    """Length of the prefix of `data` that ends with a newline outside a quoted field."""
    end = data.rfind(b"\n")
    while end >= 0:
        if data.count(b'"', 0, end + 1) % 2 == 0:
            return end + 1
        end = data.rfind(b"\n", 0, end)
    return 0


def summarize(run_dir: Path) -> dict[str, Any]:
    """Counts over the whole requests.csv (after the run)."""
    return LiveStats(run_dir).poll()
