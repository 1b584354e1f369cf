"""The nemesis with a fake Stack and a fake mock control: faults.csv events, call order, errors, stop()."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.mockllm.config import apply_patch, default_config
from harness.nemesis.kinds.mock import MockFault
from harness.nemesis.registry import fault_kind
from harness.nemesis.schedule import Nemesis
from harness.run.runfolder import FAULTS_COLUMNS, FAULTS_FILE
from harness.scenario.model import FaultWindow
from tests.conftest import FakeStack


class FakeMock:
    def __init__(self) -> None:
        self.config = default_config()
        self.patches: list[dict[str, Any]] = []

    def get_faults(self) -> dict[str, Any]:
        return self.config

    def set_faults(self, patch: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(patch)
        self.config = apply_patch(self.config, patch)
        return self.config


ENDPOINTS = SimpleNamespace(mock_url="http://127.0.0.1:1")


def _rows(run: Path) -> list[dict[str, str]]:
    path = run / FAULTS_FILE
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:   # created a moment ago, header not written yet (the nemesis's thread)
            return []
        assert tuple(reader.fieldnames) == FAULTS_COLUMNS
        return list(reader)


def _poll(check: Any, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, "deadline passed"
        time.sleep(0.02)


def test_schedule_events_and_call_order(tmp_path: Path) -> None:
    windows = [
        FaultWindow(kind="mock_error", at_s=0.05, duration_s=0.3, params={"status": 503, "probability": 0.5}),
        FaultWindow(kind="redis_latency", at_s=0.1, duration_s=0.3, params={"latency_ms": 50, "jitter_ms": 5}),
        FaultWindow(kind="kill_replica", at_s=0.15, duration_s=0.3, target=1),
        FaultWindow(kind="flush_redis", at_s=0.2),
        FaultWindow(kind="restart_redis", at_s=0.25, params={"flush": True}),
    ]
    stack, mock = FakeStack(), FakeMock()
    nemesis = Nemesis(windows, stack, ENDPOINTS, tmp_path, mock_control=mock)
    t0 = time.time()
    nemesis.start(t0)
    _poll(lambda: len(_rows(tmp_path)) == 10)
    nemesis.stop()
    assert stack.names() == [
        ("redis_fault", ("latency", (("direction", "down"), ("jitter_ms", 5), ("latency_ms", 50)))),
        ("kill_replica", (1,)),
        ("flush_redis", ()),
        ("restart_redis", (True,)),
        ("redis_fault", ("none", ())),       # end of redis_latency (0.4 s)
        ("restart_replica", (1,)),           # end of kill_replica (0.45 s)
        ("redis_fault", ("none", ())),       # the safety reset at stop()
    ]
    assert mock.patches == [{"error_503": {"p": 0.5}}, {"error_503": {"p": 0.0}}]
    rows = _rows(tmp_path)
    by_window: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_window.setdefault(row["window"], []).append(row)
    for i, w in enumerate(windows):
        start, end = by_window[str(i)]
        assert (start["event"], end["event"], start["kind"]) == ("start", "end", w.kind)
        assert float(start["t"]) - t0 >= w.at_s - 0.01
        assert float(end["t"]) - float(start["t"]) >= w.duration_s - 0.01
        assert not (start["note"] + end["note"]).startswith("error:") and "error: " not in end["note"]
    assert by_window["2"][0]["target"] == "1" and by_window["1"][0]["target"] == "redis"
    assert by_window["0"][0]["target"] == "mock"
    assert by_window["2"][1]["note"] == "replica 1 restarted, healthy after 1.5 s"
    assert by_window["4"][1]["note"] == "redis restarted (flush=True), down 0.3 s"
    assert by_window["1"][0]["params"] == '{"jitter_ms": 5, "latency_ms": 50}'     # as the scenario wrote them
    assert by_window["1"][0]["note"] == 'redis fault latency {"direction": "down", "jitter_ms": 5.0, ' \
                                        '"latency_ms": 50.0} on'
    assert nemesis.errors == []


def test_failing_action_is_recorded_not_raised(tmp_path: Path) -> None:
    windows = [FaultWindow(kind="kill_replica", at_s=0.0, duration_s=0.05, target=0),
               FaultWindow(kind="flush_redis", at_s=0.1)]
    stack = FakeStack(fail={"kill_replica"})
    nemesis = Nemesis(windows, stack, ENDPOINTS, tmp_path, mock_control=FakeMock())
    nemesis.start(time.time())
    _poll(lambda: len(_rows(tmp_path)) == 4)
    nemesis.stop()
    rows = _rows(tmp_path)
    kill_start = next(r for r in rows if r["window"] == "0" and r["event"] == "start")
    assert kill_start["note"] == "error: kill_replica start: RuntimeError: kill_replica broke"
    assert [n for n, _ in stack.names()] == ["kill_replica", "restart_replica", "flush_redis"]
    assert nemesis.errors == [{"window": 0, "kind": "kill_replica", "phase": "start",
                               "error": "RuntimeError: kill_replica broke"}]


def test_stop_ends_open_windows_and_skips_future_ones(tmp_path: Path) -> None:
    windows = [FaultWindow(kind="redis_timeout", at_s=0.0, duration_s=100),
               FaultWindow(kind="mock_slow_first_token", at_s=0.0, params={"delay_s": 3}),   # open until stop()
               FaultWindow(kind="kill_replica", at_s=50, duration_s=5, target=0)]
    stack, mock = FakeStack(), FakeMock()
    mock.config = apply_patch(mock.config, {"slow_first_token": {"p": 0.25, "delay_s": 1}})
    nemesis = Nemesis(windows, stack, ENDPOINTS, tmp_path, mock_control=mock)
    nemesis.start(time.time())
    _poll(lambda: len(_rows(tmp_path)) == 2)
    t = time.monotonic()
    nemesis.stop()
    assert time.monotonic() - t < 2
    rows = _rows(tmp_path)
    assert sorted((r["window"], r["event"]) for r in rows) == [("0", "end"), ("0", "start"), ("1", "end"),
                                                              ("1", "start")]
    assert all(r["note"].startswith("ended by stop()") for r in rows if r["event"] == "end")
    assert stack.names() == [("redis_fault", ("timeout", (("direction", "both"),))), ("redis_fault", ("none", ())),
                             ("redis_fault", ("none", ()))]
    assert mock.config["faults"]["slow_first_token"] == {"p": 0.25, "delay_s": 1}   # restored, not zeroed


@pytest.mark.parametrize(("kind", "params"), [
    ("mock_error", {"status": 429, "probability": 0.3, "retry_after_s": 2}),
    ("mock_error", {"status": 500}),
    ("mock_latency", {"latency_s": 2, "jitter_s": 0.5, "probability": 0.5}),
    ("mock_hang", {"probability": 0.1}),
    ("mock_reset", {}),
    ("mock_stream_cut", {"after_chunks": 3, "probability": 0.2}),
    ("mock_malformed", {"kind": "sse", "probability": 0.2}),
    ("mock_malformed", {"kind": "json"}),
    ("mock_slow_first_token", {"delay_s": 5}),
])
def test_mock_patch_is_accepted_by_the_mock(kind: str, params: dict[str, Any]) -> None:
    spec = fault_kind(kind)
    assert spec is not None
    fault = spec.parse(params)
    assert isinstance(fault, MockFault)
    config = apply_patch(default_config(), fault.patch())
    changed = {k for k, v in config["faults"].items() if v != default_config()["faults"][k]}
    assert len(changed) == 1


def test_failing_stop_reset_is_a_structured_error(tmp_path: Path) -> None:
    stack = FakeStack(fail={"redis_fault"})
    nemesis = Nemesis([FaultWindow(kind="redis_reset", at_s=0.0, duration_s=0.05)], stack, ENDPOINTS, tmp_path)
    nemesis.start(time.time())
    _poll(lambda: len(_rows(tmp_path)) == 2)
    nemesis.stop()
    assert [(e["window"], e["kind"], e["phase"]) for e in nemesis.errors] == [
        (0, "redis_reset", "start"), (0, "redis_reset", "end"), (None, "", "stop")]
    assert all(e["error"] == "RuntimeError: redis_fault broke" for e in nemesis.errors)
    assert _rows(tmp_path)[1]["note"] == "error: redis_reset end: RuntimeError: redis_fault broke"
