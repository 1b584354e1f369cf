"""Beyond one machine, made here (issue 15): the stack on one test host, Locust's master and its workers on others.

Four network-namespace hosts on a private bridge (harness/util/nethosts.py):

    h0  the stack: `harness up --scenario … --proxy-host <h0>` (the proxies listen on h0's address; Redis,
        Postgres and the mock on h0's loopback), and `harness run … --backend external` next to it (the sampler
        reads Redis and Postgres on loopback, as an operator's harness would inside the cluster)
    h1  the Locust master (binds h1's address)
    h2  one worker          h3  one worker

The target file is the stack's own (`harness status --format target`, which says allow_remote: true because
the proxies listen on a non-loopback address) plus a `load:` section naming the hosts. The run must be
REPRODUCED on 1.84.0 (tests/data/e2e-run.yaml's expectation), its requests must come from both workers
through the master (requests.csv = the mock's ledger joined by request id), the workers' traffic must have
crossed their own veth links, and nothing may be left: no process in any namespace, no namespace, no stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.util.nethosts import NetHosts
from tests.stack_helpers import searchable_tmp, skip_unless_built

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "tests" / "data" / "e2e-run.yaml"


def _rx_bytes(veth: str) -> int:
    """Bytes the root end of a host's veth received: what that host sent onto the bridge."""
    return int(Path(f"/sys/class/net/{veth}/statistics/rx_bytes").read_text())


def test_seed_family_run_with_workers_on_two_other_hosts(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("network-namespace hosts need root")
    skip_unless_built("1.84.0")
    state = searchable_tmp("hosts-state")
    env = {**os.environ, "HARNESS_STATE_DIR": str(state), "HARNESS_RESULTS_DIR": str(tmp_path / "results"),
           "COLUMNS": "200"}

    def harness(prefix: list[str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, sys.executable, "-m", "harness", *args], env=env, capture_output=True,
                              text=True, timeout=timeout, cwd=REPO)

    with NetHosts(4) as hosts:
        h0, h1, h2, h3 = hosts.hosts
        try:
            up = harness(h0.exec_prefix, "up", "--scenario", str(SCENARIO), "--name", "hosts-e2e", "--proxy-host",
                         h0.address)
            assert up.returncode == 0, up.stderr[-2000:]
            printed = harness([], "status", "--name", "hosts-e2e", "--format", "target")
            assert printed.returncode == 0, printed.stderr
            target = yaml.safe_load(printed.stdout)
            assert target["allow_remote"] is True and target["proxy"]["url"].startswith(f"http://{h0.address}:")
            target["load"] = {"master_host": h1.address, "master_command": h1.exec_prefix,
                              "workers": [{"command": h2.exec_prefix}, {"command": h3.exec_prefix}]}
            target_file = tmp_path / "target.yaml"
            target_file.write_text(yaml.safe_dump(target))
            rx_before = {h.name: _rx_bytes(h.veth) for h in (h2, h3)}

            out = tmp_path / "run"
            run = harness(h0.exec_prefix, "run", str(SCENARIO), "--backend", "external", "--target", str(target_file),
                          "--out", str(out))
            assert run.returncode == 0, run.stderr[-3000:]
            assert "\nREPRODUCED — LiteLLM 1.84.0" in "\n" + run.stderr, run.stderr[-2000:]
            meta = json.loads((out / "meta.json").read_text())
            assert meta["load_where"] == "hosts"
            assert meta["load_hosts"] == {"master_host": h1.address, "workers": 2, "worker_hosts": 2}

            # every request went out from a worker host and came back through the master: requests.csv holds
            # exactly the mock's calls, and each worker host sent real traffic across its own veth link
            requests = pd.read_csv(out / "requests.csv")
            ledger = pd.read_csv(out / "ledger.csv")
            # how many depends on the machine's speed (CI once made 280 in the same 60 s): what this test checks is
            # that the load flowed through both worker hosts and the master, not its rate (bench_external_hosts.py)
            assert len(requests) > 100 and requests["request_id"].is_unique
            assert set(ledger["request_id"]) <= set(requests["request_id"])     # no upstream call without its row
            for h in (h2, h3):
                assert (out / f"locust-worker-{(h2, h3).index(h) + 1}.log").exists()
                sent = _rx_bytes(h.veth) - rx_before[h.name]
                assert sent > 200_000, f"{h.name} sent only {sent} bytes over its link"
        finally:
            down = harness([], "down", "--all")
            assert down.returncode == 0, down.stderr
        for h in hosts.hosts:    # nothing of the run or the stack is left inside any host
            pids = subprocess.run(["ip", "netns", "pids", h.name], capture_output=True, text=True, check=True)
            assert pids.stdout.split() == [], (h.name, pids.stdout)
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert all(h.name not in names for h in hosts.hosts)
