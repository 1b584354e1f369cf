"""Locust's distributed mode across hosts, for real: hosts are network namespaces (harness.util.nethosts).

host0 runs the mock LLM on its own address (it answers /chat/completions itself: no proxy), host1 the master
and one worker, host2 another worker; every connection crosses the bridge. requests.csv (written by the master
from the workers' messages) must hold exactly the requests the mock's ledger holds, from both workers, and
nothing of the test may be left afterwards (processes, namespaces). Needs root (CI runs as root).
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from harness.load.config import LoadConfig
from harness.load.distributed import DistributedLocust, master_command, run_locust_distributed, worker_commands
from harness.load.launch import LOCUST_LOG, LiveStats
from harness.run.runfolder import REQUESTS_COLUMNS, REQUESTS_FILE
from harness.stack.external.target import Load, Workers
from harness.util import nethosts
from harness.util.nethosts import NetHosts
from harness.util.procs import wait_until

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs as root)")
REPO = Path(__file__).resolve().parents[2]
MOCK_PORT = 8000
MOCK_CONFIG = '{"stream": {"chunks": 8, "chunk_delay_s": 0.12}}'       # a stream takes ~1 s


@dataclass
class Rig:
    hosts: NetHosts
    mock_url: str
    mock: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("dist")
    with NetHosts(3) as hosts:
        names = hosts.names()
        host0 = hosts[0]
        with open(work / "mock.log", "wb") as log:
            mock = subprocess.Popen(  # noqa: S603
                [*host0.exec_prefix, sys.executable, "-m", "harness.mockllm", "--host", host0.address, "--port",
                 str(MOCK_PORT), "--ledger", str(work / "ledger.csv"), "--events", str(work / "events.csv"),
                 "--config", MOCK_CONFIG], stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        url = f"http://{host0.address}:{MOCK_PORT}"
        try:
            wait_until(lambda: _health(url) is not None, deadline_s=20, what="mock in host0", interval=0.05,
                       still_alive=lambda: mock.poll() is None,
                       on_fail=lambda: (work / "mock.log").read_text(errors="replace")[-2000:])
            yield Rig(hosts=hosts, mock_url=url, mock=mock)
        finally:
            mock.terminate()
            mock.wait(timeout=15)
    have = set(nethosts._namespaces()) | set(nethosts._links())
    assert not [n for n in names if n in have]                  # the hosts are gone with the test


def _health(url: str) -> dict[str, int] | None:
    try:
        return dict(httpx.get(f"{url}/health", timeout=2).json())
    except (httpx.HTTPError, ValueError):
        return None


def _settled(url: str) -> bool:
    """Every call the mock took has ended (and is in its ledger)."""
    health = _health(url)
    return health is not None and health["requests"] == health["ledger_rows"]


def _ledger(url: str, prefix: str) -> list[dict[str, str]]:
    text = httpx.get(f"{url}/control/ledger", params={"end_user_prefix": prefix}, timeout=10).text
    return list(csv.DictReader(io.StringIO(text)))


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / REQUESTS_FILE, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == REQUESTS_COLUMNS
        rows = list(reader)
    assert all(None not in r.values() and None not in r for r in rows)
    return rows


def _config(rig: Rig, prefix: str, **kw: object) -> LoadConfig:
    base = {"run_dir": "", "proxy_urls": [rig.mock_url], "master_key_file": None,
            "end_users": [f"{prefix}-{i}" for i in range(40)], "stream_share": 0.8, "disconnect_share": 0.25,
            "disconnect_after_chunks": (1, 4), "client_timeout_s": 10, "prompt_chars": (20, 60),
            "wait_s": (0.0, 0.05), "users": 12, "spawn_rate": 50, "duration_s": 5, "stop_timeout_s": 6, "seed": 5}
    return LoadConfig(**{**base, **kw})  # type: ignore[arg-type]


def _load(hosts: NetHosts, port: int) -> Load:
    return Load(master_host=hosts[1].address, master_port=port, master_command=hosts[1].exec_prefix,
                workers=[Workers(command=hosts[2].exec_prefix, count=1), Workers(command=hosts[1].exec_prefix)])


def _execed(pid: int) -> bool:
    """`ip netns exec` has entered the namespace and exec'd the command (the pid now runs Python)."""
    return psutil.Process(pid).cmdline()[:1] == [sys.executable]


