"""Rows reach the master the Locust way (LoadConfig.rows_via_master): workers send their requests.csv rows as
custom messages, the master appends them; at the end the master drains every worker before it quits.

The real test runs a master and 2 worker processes (harness.load.locust_main) on loopback against the mock
LLM itself (it answers /chat/completions: no proxy needed) and joins requests.csv with the mock's ledger. The
streams last ~1 s, so at the end of the run (-t) many are in flight: they finish after the master began to
quit, which stock Locust would not wait for (see harness/load/locustfile.py).
"""

from __future__ import annotations

import csv
import re
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.load.config import CONFIG_FILE, LoadConfig
from harness.load.launch import LOCUST_LOG, locust_args
from harness.load.writer import MESSAGE_ROWS, RowForwarder, decode_rows, encode_rows
from harness.run.runfolder import LEDGER_COLUMNS, REQUESTS_COLUMNS, REQUESTS_FILE
from harness.util.ports import free_port
from harness.util.procs import ProcessGroup, http_ok, wait_until

REPO = Path(__file__).resolve().parents[2]
MOCK_CONFIG = '{"stream": {"chunks": 8, "chunk_delay_s": 0.12}}'       # a stream takes ~1 s
MODULE = [sys.executable, "-m", "harness.load.locust_main"]


def _row(i: int, **kw: Any) -> dict[str, Any]:
    base = {"t_start": 1.5 + i, "t_end": 2.25 + i, "end_user": f"eu-{i}", "replica": 0, "stream": True,
            "disconnect_after": None, "disconnected": False, "chunks": 8, "status": 200, "error_type": "",
            "error_text": "", "latency_s": 0.75, "attempt": 0, "request_id": f"{i:032x}", "key": None}
    return {**base, **kw}


def test_rows_round_trip_through_a_message_body() -> None:
    rows = [_row(0), _row(1, error_text='Budget has been exceeded! "x", y', status=400, disconnect_after=2)]
    data = encode_rows(rows)
    assert data["columns"] == list(REQUESTS_COLUMNS) and len(data["rows"]) == 2
    assert decode_rows(data) == rows
    older = {"columns": [c for c in REQUESTS_COLUMNS if c != "attempt"],                  # a column missing
             "rows": [[v for c, v in zip(REQUESTS_COLUMNS, vals, strict=True) if c != "attempt"]
                      for vals in data["rows"]]}
    assert [r.get("attempt") for r in decode_rows(older)] == [None, None]


def test_forwarder_sends_in_order_in_bounded_messages_and_keeps_rows_a_failed_send_did_not_take() -> None:
    sent: list[dict[str, Any]] = []
    fail = [False]

    def send(data: dict[str, Any]) -> None:
        if fail[0]:
            raise RuntimeError("master gone")
        sent.append(data)

    fw = RowForwarder(send)
    for i in range(MESSAGE_ROWS + 5):            # the add that fills a message flushes it
        fw.add(_row(i))
    assert len(sent) == 1 and len(sent[0]["rows"]) == MESSAGE_ROWS
    fail[0] = True
    fw.flush()
    assert fw.sent == MESSAGE_ROWS and fw.failed_sends == 1
    fw.add(_row(MESSAGE_ROWS + 5))
    fail[0] = False
    fw.flush()
    ids = [r["request_id"] for d in sent for r in decode_rows(d)]
    assert ids == [f"{i:032x}" for i in range(MESSAGE_ROWS + 6)] and fw.sent == MESSAGE_ROWS + 6


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == columns, path
        rows = list(reader)
    assert all(None not in r.values() and None not in r and len(r) == len(columns) for r in rows), path
    return rows


