"""harness.litellm.container: the entry point of the LiteLLM image built here (compose/images/Dockerfile).

A fake ready environment stands for the one the image build makes (`.cache/litellm/<version>/` with its
ready marker); os.execve and apply_migrations are replaced, so nothing is started and no database is touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.litellm import container
from harness.litellm import env as litellm_env

VERSION = "1.84.0"
DSN = "postgresql://litellm:litellm@postgres:5432/litellm"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    for var in (container.VERSION_VAR, "DATABASE_URL", "LITELLM_MASTER_KEY", "PYTHONPATH",
                litellm_env.ENGINE_MODE_VAR):
        monkeypatch.delenv(var, raising=False)


def ready_env(tmp_path: Path, migrations: int = 3) -> litellm_env.LiteLLMEnv:
    """A LiteLLM environment the harness considers ready: marker, interpreter, `litellm`, migrations."""
    env = litellm_env.LiteLLMEnv(version=VERSION, root=tmp_path / "cache" / "litellm" / VERSION)
    (env.venv / "bin").mkdir(parents=True)
    env.python.write_text("")
    env.litellm_bin.write_text("")
    base = env.venv / "lib" / "python3.11" / "site-packages" / "litellm_proxy_extras" / "migrations"
    for i in range(migrations):
        (base / f"2025010{i}000000_step{i}").mkdir(parents=True)
        (base / f"2025010{i}000000_step{i}" / "migration.sql").write_text("SELECT 1;")
    env.ready_path.write_text(json.dumps({"version": VERSION, "engine": "standin"}))
    assert env.is_ready()
    return env


class Exec(Exception):
    """os.execve does not return: the fake raises this instead."""

    def __init__(self, path: str, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(path)
        self.path, self.argv, self.env = path, argv, env


def fake_execve(path: str, argv: list[str], env: dict[str, str]) -> None:
    raise Exec(path, argv, env)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err.strip()


# -- what the image needs from its environment ---------------------------------------------------
@pytest.mark.parametrize("command", [["proxy", "--port", "4000"], ["migrate"]])
def test_without_the_version_the_image_was_built_for_exit_2_one_line(
        command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", DSN)
    monkeypatch.setattr(os, "execve", fake_execve)
    assert container.main(command) == 2
    assert one_error_line(capsys) == ("error: HARNESS_LITELLM_VERSION is not set — build the image with "
                                      "--build-arg LITELLM_VERSION=<version>")


@pytest.mark.parametrize("command", [["proxy", "--port", "4000"], ["migrate"]])
def test_without_a_database_url_exit_2_one_line(command: list[str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ready_env(tmp_path)
    monkeypatch.setenv(container.VERSION_VAR, VERSION)
    monkeypatch.setattr(os, "execve", fake_execve)
    monkeypatch.setattr(litellm_env, "apply_migrations", lambda env, dsn: pytest.fail("migrated without a DSN"))
    assert container.main(command) == 2
    assert one_error_line(capsys) == "error: DATABASE_URL is not set — give the container the proxy's database URL"


def test_an_image_without_a_ready_environment_exit_2_one_line(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(container.VERSION_VAR, VERSION)
    monkeypatch.setenv("DATABASE_URL", DSN)
    monkeypatch.setattr(os, "execve", fake_execve)
    assert container.main(["proxy"]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: the image has no ready LiteLLM {VERSION} environment in ")
    assert line.endswith("— rebuild the image (`harness images build`)")


# -- proxy: the environment's litellm, with the offline environment, the container's arguments ----------
def test_proxy_execs_the_environments_litellm_with_proxy_env(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    env = ready_env(tmp_path)
    monkeypatch.setenv(container.VERSION_VAR, VERSION)
    monkeypatch.setenv("DATABASE_URL", DSN)
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-harness-from-compose")
    monkeypatch.setenv("PYTHONPATH", "/opt/harness")            # the image's: must not reach LiteLLM's venv
    monkeypatch.setattr(os, "execve", fake_execve)
    args = ["--config", "/app/config.yaml", "--port", "4000", "--num_workers", "1"]
    with pytest.raises(Exec) as done:
        container.main(["proxy", *args])
    assert done.value.path == str(env.litellm_bin)
    assert done.value.argv == [str(env.litellm_bin), *args]
    assert done.value.env == env.proxy_env(DSN)
    given = done.value.env
    assert given["DATABASE_URL"] == DSN and given["LITELLM_MASTER_KEY"] == "sk-harness-from-compose"
    assert given["DISABLE_SCHEMA_UPDATE"] == "true"
    assert given["PRISMA_QUERY_ENGINE_BINARY"] == str(litellm_env.standin_query_engine())
    assert given["PATH"].startswith(f"{env.venv / 'bin'}{os.pathsep}")
    assert "PYTHONPATH" not in given


# -- migrate: the version's SQL migrations -------------------------------------------------------------
def test_migrate_applies_the_versions_migrations(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    env = ready_env(tmp_path, migrations=3)
    monkeypatch.setenv(container.VERSION_VAR, VERSION)
    monkeypatch.setenv("DATABASE_URL", DSN)
    applied: list[tuple[Any, str]] = []
    monkeypatch.setattr(litellm_env, "apply_migrations", lambda e, dsn: applied.append((e, dsn)))
    assert container.main(["migrate"]) == 0
    assert applied == [(env, DSN)]
    assert capsys.readouterr().out == f"LiteLLM {VERSION}: 3 migrations applied\n"


def test_a_failed_migration_exits_2_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ready_env(tmp_path)
    monkeypatch.setenv(container.VERSION_VAR, VERSION)
    monkeypatch.setenv("DATABASE_URL", DSN)

    def failing(env: Any, dsn: str) -> None:
        raise HarnessError(f"migration 20250101000000_step1/migration.sql of LiteLLM {VERSION} failed: ERROR: boom",
                           "is the database empty and reachable?")

    monkeypatch.setattr(litellm_env, "apply_migrations", failing)
    assert container.main(["migrate"]) == 2
    assert one_error_line(capsys) == (f"error: migration 20250101000000_step1/migration.sql of LiteLLM {VERSION} "
                                      "failed: ERROR: boom — is the database empty and reachable?")


# -- build: the image build's step ---------------------------------------------------------------------
def test_build_ensures_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def ensure(version: str, console: Any = None) -> litellm_env.LiteLLMEnv:
        asked.append(version)
        return litellm_env.LiteLLMEnv(version=version, root=tmp_path / version)

    monkeypatch.setattr(litellm_env, "ensure", ensure)
    assert container.main(["build", "1.89.1"]) == 0
    assert asked == ["1.89.1"]
    assert capsys.readouterr().out == f"LiteLLM 1.89.1: ready in {tmp_path / '1.89.1'}\n"


# -- usage ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [[], ["serve"], ["build"], ["build", "1.84.0", "extra"], ["migrate", "now"]])
def test_anything_else_prints_the_usage_and_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litellm_env, "ensure", lambda *a, **k: pytest.fail("built"))
    monkeypatch.setattr(litellm_env, "apply_migrations", lambda *a: pytest.fail("migrated"))
    assert container.main(argv) == 2
    err = capsys.readouterr().err
    assert "python -m harness.litellm.container proxy [ARGS...]" in err
    assert "python -m harness.litellm.container migrate" in err


def test_the_module_is_the_entry_point(tmp_path: Path) -> None:
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-m", "harness.litellm.container", "serve"], capture_output=True,
                         text=True, check=False, env=env, timeout=120)
    assert res.returncode == 2
    assert "python -m harness.litellm.container build VERSION" in res.stderr
