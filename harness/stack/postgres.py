"""A throw-away PostgreSQL server from the machine's binaries, on a loopback port.

    pg = PostgresServer(data_dir, port)
    pg.start(group, log_dir)        # initdb when the data dir is empty, then `postgres`; both recorded in group
    pg.wait_ready()                 # polls until it accepts connections and the database exists
    pg.dsn                          # postgresql://postgres@127.0.0.1:<port>/litellm
    pg.stop()

Tuned for tests and load runs, not durability (fsync off). Listens on 127.0.0.1 only, no Unix socket.
PostgreSQL refuses to run as root: when the harness runs as root the server runs as the `postgres`
user (or $HARNESS_PG_USER), so the data dir is handed to that user and must be reachable by it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import time
from pathlib import Path

from harness.errors import HarnessError, StackError
from harness.util.ports import LOOPBACK
from harness.util.procs import ProcessGroup, tail

DEFAULT_DB = "litellm"
SUPERUSER = "postgres"


def pg_bindir() -> Path:
    """The directory of the newest installed PostgreSQL server binaries ($HARNESS_PG_BINDIR wins)."""
    override = os.environ.get("HARNESS_PG_BINDIR")
    if override:
        return Path(override)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise HarnessError("PostgreSQL server binaries (postgres, initdb) are not installed",
                       "install them (`make system`) or set HARNESS_PG_BINDIR")


def run_as() -> pwd.struct_passwd | None:
    """The account to run the server as (None: the current one); HarnessError when root has no such user."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("HARNESS_PG_USER", "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise HarnessError(f"running as root, but there is no '{name}' user to run PostgreSQL as",
                           "create it (`useradd -r postgres`) or set HARNESS_PG_USER") from None


class PostgresServer:
    """One PostgreSQL server process (plus its backends) in its own process group."""

    def __init__(self, data_dir: Path, port: int, *, database: str = DEFAULT_DB, name: str = "postgres",
                 max_connections: int = 300) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.database = database
        self.name = name
        self.max_connections = max_connections
        self.group: ProcessGroup | None = None
        self.log: Path | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{self.database}"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/postgres"

    # -- lifecycle ---------------------------------------------------------------------------------
    def _prefix(self) -> list[str]:
        user = run_as()
        if user is None:
            return []
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]

    def _prepare_data_dir(self, group: ProcessGroup, log_dir: Path) -> None:
        user = run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            os.chmod(self.data_dir, 0o700)
            # Every ancestor must be searchable by that user.
            for parent in self.data_dir.parents:
                mode = parent.stat().st_mode
                if not mode & 0o001 and parent.stat().st_uid != user.pw_uid:
                    raise HarnessError(
                        f"PostgreSQL runs as '{user.pw_name}' but cannot reach {self.data_dir}: "
                        f"{parent} is not searchable by others",
                        f"put the data dir elsewhere or `chmod o+x {parent}`")
        if (self.data_dir / "PG_VERSION").exists():
            return
        init_log = log_dir / f"{self.name}-initdb.log"
        cmd = [*self._prefix(), str(pg_bindir() / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
               "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        init_log.unlink(missing_ok=True)
        # recorded like the server: a crash during initdb leaves nothing `harness down` cannot find
        returncode = group.run(f"{self.name}-initdb", cmd, log=init_log, env=self._env(), cwd=Path("/"),
                               timeout=180)
        if returncode != 0:
            raise StackError(f"initdb failed for {self.data_dir}:\n{tail(init_log, 10)}", f"see {init_log}")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update({"LC_ALL": "C", "LANG": "C"})
        return env

    def start(self, group: ProcessGroup, log_dir: Path) -> None:
        """initdb if needed, then start `postgres` (does not wait: call wait_ready())."""
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.group = group
        self.log = log_dir / f"{self.name}.log"
        self._prepare_data_dir(group, log_dir)
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            stale.unlink()  # left by a killed server; its process group is gone (the state file says so)
        cmd = [*self._prefix(), str(pg_bindir() / "postgres"), "-D", str(self.data_dir),
               "-p", str(self.port),
               "-c", f"listen_addresses={LOOPBACK}",
               "-c", "unix_socket_directories=",
               "-c", f"max_connections={self.max_connections}",
               "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
               "-c", "shared_buffers=128MB", "-c", "log_min_messages=warning",
               "-c", "log_min_error_statement=error"]
        group.start(self.name, cmd, log=self.log, env=self._env(), cwd=Path("/"), port=self.port)

    def _accepts(self, dsn: str) -> bool:
        import psycopg

        try:
            with psycopg.connect(dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Poll until the server accepts connections; create the database. Returns seconds waited."""
        import psycopg

        start = time.monotonic()
        deadline = start + timeout
        while not self._accepts(self.admin_dsn):
            if self.group is not None and not self.group.alive(self.name):
                raise StackError(f"PostgreSQL on port {self.port} exited while starting:\n{self._log_tail()}",
                                 f"see {self.log}")
            if time.monotonic() > deadline:
                raise StackError(f"PostgreSQL on port {self.port} not ready after {timeout:.0f} s:\n"
                                 f"{self._log_tail()}", f"see {self.log}")
            time.sleep(0.1)
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        return time.monotonic() - start

    def _log_tail(self) -> str:
        return tail(self.log, 15) if self.log else ""

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT: clients are disconnected), SIGKILL after `timeout`."""
        group = self.group
        if group is None or self.name not in group.records:
            return
        if group.signal_leader(self.name, signal.SIGINT):
            deadline = time.monotonic() + timeout
            while group.alive(self.name) and time.monotonic() < deadline:
                time.sleep(0.05)
        group.stop(self.name, timeout=5)