@pytest.mark.e2e
def test_master_and_two_workers_every_ledger_request_has_exactly_one_row(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    group = ProcessGroup(tmp_path / "state")
    mock_port, master_port = free_port(), free_port()
    ledger = tmp_path / "ledger.csv"
    try:
        group.start("mock", [sys.executable, "-m", "harness.mockllm", "--port", str(mock_port), "--ledger",
                             str(ledger), "--events", str(tmp_path / "events.csv"), "--config", MOCK_CONFIG],
                    log=tmp_path / "mock.log", cwd=REPO)
        url = f"http://127.0.0.1:{mock_port}"
        wait_until(lambda: http_ok(f"{url}/health"), deadline_s=20, what="mock", interval=0.05,
                   still_alive=lambda: group.alive("mock"), on_fail=lambda: group.log_tail("mock"))
        cfg = LoadConfig(run_dir=str(run), proxy_urls=[url], master_key_file=None, rows_via_master=True,
                         end_users=[f"eu-{i}" for i in range(50)], stream_share=0.8, disconnect_share=0.25,
                         disconnect_after_chunks=(1, 4), client_timeout_s=10, prompt_chars=(20, 60), wait_s=(0, 0.05),
                         users=12, spawn_rate=50, duration_s=5, stop_timeout_s=6, seed=3)
        cfg.write(run / CONFIG_FILE)
        master = group.start("master", [*MODULE, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                                        str(master_port), "--expect-workers", "2", "--expect-workers-max-wait", "30",
                                        *locust_args(cfg, run)], log=run / LOCUST_LOG, cwd=tmp_path)
        workers = []
        for n in (1, 2):
            wdir = tmp_path / f"worker-{n}"             # no run folder of their own: only the master writes
            wdir.mkdir()
            workers.append(group.start(f"worker-{n}", [*MODULE, "--worker", "--master-host", "127.0.0.1",
                                                       "--master-port", str(master_port)],
                                       log=run / f"locust-worker-{n}.log", cwd=wdir))
        assert master.wait(timeout=60) == 0, (run / LOCUST_LOG).read_text()[-3000:]
        for n, worker in enumerate(workers, start=1):
            assert worker.wait(timeout=30) == 0, (run / f"locust-worker-{n}.log").read_text()[-3000:]
        # every call the mock took has ended (a walk-away is noticed at its next chunk): then stop it
        wait_until(lambda: _mock_settled(url), deadline_s=20, what="mock calls ended", interval=0.1)
        group.stop("mock")
    finally:
        group.stop_all()

    rows = _read_csv(run / REQUESTS_FILE, REQUESTS_COLUMNS)
    calls = _read_csv(ledger, LEDGER_COLUMNS)
    assert len(rows) > 60
    per_id = Counter(r["request_id"] for r in rows)
    assert max(per_id.values()) == 1                                # exactly one row per request (no retries)
    assert {c["request_id"] for c in calls} == set(per_id) and len(calls) == len(rows)
    assert all(r["status"] == "200" and r["error_type"] == "" for r in rows)
    assert not [r for r in rows if r["error_type"] == "stopped"]
    assert any(r["disconnected"] == "1" for r in rows) and any(c["outcome"] == "client_gone" for c in calls)
    # the end mattered: requests still running well after the last one started (the stop) were kept
    last_start = max(float(r["t_start"]) for r in rows)
    assert sum(float(r["t_end"]) > last_start + 0.5 for r in rows) >= 2

    master_log = (run / LOCUST_LOG).read_text()
    drained = re.findall(r"worker (\S+) drained: it sent (\d+) rows, the master wrote (\d+)", master_log)
    assert len({node for node, _, _ in drained}) == 2, master_log[-3000:]        # both workers sent rows …
    assert all(int(sent) == int(wrote) > 0 for _, sent, wrote in drained)
    assert sum(int(sent) for _, sent, _ in drained) == len(rows)                 # … and only theirs are here
    assert "MISMATCH" not in master_log and "did not drain" not in master_log
    for n in (1, 2):
        assert re.search(r"drained: \d+ rows sent to the master", (run / f"locust-worker-{n}.log").read_text())
        assert not list((tmp_path / f"worker-{n}").iterdir())       # a worker wrote nothing where it ran


def _mock_settled(url: str) -> bool:
    import httpx

    try:
        health = httpx.get(f"{url}/health", timeout=2).json()
    except httpx.HTTPError:
        return False
    return bool(health["requests"] == health["ledger_rows"])


def test_rows_via_master_is_off_by_default_and_round_trips(tmp_path: Path) -> None:
    cfg = LoadConfig(run_dir=str(tmp_path), proxy_urls=["http://x"], master_key_file=None)
    assert cfg.rows_via_master is False
    assert LoadConfig.from_json(replace(cfg, rows_via_master=True).to_json()).rows_via_master is True
