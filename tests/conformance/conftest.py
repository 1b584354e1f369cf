"""Fixtures of the conformance suite: one real Postgres per session, a migrated template database per
LiteLLM version, a fresh database per test (a cheap copy of the template), and, started together per version
so their start-ups overlap: one long-lived driver.py inside that version's venv, which every test of that
version sends its scenario to, and one real proxy for test_proxy_e2e."""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest
import yaml

from harness.errors import HarnessError
from harness.litellm import env as litellm_env
from harness.litellm.versions import SUPPORTED
from harness.paths import engine_dir
from harness.stack.postgres import PostgresServer
from harness.util.ports import free_port
from harness.util.procs import ProcessGroup, stop_group

DRIVER = Path(__file__).with_name("driver.py")
STARTUP_TIMEOUT_S = 300  # importing litellm's proxy takes 20-40 s on an idle 2-core machine
SCENARIO_TIMEOUT_S = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.conformance)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "version" in metafunc.fixturenames:
        wanted = os.environ.get("HARNESS_CONFORMANCE_VERSIONS")
        versions = [v for v in (wanted.split(",") if wanted else SUPPORTED) if v]
        only = getattr(metafunc.module, "VERSIONS", None)  # a module may pin its own versions
        if only is not None:
            versions = [v for v in only if not wanted or v in versions]
        metafunc.parametrize("version", versions, ids=versions, scope="session")


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    # Under /tmp, not pytest's 0700 tmp_path: PostgreSQL runs as `postgres` when the tests run as root.
    path = Path(tempfile.mkdtemp(prefix="harness-conformance-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def process_group(workdir: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(workdir / "state")
    yield group
    group.stop_all()


@pytest.fixture(scope="session")
def postgres(workdir: Path, process_group: ProcessGroup) -> Iterator[PostgresServer]:
    server = PostgresServer(workdir / "pgdata", free_port())
    server.start(process_group, workdir / "logs")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def env(version: str) -> litellm_env.LiteLLMEnv:
    candidate = litellm_env.LiteLLMEnv(version, litellm_env.envs_dir() / version)
    if not candidate.is_ready():
        pytest.skip(f"LiteLLM {version}: environment not built (run `harness env build {version}`)")
    if litellm_env.engine_mode() == "standin" and not (engine_dir() / "node_modules").is_dir():
        pytest.skip("the Prisma engine stand-in is not installed (run `make engine`)")
    return candidate


def _dbname(prefix: str, version: str) -> str:
    return f"{prefix}_{re.sub(r'[^0-9a-z]', '_', version)}"


def _dsn(server: PostgresServer, dbname: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{server.port}/{dbname}"


def _create_db(server: PostgresServer, name: str, template: str | None = None) -> str:
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return _dsn(server, name)


@dataclass
class Boot:
    """What one LiteLLM version needs, started together (see `boot`); None = no selected test needs it."""

    template_db: str
    driver: Driver | None
    proxy: BootedProxy | None


def _selected_use(request: pytest.FixtureRequest, fixture: str) -> bool:
    return any(fixture in getattr(item, "fixturenames", ()) for item in request.session.items)


@pytest.fixture(scope="session")
def boot(request: pytest.FixtureRequest, env: litellm_env.LiteLLMEnv, postgres: PostgresServer,
         workdir: Path) -> Iterator[Boot]:
    """Starts everything slow for one version at once, so the start-ups overlap on 2 cores: driver.py
    (importing litellm, 20-40 s), the migrations of the template database (the schema engine), then a real
    proxy on its own copy of it (its litellm import again); the driver and the proxy only when a selected
    test uses them. pytest groups tests by the session-scoped `version` parameter, so one version's
    processes are stopped before the next version's start."""
    work = workdir / env.version
    (work / "proxy").mkdir(parents=True, exist_ok=True)
    driver = Driver(env, postgres.admin_dsn, work / "driver.log") if _selected_use(request, "drive") else None
    if driver is not None:
        driver.start()
    proxy: BootedProxy | None = None
    try:
        name = _dbname("tmpl", env.version)
        template_dsn = _create_db(postgres, name)
        try:
            litellm_env.apply_migrations(env, template_dsn)
        except HarnessError as exc:
            pytest.fail(f"migrations of LiteLLM {env.version}: {exc.line()}")
        if _selected_use(request, "proxy"):
            proxy = BootedProxy(env, _create_db(postgres, _dbname("proxy", env.version), name), work / "proxy")
        yield Boot(name, driver, proxy)
    finally:
        if proxy is not None:
            proxy.stop()
        if driver is not None:
            driver.stop()


@pytest.fixture(scope="session")
def template_db(boot: Boot) -> str:
    """A database with the version's migrations applied (copied per test with CREATE DATABASE … TEMPLATE)."""
    return boot.template_db


@pytest.fixture
def db(postgres: PostgresServer, template_db: str) -> Iterator[str]:
    """A fresh migrated database for one test; yields its DSN."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield _create_db(postgres, name, template_db)
    with psycopg.connect(postgres.admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Driver:
    """driver.py serving one LiteLLM version for the whole session (see its docstring for the protocol).

    Started again on the next request if it died (a timeout kills it), so one hung scenario fails one test.
    """

    def __init__(self, env: litellm_env.LiteLLMEnv, any_dsn: str, log: Path) -> None:
        # any_dsn only fills DATABASE_URL at start: every request names its own database
        self.env, self.any_dsn, self.log = env, any_dsn, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.replies: IO[str] | None = None
        self.ready = False

    def start(self) -> None:
        """Starts driver.py and returns at once (it answers `ready` once litellm is imported)."""
        read_fd, write_fd = os.pipe()
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                [str(self.env.python), str(DRIVER), "--reply-fd", str(write_fd)],
                env=self.env.proxy_env(self.any_dsn), stdin=subprocess.PIPE, stdout=fh,
                stderr=subprocess.STDOUT, pass_fds=(write_fd,), start_new_session=True, cwd=self.log.parent)
        os.close(write_fd)
        self.replies = os.fdopen(read_fd, "r")
        self.ready = False

    def wait_ready(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        if not self.ready:
            self._read(STARTUP_TIMEOUT_S, "start (import litellm)", 0)
            self.ready = True

    def _read(self, timeout: float, what: str, log_from: int) -> dict[str, Any]:
        assert self.replies is not None and self.proc is not None
        ready, _, _ = select.select([self.replies], [], [], timeout)
        line = self.replies.readline() if ready else ""
        if not line:
            why = "(it exited)" if ready else f"within {timeout} s"
            self.stop()
            pytest.fail(f"driver (LiteLLM {self.env.version}) gave no answer to {what} {why}:\n"
                        f"{self._log_since(log_from)}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _log_since(self, offset: int) -> str:
        with open(self.log, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")[-4000:]

    def run(self, scenario: str, dsn: str, **params: Any) -> Any:
        self.wait_ready()
        assert self.proc is not None and self.proc.stdin is not None
        log_from = self.log.stat().st_size
        self.proc.stdin.write(json.dumps({"scenario": scenario, "dsn": dsn, "params": params}).encode() + b"\n")
        self.proc.stdin.flush()
        payload = self._read(SCENARIO_TIMEOUT_S, scenario, log_from)
        if not payload["ok"]:
            pytest.fail(f"driver {scenario} (LiteLLM {self.env.version}) failed: {payload['error']}\n"
                        f"{payload.get('traceback', '')[-3000:]}\n--- log ---\n{self._log_since(log_from)[-3000:]}")
        return payload["result"]

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc.pid, timeout=5)  # the driver and the query engine(s) it spawned
            self.proc.wait()
        if self.replies is not None:
            self.replies.close()
        self.proc, self.replies, self.ready = None, None, False


class BootedProxy:
    """A real `litellm` proxy of one version, started (not yet healthy) on its own migrated database."""

    def __init__(self, env: litellm_env.LiteLLMEnv, dsn: str, work: Path) -> None:
        self.env, self.dsn = env, dsn
        self.master_key = f"sk-{secrets.token_hex(16)}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.group = ProcessGroup(work / "state")
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump({
            "model_list": [{"model_name": "fake", "litellm_params": {
                "model": "openai/fake", "api_base": "http://127.0.0.1:9/v1", "api_key": "sk-none",
                "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}}],
            "general_settings": {"master_key": self.master_key},
            "litellm_settings": {"telemetry": False},
        }))
        cmd = [str(env.litellm_bin), "--config", str(config), "--host", "127.0.0.1", "--port", str(self.port)]
        self.started = time.monotonic()
        self.proc = self.group.start("proxy", cmd, log=work / "proxy.log", env=env.proxy_env(dsn), cwd=work,
                                     port=self.port)

    def stop(self) -> None:
        if "proxy" in self.group.records:
            self.group.stop("proxy", timeout=20)


@pytest.fixture(scope="session")
def driver(boot: Boot) -> Driver:
    assert boot.driver is not None  # `boot` starts one whenever a selected test uses `drive`
    boot.driver.wait_ready()
    return boot.driver


@pytest.fixture(scope="session")
def proxy(boot: Boot) -> BootedProxy:
    assert boot.proxy is not None  # `boot` starts one whenever a selected test uses `proxy`
    return boot.proxy


@pytest.fixture
def drive(driver: Driver):  # noqa: ANN201
    """drive(scenario, dsn, **params) -> result: runs a driver.py scenario in the version's venv, fails on
    error."""
    return driver.run


def rows(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return list(conn.execute(sql, args).fetchall())


def execute(dsn: str, sql: str, *args: Any) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql, args)
