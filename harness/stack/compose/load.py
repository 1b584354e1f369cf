"""Locust master + workers as the Compose project's `load` profile (`harness run --backend compose`).

`start_compose_load` (behind `ComposeStack.start_load`, the stack's LoadRunner capability):
  1. writes <run>/load-config.json — the run's LoadConfig with the proxies addressed in-network
     (`http://proxy-<i>:4000`) and the master key taken from $LITELLM_MASTER_KEY in the workers (`master_key_env`;
     no key in the config, on a command line or in the run folder) — and creates <run>/requests.csv with its header;
  2. adds the load's variables (HARNESS_LOAD_DIR, HARNESS_LOCUST_*: no secret) to the stack's compose.env, so
     `config` and `down` later see the same model;
  3. `docker compose … --profile load up -d --no-deps --force-recreate --scale locust-worker=N locust-master
     locust-worker` (the proxies are not touched).
The master reads the config from the run folder (mounted at the same absolute path) and forwards it to the
workers (harness/load/locustfile.py). Each worker appends its rows to the one <run>/requests.csv: whole batches,
one write(2) each on an O_APPEND descriptor (harness/load/writer.py). The containers share the host's kernel
and the bind-mounted file is the host's own inode, so Linux serialises those appends exactly as for host
processes and nothing needs merging. (Not so through a file-sharing layer such as Docker Desktop's on macOS:
there run the load on the host, `HARNESS_LOAD_IN=host`.) The master's `--csv`/`--html` write locust_*.csv and
locust.html there too; `stop()` saves the containers' logs as locust.log (master) and locust-worker-<n>.log.

`ComposeLocust` has LocustHandle's surface (harness.stack.base.LoadHandle): `poll()` is None while the master
or a worker is still there; `stop()` = `docker kill -s INT` on the master (users finish in-flight requests within
--stop-timeout, the master tells the workers to quit), SIGKILL for whatever is left after the timeout, the logs
saved, then `docker compose rm -f -s` of both services. `harness down` removes them too (`down --profile load`:
Compose's `down` leaves the containers of a profile that is not active).
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import StackError
from harness.load.config import CONFIG_FILE, LoadConfig
from harness.load.launch import LOCUST_LOG, stop_timeout_s
from harness.load.writer import open_appender
from harness.run.runfolder import REQUESTS_FILE
from harness.stack.base import replica_name
from harness.stack.compose.render import PROXY_INNER_PORT, write_env_file

LOAD_PROFILE = "load"
MASTER_SERVICE = "locust-master"
WORKER_SERVICE = "locust-worker"
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"      # what the compose file gives the workers (and the proxies)
EXPECT_WORKERS_WAIT_S = 120                # the master gives up (exit 1) when the workers never all connect
WORKER_LOG = "locust-worker-{n}.log"
POLL_S = 0.5
MISSING_EXIT = -1                          # the master's container vanished (removed from outside)
KILLED_EXIT = 137                          # SIGKILLed (what the engine reports for it)
KILL_WAIT_S = 10.0
RUNNING_STATES = frozenset({"created", "running", "restarting", "paused"})

ComposeCall = Callable[..., Any]                 # runs `docker compose <project args> <args>`; raises StackError
ContainersOf = Callable[[str], list[Any]]        # the project's containers (Docker SDK objects) of one service


def in_network_config(config: LoadConfig) -> LoadConfig:
    """The config as the containers use it: each proxy by its service name, the key from the environment."""
    urls = [f"http://{replica_name(i)}:{PROXY_INNER_PORT}" for i in range(len(config.proxy_urls))]
    return replace(config, proxy_urls=urls, master_key_file=None, master_key_env=MASTER_KEY_ENV)


def load_env(config: LoadConfig, run_dir: Path, workers: int) -> dict[str, str]:
    """The compose variables of the `load` services (none is a secret)."""
    return {
        "HARNESS_LOAD_DIR": str(run_dir),
        "HARNESS_LOCUST_WORKERS": str(workers),
        "HARNESS_LOCUST_USERS": str(config.users),
        "HARNESS_LOCUST_SPAWN_RATE": str(config.spawn_rate),
        # with stages the locustfile's LoadTestShape drives users; the run time then matches its end
        "HARNESS_LOCUST_RUN_TIME": f"{math.ceil(config.planned_duration_s)}s",
        "HARNESS_LOCUST_STOP_TIMEOUT": str(stop_timeout_s(config)),
        "HARNESS_LOCUST_EXPECT_WAIT_S": str(EXPECT_WORKERS_WAIT_S),
    }


def up_args(workers: int) -> list[str]:
    return ["--profile", LOAD_PROFILE, "up", "-d", "--no-deps", "--force-recreate", "--scale",
            f"{WORKER_SERVICE}={workers}", MASTER_SERVICE, WORKER_SERVICE]


def rm_args() -> list[str]:
    return ["--profile", LOAD_PROFILE, "rm", "--force", "--stop", MASTER_SERVICE, WORKER_SERVICE]


def read_env_file(path: Path) -> dict[str, str]:
    """compose.env back as a dict (the `KEY='value'` lines render.write_env_file writes)."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key] = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == "'" else value
    return out