def _netns_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _alive(pids: dict[str, int]) -> list[str]:
    out = []
    for name, pid in pids.items():
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(name)
        except psutil.NoSuchProcess:
            pass
    return out


def _check_rows_match_the_ledger(rig: Rig, run: Path, prefix: str) -> list[dict[str, str]]:
    wait_until(lambda: _settled(rig.mock_url), deadline_s=20, what="mock calls ended", interval=0.1)
    rows = _rows(run)
    calls = _ledger(rig.mock_url, prefix)
    per_id = Counter(r["request_id"] for r in rows)
    assert rows and max(per_id.values()) == 1                        # one row per request (no retries)
    assert {c["request_id"] for c in calls} == set(per_id) and len(calls) == len(rows)
    assert all(r["status"] == "200" and r["error_type"] == "" for r in rows)     # none cut by the stop
    return rows


def _check_both_workers(handle: DistributedLocust, rows: list[dict[str, str]]) -> None:
    master_log = (handle.run_dir / LOCUST_LOG).read_text()
    drained = re.findall(r"worker (\S+) drained: it sent (\d+) rows, the master wrote (\d+)", master_log)
    assert len({node for node, _, _ in drained}) == 2, master_log[-3000:]
    assert all(int(sent) == int(wrote) for _, sent, wrote in drained)
    sent = []
    for n in (1, 2):
        found = re.findall(r"drained: (\d+) rows sent to the master", (handle.run_dir / f"locust-worker-{n}.log")
                           .read_text())
        assert len(found) == 1, n
        sent.append(int(found[0]))
    assert all(s > 0 for s in sent) and sum(sent) == len(rows), sent        # rows from both workers, all here


def test_commands_run_the_master_and_each_worker_through_their_prefixes(tmp_path: Path) -> None:
    load = Load(master_host="10.0.0.2", master_port=6000, master_command=["ip", "netns", "exec", "m"],
                workers=[Workers(command=["ssh", "w1"], count=2), Workers(command=["ip", "netns", "exec", "w2"])])
    cfg = LoadConfig(run_dir=str(tmp_path), proxy_urls=["http://10.0.0.3:4000"], master_key_file=None,
                     duration_s=7.5, stop_timeout_s=4)
    cmd = master_command(cfg, tmp_path, load, expect_workers_max_wait_s=12)
    assert cmd[:6] == ["ip", "netns", "exec", "m", sys.executable, "-m"]
    assert cmd[cmd.index("--master-bind-host") + 1] == "10.0.0.2" and cmd[cmd.index("--master-bind-port") + 1] == "6000"
    assert cmd[cmd.index("--expect-workers") + 1] == "3" and cmd[cmd.index("--expect-workers-max-wait") + 1] == "12"
    assert cmd[cmd.index("-t") + 1] == "8s" and cmd[cmd.index("--stop-timeout") + 1] == "4" and "--headless" in cmd
    workers = worker_commands(load)
    assert [w[:2] for w in workers] == [["ssh", "w1"], ["ssh", "w1"], ["ip", "netns"]]
    assert all(w[w.index("--master-host") + 1] == "10.0.0.2" and w[w.index("--master-port") + 1] == "6000"
               and "--worker" in w for w in workers)


