"""The external backend against a real stack it did not start (issue 15's done-when), through the command line:

    harness up --scenario scenarios/minimal.yaml --litellm V --name N
    harness status --name N --format target > target.yaml
    harness run scenarios/minimal.yaml --litellm V --backend external --target target.yaml
    harness down --name N

1.84.0 must be REPRODUCED and 1.108.7 clean (the scenario's own expectations, exit 0), the stack must be up and
untouched afterwards (the same processes, the same pids), the run's end users must carry the run's tag, and the
ledger must have come over HTTP from the stack's mock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.stack_helpers import searchable_tmp, skip_unless_built

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
MINIMAL = REPO / "scenarios" / "minimal.yaml"


def _harness(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _pids(env: dict[str, str], name: str) -> dict[str, str]:
    """name -> pid of each process `harness status` lists for the stack."""
    out = _harness(env, "status", "--name", name).stdout
    return {parts[0]: parts[2] for line in out.splitlines() if (parts := line.split()) and len(parts) > 3
            and parts[1] == "pid"}


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[dict[str, str]]:
    state = searchable_tmp("ext-state")
    env = {**os.environ, "HARNESS_STATE_DIR": str(state), "HARNESS_RESULTS_DIR": str(tmp_path / "results"),
           "COLUMNS": "200"}
    yield env
    _harness(env, "down", "--all")


@pytest.mark.parametrize(("version", "verdict"), [("1.84.0", "REPRODUCED"), ("1.108.7", "NOT REPRODUCED")])
def test_minimal_through_the_external_backend(dirs: dict[str, str], tmp_path: Path, version: str,
                                              verdict: str) -> None:
    skip_unless_built(version)
    env, name = dirs, "ext-e2e"
    up = _harness(env, "up", "--scenario", str(MINIMAL), "--litellm", version, "--name", name)
    assert up.returncode == 0, up.stderr[-2000:]
    before = _pids(env, name)
    assert {"postgres", "redis", "mock", "proxy-0"} <= before.keys()

    printed = _harness(env, "status", "--name", name, "--format", "target")
    assert printed.returncode == 0, printed.stderr
    target = tmp_path / "target.yaml"
    target.write_text(printed.stdout)
    check = _harness(env, "target", "check", str(target))
    assert check.returncode == 0 and f"LiteLLM {version}" in check.stdout, check.stdout + check.stderr

    out = tmp_path / "run"
    run = _harness(env, "run", str(MINIMAL), "--litellm", version, "--backend", "external", "--target", str(target),
                   "--out", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"\n{verdict} — LiteLLM {version}" in "\n" + run.stderr, run.stderr[-2000:]

    # the deployment is untouched: the same processes with the same pids, still answering
    assert _pids(env, name) == before
    assert _harness(env, "target", "check", str(target)).returncode == 0

    meta = json.loads((out / "meta.json").read_text())
    assert meta["backend"] == "external" and meta["status"] == "done"
    assert meta["endpoints"]["read_only"] is True and "master_key" not in meta["endpoints"]
    assert meta["ledger_source"]["rows"] >= 1
    assert meta["end_users_created"] == {"api": 1, "sql": 0}
    tag = meta["ledger_source"]["url"] and pd.read_csv(out / "ledger.csv")["end_user"].iloc[0].split("eu-")[0]
    assert tag.startswith("r") and tag.endswith("-")
    requests = pd.read_csv(out / "requests.csv")
    samples = pd.read_csv(out / "samples.csv")
    assert requests["end_user"].str.startswith(tag).all() and samples["end_user"].str.startswith(tag).all()
    key = (Path(env["HARNESS_STATE_DIR"]) / name / "target-master-key").read_text().strip()
    for file in out.iterdir():
        if file.is_file() and file.suffix in (".json", ".md", ".csv", ".log", ".yaml"):
            assert key not in file.read_text(errors="replace"), file.name

    down = _harness(env, "down", "--name", name)
    assert down.returncode == 0 and "stopped 5" in down.stderr, down.stdout + down.stderr
    assert not (Path(env["HARNESS_STATE_DIR"]) / name / "target-master-key").exists()