def merge_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Add/replace `values` in compose.env (kept 0600: it holds the master key)."""
    write_env_file(path, {**read_env_file(path), **values})


def start_compose_load(config: LoadConfig, run_dir: Path, workers: int, *, env_path: Path, compose: ComposeCall,
                       containers: ContainersOf) -> ComposeLocust:
    """Write the config and requests.csv, set the load's variables, start the services; return at once.

    When `up` fails, whatever it created is removed before the error goes on (the load stage never got a handle).
    """
    workers = max(1, workers)
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = in_network_config(replace(config, run_dir=str(run_dir)))
    cfg.write(run_dir / CONFIG_FILE)
    open_appender(run_dir / REQUESTS_FILE).close()
    merge_env_file(env_path, load_env(cfg, run_dir, workers))
    try:
        compose(*up_args(workers))
    except BaseException:
        try:
            compose(*rm_args())
        except Exception:  # noqa: BLE001 - report the original error; `harness down` removes them too
            pass
        raise
    return ComposeLocust(config=cfg, run_dir=run_dir, workers=workers, compose=compose, containers=containers)


@dataclass
class ComposeLocust:
    """The load's containers, as the load stage sees them (harness.stack.base.LoadHandle)."""

    config: LoadConfig
    run_dir: Path
    workers: int
    compose: ComposeCall
    containers: ContainersOf
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    name: str = "locust"
    started: float = field(default_factory=time.time)
    _returncode: int | None = None
    _master_gone_at: float | None = None
    _cleaned: bool = False

    @property
    def pid(self) -> int | None:
        """No host process: the containers belong to the Compose project (`harness down` removes them)."""
        return None

    @property
    def returncode(self) -> int | None:
        return self._returncode

    @property
    def grace_s(self) -> float:
        """How long the workers may take after the master's end (or the stop's SIGINT): the host's timeout."""
        return float(stop_timeout_s(self.config) + 20)

    def _master(self) -> Any | None:
        found = self.containers(MASTER_SERVICE)
        return found[0] if found else None

    def _running_workers(self) -> list[Any]:
        return [c for c in self.containers(WORKER_SERVICE) if c.status in RUNNING_STATES]

    def poll(self) -> int | None:
        """None while the master or (for at most `grace_s` after the master ended) a worker still runs."""
        if self._returncode is not None:
            return self._returncode
        master = self._master()
        if master is not None and master.status in RUNNING_STATES:
            return None
        now = self.clock()
        if self._master_gone_at is None:
            self._master_gone_at = now
        if self._running_workers() and now - self._master_gone_at < self.grace_s:
            return None
        self._returncode = _exit_code(master)
        return self._returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else self.clock() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and self.clock() >= deadline:
                raise subprocess.TimeoutExpired(f"docker compose --profile {LOAD_PROFILE}", timeout or 0.0)
            self.sleep(POLL_S)
        return code

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGINT to the master (`docker kill -s INT`), wait up to `timeout` (default: --stop-timeout + 20 s)
        for the master and the workers, SIGKILL the rest; then the logs into the run folder and the containers
        removed. Also after a normal end. Returns the master's exit code."""
        if self.poll() is None:
            master = self._master()
            if master is not None and master.status in RUNNING_STATES:
                try:
                    master.kill(signal="SIGINT")
                except Exception:  # noqa: BLE001 - it may have ended meanwhile; the wait below tells
                    pass
            try:
                self.wait(self.grace_s if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self._kill_all()
        self._cleanup()
        return self._returncode

    def _kill_all(self) -> None:
        """SIGKILL every Locust container still running; the master's exit code once the engine reports it."""
        for container in self.containers(MASTER_SERVICE) + self.containers(WORKER_SERVICE):
            if container.status in RUNNING_STATES:
                try:
                    container.kill(signal="SIGKILL")
                except Exception:  # noqa: BLE001 - gone meanwhile
                    pass
        deadline = self.clock() + KILL_WAIT_S
        while True:
            master = self._master()
            if master is None or master.status not in RUNNING_STATES:
                self._returncode = _exit_code(master)
                return
            if self.clock() >= deadline:
                self._returncode = KILLED_EXIT
                return
            self.sleep(POLL_S)

    def _cleanup(self) -> None:
        if self._cleaned:
            return
        self.save_logs()
        try:
            self.compose(*rm_args())
        except StackError:
            for container in self.containers(MASTER_SERVICE) + self.containers(WORKER_SERVICE):
                try:
                    container.remove(force=True)
                except Exception:  # noqa: BLE001 - `harness down` removes what is left
                    pass
        self._cleaned = True

    def save_logs(self) -> list[Path]:
        """The master's log as <run>/locust.log (like host Locust's), each worker's as locust-worker-<n>.log."""
        saved: list[Path] = []
        master = self._master()
        if master is not None:
            saved.append(_write_log(master, self.run_dir / LOCUST_LOG))
        for i, worker in enumerate(sorted(self.containers(WORKER_SERVICE), key=_number), start=1):
            number = _number(worker) or i
            saved.append(_write_log(worker, self.run_dir / WORKER_LOG.format(n=number)))
        return saved


def _exit_code(container: Any | None) -> int:
    if container is None:
        return MISSING_EXIT
    code = (container.attrs.get("State") or {}).get("ExitCode")
    return int(code) if code is not None else MISSING_EXIT


def _number(container: Any) -> int:
    try:
        return int(container.labels.get("com.docker.compose.container-number", "0"))
    except (TypeError, ValueError):
        return 0


def _write_log(container: Any, path: Path) -> Path:
    try:
        data = container.logs(stdout=True, stderr=True)
    except Exception as exc:  # noqa: BLE001 - a log is best effort
        data = f"(no log: {exc})\n".encode()
    with open(path, "ab") as fh:
        fh.write(data if isinstance(data, bytes) else str(data).encode())
    return path
