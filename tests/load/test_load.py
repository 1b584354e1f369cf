"""The locustfile and its runner against a tiny fake LiteLLM-like proxy (tests/fakeproxy.py), 2 replicas."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.load.config import LoadConfig
from harness.load.launch import LiveStats, run_locust
from harness.run.runfolder import REQUESTS_COLUMNS, REQUESTS_FILE
from harness.util.ports import free_port
from harness.util.procs import ProcessGroup, group_alive, http_ok, wait_until

KEY = "sk-test-" + os.urandom(8).hex()


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], list[Path], Path]]:
    work = tmp_path_factory.mktemp("fakes")
    key_file = work / "key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    group = ProcessGroup(work / "state")
    urls, logs = [], []
    try:
        for i in range(2):
            port = free_port(exclude=set())
            log = work / f"fake-{i}.jsonl"
            group.start(f"fake-{i}", [sys.executable, "-m", "tests.fakeproxy", "--port", str(port), "--key-file",
                                      str(key_file), "--log", str(log), "--chunks", "8", "--chunk-delay", "0.03"],
                        log=work / f"fake-{i}.log", port=port, cwd=Path(__file__).resolve().parents[2])
            url = f"http://127.0.0.1:{port}"
            name = f"fake-{i}"
            wait_until(lambda u=url: http_ok(f"{u}/health"), deadline_s=20, what="fake proxy", interval=0.05,
                       still_alive=lambda n=name: group.alive(n), on_fail=lambda n=name: group.log_tail(n))
            urls.append(url)
            logs.append(log)
        yield urls, logs, key_file
    finally:
        group.stop_all()


def _config(urls: list[str], key_file: Path, run_dir: Path, **kw: object) -> LoadConfig:
    base = LoadConfig(run_dir=str(run_dir), proxy_urls=urls, master_key_file=str(key_file),
                      end_users=["eu-1", "eu-2", "over-1", "readtime-1", "flaky-1"], stream_share=0.7,
                      disconnect_share=0.5, disconnect_after_chunks=(2, 2), client_timeout_s=10,
                      max_tokens_choices=[None, 64], max_tokens_weights=[1, 1], prompt_chars=(30, 80),
                      retries_max=1, retry_on_status=[503], retry_backoff_s=0.01, wait_s=(0.0, 0.02), seed=7,
                      users=4, spawn_rate=10, duration_s=3)
    return replace(base, **kw)  # type: ignore[arg-type]


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / REQUESTS_FILE, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == REQUESTS_COLUMNS
        return list(reader)


def _log(logs: list[Path]) -> dict[tuple[str, int], dict[str, object]]:
    out = {}
    for path in logs:
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            out[(entry["request_id"], entry["attempt"])] = entry
    return out


def _run(cfg: LoadConfig, run_dir: Path, processes: int = 1) -> int:
    handle = run_locust(cfg, run_dir, processes=processes)
    try:
        return handle.wait(timeout=60)
    finally:
        handle.stop()
        assert not group_alive(handle.pid)


def test_locust_run_rows_disconnects_and_budget_text(fakes: tuple[list[str], list[Path], Path],
                                                     tmp_path: Path) -> None:
    urls, logs, key_file = fakes
    run = tmp_path / "run"
    assert _run(_config(urls, key_file, run), run) == 0
    rows = _rows(run)
    assert len(rows) > 30
    seen = _log(logs)
    by_user: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_user.setdefault(row["end_user"].split("-")[0], []).append(row)
        entry = seen[(row["request_id"], int(row["attempt"]))]          # the proxy got what the row says
        assert entry["user"] == entry["header_user"] == row["end_user"] and entry["auth_ok"]
        assert float(row["latency_s"]) == pytest.approx(float(row["t_end"]) - float(row["t_start"]), abs=0.01)
        if row["stream"] == "1":
            assert entry["stream_options"] == {"include_usage": True}
    assert {r["replica"] for r in rows} == {"0", "1"}                    # spread over the replicas
    assert not [r for r in rows if r["error_type"] == "stopped"]         # the end of the run cut nothing
    assert len({entry["prompt"] for entry in seen.values()}) == len({r["request_id"] for r in rows})
    assert {entry["max_tokens"] for entry in seen.values()} == {None, 64}

    ok = [r for r in by_user["eu"] if r["disconnected"] == "0"]
    assert ok and all(r["status"] == "200" and r["error_type"] == "" for r in ok)
    assert all(r["chunks"] == "8" for r in ok if r["stream"] == "1")
    cut = [r for r in by_user["eu"] if r["disconnected"] == "1"]
    assert cut, "no walk-aways"
    for r in cut:                                   # walked away after 2 chunks, and the proxy noticed
        assert (r["status"], r["chunks"], r["disconnect_after"], r["error_type"]) == ("200", "2", "2", "")
        entry = seen[(r["request_id"], 0)]
        assert entry["client_gone"] and 2 <= int(entry["chunks_sent"]) < 8  # type: ignore[call-overload]

    for r in by_user["over"]:
        assert (r["status"], r["error_type"]) == ("400", "http_error")
        assert r["error_text"] == "Budget has been exceeded! EndUser=over-1 Current cost: 2.5, Max budget: 2.0"
    for r in by_user["readtime"]:
        assert r["status"] == "429"
        assert r["error_text"] == "ExceededBudget: End User=readtime-1 over budget. Spend=3.1, Budget=2.0"
    flaky = {}
    for r in by_user["flaky"]:
        flaky.setdefault(r["request_id"], []).append((r["attempt"], r["status"]))
    assert flaky and all(v == [("0", "503"), ("1", "200")] for v in flaky.values())

    stats = LiveStats(run).poll()
    assert stats["requests"] == len(rows)
    assert stats["budget_rejections"] == len(by_user["over"]) + len(by_user["readtime"])
    assert stats["disconnects"] == sum(r["disconnected"] == "1" for r in rows)
    assert (run / "locust_stats.csv").exists() and (run / "locust.html").exists()
    for path in run.rglob("*"):                     # the key never lands in the run folder
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path


def test_walk_away_before_first_chunk(fakes: tuple[list[str], list[Path], Path], tmp_path: Path) -> None:
    urls, logs, key_file = fakes
    run = tmp_path / "run"
    cfg = _config(urls, key_file, run, end_users=["slow-1"], stream_share=1.0, disconnect_share=1.0,
                  disconnect_after_chunks=(3, 3), disconnect_before_first_chunk_s=0.5, users=2, duration_s=3)
    assert _run(cfg, run) == 0
    rows = _rows(run)
    assert rows
    seen = _log(logs)
    for r in rows:
        assert (r["disconnected"], r["chunks"], r["disconnect_after"], r["error_type"]) == ("1", "0", "0", "")
        assert 0.45 <= float(r["latency_s"]) < 1.4
    deadline = time.monotonic() + 10               # the fake notices when its first write fails (after 1.5 s)
    while time.monotonic() < deadline:
        seen = _log(logs)
        if all((r["request_id"], 0) in seen for r in rows):
            break
        time.sleep(0.1)
    assert all(seen[(r["request_id"], 0)]["client_gone"] for r in rows)


def test_stop_early_with_two_processes(fakes: tuple[list[str], list[Path], Path], tmp_path: Path) -> None:
    urls, _, key_file = fakes
    run = tmp_path / "run"
    cfg = _config(urls, key_file, run, end_users=["eu-1"], duration_s=120, users=6, stop_timeout_s=5)
    live = LiveStats(run)
    handle = run_locust(cfg, run, processes=2)
    try:
        deadline = time.monotonic() + 60
        while live.poll()["requests"] < 40 and time.monotonic() < deadline:
            assert handle.poll() is None
            time.sleep(0.2)
        t0 = time.monotonic()
        handle.stop()
        assert time.monotonic() - t0 < 30
        assert not group_alive(handle.pid)          # the master and both workers are gone
    finally:
        handle.stop()
    rows = _rows(run)                               # header once, no torn lines across the two workers
    assert len(rows) >= 40 and all(None not in r.values() and len(r) == len(REQUESTS_COLUMNS) for r in rows)
    assert all(len(r["request_id"]) == 32 for r in rows)
    assert not [r for r in rows if r["error_type"] == "stopped"]     # stopping never cuts a request
    assert (run / "locust_stats.csv").exists() and (run / "locust.html").exists()
    assert LiveStats(run).poll()["requests"] == len(rows)
