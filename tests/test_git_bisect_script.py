"""scripts/git-bisect-litellm.sh: what it runs, how it maps exit codes for `git bisect run`, and a real
`git bisect run` over a throw-away repository with a fake `harness` (HARNESS_BIN) standing in for the runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "git-bisect-litellm.sh"


def fake_harness(tmp_path: Path, body: str = 'exit "${FAKE_RC:-0}"') -> Path:
    """A `harness` that records its working folder and arguments (one per line), then runs `body`."""
    path = tmp_path / "fake-harness"
    path.write_text("#!/bin/bash\n"
                    f'{{ echo "cwd=$PWD"; printf "%s\\n" "$@"; }} > {tmp_path}/call\n' + body + "\n")
    path.chmod(0o755)
    return path


def run_script(tmp_path: Path, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "HARNESS_BIN": str(fake_harness(tmp_path)), **env}
    for var in ("HARNESS_SCENARIO", "HARNESS_MIN_PHANTOMS", "HARNESS_MIN_LEAKED"):
        if var not in env:
            full.pop(var, None)
    return subprocess.run([str(SCRIPT), *args], cwd=cwd or tmp_path, env=full, capture_output=True, text=True,
                          timeout=60)


def test_it_runs_the_harness_on_the_current_folder_from_the_harness_folder(tmp_path: Path) -> None:
    tree = tmp_path / "litellm"
    tree.mkdir()
    proc = run_script(tmp_path, cwd=tree)
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "call").read_text().splitlines()
    assert lines == [f"cwd={REPO}", "run", "scenarios/phantom-budget.yaml", "--litellm", str(tree), "--bisect",
                     "--min-phantoms", "0", "--min-leaked", "0"]
    assert "exit 0: good (the bug is absent)" in proc.stderr


def test_scenario_thresholds_and_extra_options_reach_the_run(tmp_path: Path) -> None:
    proc = run_script(tmp_path, "scenarios/slow-first-token.yaml", "--", "--duration", "30", "--replicas", "2",
                      HARNESS_MIN_PHANTOMS="5", HARNESS_MIN_LEAKED="5")
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "call").read_text().splitlines()
    assert lines[1:] == ["run", "scenarios/slow-first-token.yaml", "--litellm", str(tmp_path), "--bisect",
                         "--min-phantoms", "5", "--min-leaked", "5", "--duration", "30", "--replicas", "2"]
    assert run_script(tmp_path, HARNESS_SCENARIO="scenarios/x.yaml").returncode == 0
    assert (tmp_path / "call").read_text().splitlines()[2] == "scenarios/x.yaml"


@pytest.mark.parametrize(("harness_rc", "plain", "find_fix"), [
    (0, 0, 1), (1, 1, 0), (125, 125, 125), (130, 130, 130), (2, 125, 125), (3, 125, 125), (127, 125, 125),
    (137, 125, 125)])
def test_exit_codes_follow_gits_contract(tmp_path: Path, harness_rc: int, plain: int, find_fix: int) -> None:
    assert run_script(tmp_path, FAKE_RC=str(harness_rc)).returncode == plain
    assert run_script(tmp_path, "--find-fix", FAKE_RC=str(harness_rc)).returncode == find_fix


def test_a_missing_harness_or_option_is_a_skip_not_bad(tmp_path: Path) -> None:
    proc = run_script(tmp_path, HARNESS_BIN=str(tmp_path / "nope"))
    assert proc.returncode == 125 and "is missing" in proc.stderr
    proc = run_script(tmp_path, "--fast")
    assert proc.returncode == 125 and "unknown option --fast" in proc.stderr
    assert not (tmp_path / "call").exists()


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org",
                           "-c", "commit.gpgsign=false", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _history(tmp_path: Path, change_at: int, n: int = 8) -> tuple[Path, list[str]]:
    """A repository of `n` commits; from commit `change_at` on, the file `changed` exists."""
    repo = tmp_path / "litellm"
    repo.mkdir()
    _git(repo, "init", "-q")
    commits = []
    for i in range(n):
        (repo / "n").write_text(str(i))
        if i == change_at:
            (repo / "changed").write_text("x")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", f"c{i}")
        commits.append(_git(repo, "rev-parse", "HEAD"))
    return repo, commits


def test_git_bisect_run_finds_the_commit_that_introduced_the_bug(tmp_path: Path) -> None:
    repo, commits = _history(tmp_path, change_at=5)
    # the bug is present (REPRODUCED, 1) from commit 5 on; commit 3 cannot be installed (125)
    body = ('tree=$(sed -n 5p ' + str(tmp_path) + '/call); n=$(cat "$tree/n"); '
            '[ "$n" = 3 ] && exit 2; [ -e "$tree/changed" ] && exit 1; exit 0')
    env = {**os.environ, "HARNESS_BIN": str(fake_harness(tmp_path, body))}
    _git(repo, "bisect", "start", commits[-1], commits[0])
    proc = subprocess.run(["git", "bisect", "run", str(SCRIPT)], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{commits[5]} is the first bad commit" in proc.stdout


def test_git_bisect_run_finds_the_commit_that_fixed_it_with_find_fix(tmp_path: Path) -> None:
    repo, commits = _history(tmp_path, change_at=6)
    # the bug is present before commit 6 and absent from it on: exit 1 before, 0 after
    body = ('tree=$(sed -n 5p ' + str(tmp_path) + '/call); [ -e "$tree/changed" ] && exit 0; exit 1')
    env = {**os.environ, "HARNESS_BIN": str(fake_harness(tmp_path, body))}
    _git(repo, "bisect", "start", "--term-old=broken", "--term-new=fixed")
    _git(repo, "bisect", "fixed", commits[-1])
    _git(repo, "bisect", "broken", commits[0])
    proc = subprocess.run(["git", "bisect", "run", str(SCRIPT), "--find-fix"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{commits[6]} is the first fixed commit" in proc.stdout
