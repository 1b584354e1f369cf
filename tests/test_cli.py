"""The `harness` command as a user runs it: exit codes and one-line errors (bad input → 2, nothing left)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.analyze.rundirs import RunBuilder, base_scenario, budget_text, steady_users  # noqa: E402

USERS = [f"eu-{i}" for i in range(5)]


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_analyze_exit_code_follows_the_expectation(tmp_path: Path) -> None:
    phantom = RunBuilder(tmp_path / "phantom", scenario=base_scenario(expect="reproduced"))
    steady_users(phantom, USERS)
    phantom.request(30.0, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))
    assert harness("analyze", str(phantom.write())).returncode == 0

    mismatch = RunBuilder(tmp_path / "mismatch", scenario=base_scenario(expect="clean"))
    steady_users(mismatch, USERS)
    mismatch.request(30.0, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))
    assert harness("analyze", str(mismatch.write())).returncode == 1


def test_analyze_unusable_folder_is_exit_2(tmp_path: Path) -> None:
    proc = harness("analyze", str(tmp_path))
    assert proc.returncode == 2
    assert "scenario.yaml" in _one_error_line(proc)


def test_run_with_malformed_scenario_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nexpect: reproduced\nload: {users: -3}\n")
    proc = harness("run", str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert str(bad) in line and "load.users" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("version", "words"), [("9.9.9", "newer than"), ("1.104.9", "cannot be installed")])
def test_unknown_or_uninstallable_version_is_exit_2(version: str, words: str) -> None:
    proc = harness("up", "--litellm", version)
    assert proc.returncode == 2
    assert words in _one_error_line(proc)


def test_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        env = {"HARNESS_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
        import os

        proc = harness("up", "--litellm", "1.84.0", "--base-port", str(port), "--name", "busy",
                       env={**os.environ, **env})
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert f"port {port}" in line and "in use" in line
