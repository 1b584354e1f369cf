"""The `harness` command as a user runs it: exit codes and one-line errors (bad input → 2, nothing left)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.analyze.rundirs import RunBuilder, base_scenario, budget_text, steady_users  # noqa: E402
from tests.conftest import one_error_line  # noqa: E402

USERS = [f"eu-{i}" for i in range(5)]


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=120,
                          env=env)


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
    assert "scenario.yaml" in one_error_line(proc)


def test_run_with_malformed_scenario_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nexpect: reproduced\nload: {users: -3}\n")
    proc = harness("run", str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert str(bad) in line and "load.users" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("version", "words"), [("9.9", "not an exact LiteLLM release"),
                                              ("1.50.0", "older than")])
def test_malformed_or_too_old_version_is_exit_2(version: str, words: str) -> None:
    proc = harness("up", "--litellm", version)
    assert proc.returncode == 2
    assert words in one_error_line(proc)


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
    line = one_error_line(proc)
    assert f"port {port}" in line and "in use" in line


# -- status / down / doctor: every stack of every backend, waits, unwrapped tables -------------------------
_SLOW_TO_DIE = [sys.executable, "-c", "import signal, sys, time\n"
                "def bye(*_):\n    time.sleep(1.0)\n    sys.exit(0)\n"
                "signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\ntime.sleep(600)\n"]


def _state_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    import os

    return {**os.environ, "HARNESS_STATE_DIR": str(tmp_path / "state"),
            "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", **extra}


def _recorded_child(tmp_path: Path, stack: str) -> subprocess.Popen[str]:
    """A child that takes a second to exit on SIGTERM, recorded in a local stack's state file (as a crashed
    run leaves it: the harness that recorded it is gone)."""
    from harness.util.procs import ProcessGroup

    child = subprocess.Popen(_SLOW_TO_DIE, start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    ProcessGroup(tmp_path / "state" / stack).adopt("locust", child.pid)
    return child


def test_status_lists_every_stack_of_every_backend(tmp_path: Path) -> None:
    child = _recorded_child(tmp_path, "run-20260101-000000-phantom")
    try:
        compose_dir = tmp_path / "state" / "dock"
        compose_dir.mkdir(parents=True)
        (compose_dir / "compose.json").write_text('{"project": "harness-dock"}')
        proc = harness("status", env=_state_env(tmp_path))
        assert proc.returncode == 0, proc.stderr
        assert "stack 'run-20260101-000000-phantom' (local):" in proc.stdout
        assert f"locust       pid {child.pid}" in proc.stdout
        assert "stack 'dock' (compose): not running" in proc.stdout
        one = harness("status", "--name", "dock", env=_state_env(tmp_path))
        assert one.stdout.strip() == "stack 'dock' (compose): not running"
        none = harness("status", "--name", "nope", env=_state_env(tmp_path))
        assert none.returncode == 0 and none.stdout.strip() == "stack 'nope': not running"
    finally:
        child.kill()
        child.wait()


def test_down_waits_until_the_recorded_groups_are_gone(tmp_path: Path) -> None:
    first = _recorded_child(tmp_path, "one")
    second = _recorded_child(tmp_path, "two")
    try:
        proc = harness("down", "--name", "one", env=_state_env(tmp_path))
        assert proc.returncode == 0, proc.stderr
        assert "stack 'one' (local): stopped 1" in proc.stderr
        assert first.poll() == 0          # exited (after its 1 s SIGTERM handler) before `down` returned
        assert second.poll() is None      # another stack: untouched
        assert not (tmp_path / "state" / "one" / "state.json").exists()
        proc = harness("down", "--all", env=_state_env(tmp_path))
        assert proc.returncode == 0, proc.stderr
        assert second.poll() == 0
        assert harness("status", env=_state_env(tmp_path)).stdout.strip() == "no stacks"
    finally:
        for child in (first, second):
            if child.poll() is None:
                child.kill()
                child.wait()


def test_doctor_lists_built_environments_and_does_not_fold_words_at_80_columns(tmp_path: Path) -> None:
    env_root = tmp_path / "cache" / "litellm" / "1.84.0"
    (env_root / "venv" / "bin").mkdir(parents=True)
    (env_root / "venv" / "bin" / "python").touch()
    (env_root / "ready.json").write_text('{"version": "1.84.0"}')
    env = _state_env(tmp_path, HARNESS_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="80")
    listed = harness("env", "list", env=env)
    assert listed.stderr.split()[0] == "1.84.0"
    doctor = harness("doctor", env=env)
    rows = doctor.stderr.splitlines()
    envs_row = next(line for line in rows if "LiteLLM environments" in line)
    assert "1.84.0" in envs_row and "none built" not in envs_row
    # cells whose words rich would fold at 80 columns stay whole on one line
    for cell in ("docker (compose backend)", "prisma engine stand-in", "harness/engine/node_modules"):
        assert any(cell in line for line in rows), (cell, doctor.stderr)