@pytest.mark.e2e
@needs_root
def test_master_and_workers_on_other_hosts_every_request_has_one_row(rig: Rig, tmp_path: Path) -> None:
    hosts = rig.hosts
    run = tmp_path / "run"
    handle = run_locust_distributed(_config(rig, "dist"), run, _load(hosts, 5557))
    pids = handle.tracked()
    try:
        assert list(pids) == ["locust", "locust-worker-1", "locust-worker-2"]
        # each process runs in its host (ip netns exec execs: the pid is Locust's own)
        want = {"locust": hosts[1], "locust-worker-1": hosts[2], "locust-worker-2": hosts[1]}
        for name, host in want.items():
            wait_until(lambda p=pids[name]: _execed(p), deadline_s=20, what=f"{name} started", interval=0.02)
            assert _netns_of(pids[name]) == os.stat(f"/run/netns/{host.name}").st_ino, name
        assert handle.wait(timeout=60) == 0, (run / LOCUST_LOG).read_text()[-3000:]
    finally:
        assert handle.stop() == 0
    assert not _alive(pids)
    assert LoadConfig.from_json((run / "load-config.json").read_text()).rows_via_master is True
    rows = _check_rows_match_the_ledger(rig, run, "dist")
    _check_both_workers(handle, rows)
    last_start = max(float(r["t_start"]) for r in rows)          # the end mattered: late rows are here too
    assert sum(float(r["t_end"]) > last_start + 0.5 for r in rows) >= 2
    with open(run / "locust_stats.csv", newline="") as fh:       # Locust's own count agrees
        total = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    assert int(total["Request Count"]) == len(rows)


@pytest.mark.e2e
@needs_root
def test_stop_early_drains_the_workers_then_nothing_is_left(rig: Rig, tmp_path: Path) -> None:
    run = tmp_path / "run"
    handle = run_locust_distributed(_config(rig, "early", duration_s=120), run, _load(rig.hosts, 5558))
    pids = handle.tracked()
    try:
        live = LiveStats(run)
        deadline = time.monotonic() + 60
        while live.poll()["requests"] < 40:
            assert handle.poll() is None, (run / LOCUST_LOG).read_text()[-3000:]
            assert time.monotonic() < deadline, "no rows reached the master"
            time.sleep(0.2)
        t0 = time.monotonic()
        code = handle.stop()
        assert time.monotonic() - t0 < 30
    finally:
        handle.stop()
    assert code == 0, (run / LOCUST_LOG).read_text()[-3000:]
    assert not _alive(pids)
    rows = _check_rows_match_the_ledger(rig, run, "early")
    _check_both_workers(handle, rows)


@pytest.mark.e2e
@needs_root
def test_workers_that_never_connect_end_the_master_with_a_clear_line(tmp_path: Path) -> None:
    with NetHosts(2) as hosts:
        master_host, lonely = hosts
        nethosts._ip("-n", lonely.name, "link", "set", "eth0", "down")      # this host cannot reach the master
        load = Load(master_host=master_host.address, master_port=5557, master_command=master_host.exec_prefix,
                    workers=[Workers(command=lonely.exec_prefix)])
        cfg = LoadConfig(run_dir="", proxy_urls=["http://127.0.0.1:9"], master_key_file=None, duration_s=30)
        run = tmp_path / "run"
        handle = run_locust_distributed(cfg, run, load, expect_workers_max_wait_s=3)
        pids = handle.tracked()
        try:
            t0 = time.monotonic()
            code = handle.wait(timeout=45)
            assert code == 1 and time.monotonic() - t0 < 30
            assert handle.poll() == 1 and handle._workers_running()         # reported at once, worker or not
            assert handle.error and "not all 1 worker(s) connected" in handle.error
            assert f"{master_host.address}:5557" in handle.error
        finally:
            handle.stop()
        assert not _alive(pids)
        log = (run / LOCUST_LOG).read_text()
        assert "Gave up waiting for workers to connect" in log
        assert log.rstrip().splitlines()[-1].startswith("harness: the Locust master gave up")
        names = hosts.names()
    have = set(nethosts._namespaces()) | set(nethosts._links())
    assert not [n for n in names if n in have]
