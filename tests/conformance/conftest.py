"""Fixtures of the conformance suite: one real Postgres per session, a migrated template database per
LiteLLM version, a fresh database per test, and a runner for driver.py inside a version's venv."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harness.errors import HarnessError
from harness.litellm import env as litellm_env
from harness.litellm.versions import SUPPORTED
from harness.paths import engine_dir
from harness.stack.postgres import PostgresServer
from harness.util.ports import free_port
from harness.util.procs import ProcessGroup, stop_group

DRIVER = Path(__file__).with_name("driver.py")


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


@pytest.fixture(scope="session")
def template_db(postgres: PostgresServer, env: litellm_env.LiteLLMEnv) -> str:
    """A database with the version's migrations applied (copied per test with CREATE DATABASE … TEMPLATE)."""
    name = _dbname("tmpl", env.version)
    with psycopg.connect(postgres.admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        litellm_env.apply_migrations(env, _dsn(postgres, name))
    except HarnessError as exc:
        pytest.fail(f"migrations of LiteLLM {env.version}: {exc.line()}")
    return name


@pytest.fixture
def db(postgres: PostgresServer, template_db: str) -> Iterator[str]:
    """A fresh migrated database for one test; yields its DSN."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield _dsn(postgres, name)
    with psycopg.connect(postgres.admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class DriverRun:
    ok: bool
    result: Any
    error: str
    log: str


@pytest.fixture
def drive(env: litellm_env.LiteLLMEnv, tmp_path: Path):  # noqa: ANN201
    """drive(scenario, dsn, **params) -> result: runs driver.py in the version's venv, fails on error."""

    def run(scenario: str, dsn: str, **params: Any) -> Any:
        out = tmp_path / f"{scenario}-{uuid.uuid4().hex[:6]}.json"
        log = tmp_path / f"{scenario}.log"
        cmd = [str(env.python), str(DRIVER), scenario, "--dsn", dsn, "--out", str(out),
               "--params", json.dumps(params)]
        with open(log, "ab") as fh:
            proc = subprocess.Popen(cmd, env=env.proxy_env(dsn), stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=tmp_path)
            try:
                proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            finally:
                stop_group(proc.pid, timeout=5)  # the engine the Prisma client spawned, if still there
        text = log.read_text(errors="replace")
        if not out.exists():
            pytest.fail(f"driver {scenario} (LiteLLM {env.version}) wrote no result, exit {proc.returncode}:\n"
                        f"{text[-4000:]}")
        payload = json.loads(out.read_text())
        if not payload["ok"]:
            pytest.fail(f"driver {scenario} (LiteLLM {env.version}) failed: {payload['error']}\n"
                        f"{payload.get('traceback', '')[-3000:]}\n--- log ---\n{text[-3000:]}")
        return payload["result"]

    return run


def rows(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return list(conn.execute(sql, args).fetchall())


def execute(dsn: str, sql: str, *args: Any) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql, args)
