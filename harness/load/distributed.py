"""Locust's own distributed mode across hosts: a master and workers started through command prefixes.

    handle = run_locust_distributed(config, run_dir, target.load)     # harness.stack.external.target.Load
    handle.tracked()    # {"locust": master pid, "locust-worker-1": pid, …}: register each for `harness down`
    handle.wait() / handle.stop()

`Load.master_command` is a prefix that runs a process on the master's host (empty: this machine), each
`Load.workers` entry a prefix and a count (`[ip, netns, exec, h2]`, `[ssh, loadgen-2]`). The master gets
`python -m harness.load.locust_main --master --master-bind-host <master_host> --master-bind-port <port>
--expect-workers N --expect-workers-max-wait S` plus the options every run's master gets
(harness.load.launch.locust_args: the config file, headless, reports, --stop-timeout, the shape); each worker
`… --worker --master-host <master_host> --master-port <port>`, one process per count. The interpreter is
this one (`sys.executable`): each host needs the repository and its venv at the same path (for `ip netns exec`
it is the same file system).

Only the master reads files: <run>/load-config.json (written here with `rows_via_master=True`), and it writes
requests.csv, Locust's CSV/HTML reports and its log <run>/locust.log. The workers get the config from the master
(Locust forwards custom options in every spawn message) and send their rows back as messages
(harness/load/locustfile.py, which also drains them at the end so no row is lost); their logs
(`locust-worker-<n>.log`) are this process's pipes into the run folder, so a remote worker needs no folder.

Every process runs in its own session (a Ctrl-C at the terminal does not reach it). `stop()`: SIGINT to the
master, whose end drains and quits the workers; then whatever of master and workers is left is stopped by
process group (harness.util.procs.stop_group). When not all workers connect within --expect-workers-max-wait,
the master exits 1: `poll()` reports it at once, `error` says so, and locust.log gets a line naming the fix.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from harness.load.config import DRAIN_MARGIN_S, LoadConfig
from harness.load.launch import LOCUST_LOG, PROC_NAME, default_sigint, locust_args, prepare_run_dir, stop_timeout_s
from harness.util.procs import stop_group

if TYPE_CHECKING:
    from harness.stack.external.target import Load

MODULE = ["-m", "harness.load.locust_main"]
WORKER_NAME = "locust-worker-{n}"
WORKER_LOG = "locust-worker-{n}.log"
EXPECT_WORKERS_WAIT_S = 60.0        # the master gives up (exit 1) when not every worker connected by then
WORKERS_GRACE_S = 15.0              # after a normal end of the master: its "quit" reaches the workers
GAVE_UP = "Gave up waiting for workers to connect"      # Locust's own line (locust/main.py)
POLL_S = 0.1


def master_command(config: LoadConfig, run_dir: Path, load: Load,
                   expect_workers_max_wait_s: float = EXPECT_WORKERS_WAIT_S) -> list[str]:
    return [*load.master_command, sys.executable, *MODULE, "--master", "--master-bind-host", load.master_host,
            "--master-bind-port", str(load.master_port), "--expect-workers", str(load.worker_count),
            "--expect-workers-max-wait", f"{expect_workers_max_wait_s:g}", *locust_args(config, run_dir)]


def worker_commands(load: Load) -> list[list[str]]:
    """One command per worker process, in the order of `load.workers` (worker n = index + 1)."""
    cmds = []
    for entry in load.workers:
        for _ in range(entry.count):
            cmds.append([*entry.command, sys.executable, *MODULE, "--worker", "--master-host", load.master_host,
                         "--master-port", str(load.master_port)])
    return cmds


@dataclass
class DistributedLocust:
    """A master and its workers on other hosts (harness.stack.base.LoadHandle's surface, plus `tracked()`)."""

    master: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    config: LoadConfig
    run_dir: Path
    load: Load
    expect_workers_max_wait_s: float = EXPECT_WORKERS_WAIT_S
    name: str = PROC_NAME
    started: float = field(default_factory=time.time)
    error: str | None = None          # why the master ended early (workers never connected), once seen
    _master_gone_at: float | None = None
    _explained: bool = False

    @property
    def pid(self) -> int:
        """The master (leader of its own session/process group); `tracked()` names the workers too."""
        return self.master.pid

    @property
    def returncode(self) -> int | None:
        return self.master.returncode

    def tracked(self) -> dict[str, int]:
        """Every process by name → pid (each leads its own process group), for the stack's `track`."""
        out = {self.name: self.master.pid}
        out.update({WORKER_NAME.format(n=n): proc.pid for n, proc in enumerate(self.workers, start=1)})
        return out

    @property
    def grace_s(self) -> float:
        return WORKERS_GRACE_S

    def _workers_running(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def poll(self) -> int | None:
        """None while the master runs, and after a normal end while a worker still runs (at most `grace_s`);
        else the master's exit code (an early failure is reported at once: see `error`)."""
        code = self.master.poll()
        if code is None:
            return None
        self._explain(code)
        if code != 0:
            return code
        now = time.monotonic()
        if self._master_gone_at is None:
            self._master_gone_at = now
        if self._workers_running() and now - self._master_gone_at < self.grace_s:
            return None
        return code

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.master.args, timeout or 0.0)
            time.sleep(POLL_S)
        return code

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGINT to the master (it drains the workers — in-flight requests finish within --stop-timeout — and
        tells them to quit; the CSVs and the HTML report are written), wait up to `timeout` (default:
        --stop-timeout + the drain margin + 20 s), give the workers `grace_s` to follow, then stop whatever is
        left of every process group. Also after a normal end. Returns the master's exit code."""
        if self.master.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.master.pid, signal.SIGINT)
            if timeout is None:
                timeout = stop_timeout_s(self.config) + DRAIN_MARGIN_S + 20
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.master.wait(timeout=timeout)
        if self.master.poll() == 0:
            deadline = time.monotonic() + self.grace_s
            while self._workers_running() and time.monotonic() < deadline:
                time.sleep(POLL_S)
        for proc in [self.master, *self.workers]:
            stop_group(proc.pid, timeout=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if self.master.returncode is not None:
            self._explain(self.master.returncode)
        return self.master.returncode

    def _explain(self, code: int) -> None:
        """Once the master has ended: when it gave up on the workers, say so (handle and locust.log)."""
        if self._explained:
            return
        self._explained = True
        log = self.run_dir / LOCUST_LOG
        try:
            text = log.read_text(errors="replace")
        except OSError:
            text = ""
        if code == 0 or GAVE_UP not in text:
            return
        load = self.load
        self.error = (f"the Locust master gave up: not all {load.worker_count} worker(s) connected to "
                      f"{load.master_host}:{load.master_port} within {self.expect_workers_max_wait_s:g} s "
                      f"(--expect-workers-max-wait) — check that each worker host reaches that address and port "
                      f"(firewall, master_host), and see {WORKER_LOG.format(n='<n>')} in {self.run_dir}")
        with contextlib.suppress(OSError), open(log, "a") as fh:
            fh.write(f"harness: {self.error}\n")


def run_locust_distributed(config: LoadConfig, run_dir: Path, load: Load, extra_env: dict[str, str] | None = None,
                           expect_workers_max_wait_s: float = EXPECT_WORKERS_WAIT_S) -> DistributedLocust:
    """Start the master (on its host) and every worker (on theirs) and return at once.

    The config goes to <run>/load-config.json with `rows_via_master=True` (requests.csv is created with its
    header first); `extra_env` is added to every process's environment (through a prefix that keeps it, such
    as `ip netns exec`; ssh does not forward it: use `master_key_file` or the remote shell's environment).
    """
    run_dir = run_dir.resolve()
    cfg = replace(config, run_dir=str(run_dir), rows_via_master=True)
    prepare_run_dir(cfg, run_dir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    master = _start(master_command(cfg, run_dir, load, expect_workers_max_wait_s), run_dir / LOCUST_LOG, env,
                    run_dir)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for n, cmd in enumerate(worker_commands(load), start=1):
            workers.append(_start(cmd, run_dir / WORKER_LOG.format(n=n), env, run_dir))
    except BaseException:
        for proc in [master, *workers]:
            stop_group(proc.pid, timeout=5)
        raise
    return DistributedLocust(master=master, workers=workers, config=cfg, run_dir=run_dir, load=load,
                             expect_workers_max_wait_s=expect_workers_max_wait_s)


def _start(cmd: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as log_fh:
        return subprocess.Popen(  # noqa: S603 - the command is built above
            cmd, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
            start_new_session=True, preexec_fn=default_sigint)
