"""The mock LLM, driven over real HTTP as a real subprocess: what the client sees and what the ledger says."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.mockllm import MockControl, mock_command
from harness.mockllm.config import ConfigError, apply_patch, default_config
from harness.mockllm.injection import decide, from_header
from harness.mockllm.ledger import EVENTS_COLUMNS
from harness.mockllm.tokens import completion_tokens, prompt_tokens, spread
from harness.run.runfolder import LEDGER_COLUMNS, LEDGER_FILE, MOCK_EVENTS_FILE
from harness.util.ports import free_port
from harness.util.procs import group_alive, stop_group

REPO = Path(__file__).resolve().parents[2]
FAST_STREAM = {"stream": {"chunks": 8, "chunk_delay_s": 0.005}}


@dataclass
class Mock:
    url: str
    ledger: Path
    events: Path
    proc: subprocess.Popen[bytes]

    def rows(self) -> list[dict[str, str]]:
        if not self.ledger.exists():
            return []
        with open(self.ledger, newline="") as fh:
            return list(csv.DictReader(fh))

    def row(self, rid: str, deadline_s: float = 5.0) -> dict[str, str]:
        """The ledger row of request `rid`, polling until the mock has flushed it."""
        end = time.monotonic() + deadline_s
        while True:
            for row in self.rows():
                if row["request_id"] == rid:
                    return row
            if time.monotonic() > end:
                raise AssertionError(f"no ledger row for {rid} after {deadline_s} s: {self.rows()[-3:]}")
            time.sleep(0.05)

    def events_rows(self) -> list[dict[str, str]]:
        with open(self.events, newline="") as fh:
            return list(csv.DictReader(fh))


def start_mock(run: Path, seed: int = 1, config: dict[str, Any] | None = None) -> Mock:
    run.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ledger, events = run / LEDGER_FILE, run / MOCK_EVENTS_FILE
    cmd = mock_command(sys.executable, port, ledger, events, seed, config or {})
    log = open(run / "mock.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"mock exited with {proc.returncode}: {(run / 'mock.log').read_text()}")
        try:
            if httpx.get(url + "/health", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_mock(proc)
            raise AssertionError("mock not healthy after 20 s")
        time.sleep(0.05)
    return Mock(url=url, ledger=ledger, events=events, proc=proc)


def stop_mock(proc: subprocess.Popen[bytes]) -> int:
    stop_group(proc.pid, timeout=10)
    rc = proc.wait(timeout=5)
    assert not group_alive(proc.pid)
    return rc


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mock]:
    m = start_mock(tmp_path_factory.mktemp("mock"), config=FAST_STREAM)
    try:
        yield m
    finally:
        stop_mock(m.proc)


def rid() -> str:
    return "t-" + uuid.uuid4().hex[:12]


def chat(stream: bool = False, max_tokens: int | None = 10, user: str = "alice", content: str = "hello world!",
         **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}],
                            "user": user, "stream": stream}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(extra)
    return body


def headers(request_id: str, fault: str | None = None) -> dict[str, str]:
    h = {"x-harness-request-id": request_id}
    if fault:
        h["x-mock-fault"] = fault
    return h


def sse_data(lines: list[str]) -> list[str]:
    return [line[len("data: "):] for line in lines if line.startswith("data: ")]


# -- pure functions ------------------------------------------------------------------------------------
def test_token_arithmetic() -> None:
    assert prompt_tokens({"messages": [{"role": "user", "content": "abcde"}]}) == 2
    assert prompt_tokens({"messages": []}) == 1
    parts = [{"type": "text", "text": "abcd"}, {"type": "text", "text": "efgh"}]
    messages = [{"role": "system", "content": "x" * 8}, {"role": "user", "content": parts}]
    assert prompt_tokens({"messages": messages}) == 4
    assert completion_tokens({"max_tokens": 7}, 64) == 7
    assert completion_tokens({"max_completion_tokens": 9, "max_tokens": 7}, 64) == 9
    assert completion_tokens({}, 64) == 64
    assert spread(10, 4) == [3, 3, 2, 2]
    assert spread(2, 8) == [1, 1]


def test_decisions_are_a_function_of_seed_and_key() -> None:
    cfg = apply_patch(default_config(), {"error_500": 0.3, "stream_cut": {"p": 0.3, "after_chunks": 2},
                                         "latency": {"p": 0.5, "fixed_s": 0.1, "jitter_s": 0.2}})
    a = [decide(cfg, 42, f"r{i}#0") for i in range(300)]
    b = [decide(cfg, 42, f"r{i}#0") for i in range(300)]
    c = [decide(cfg, 43, f"r{i}#0") for i in range(300)]
    assert a == b
    assert a != c
    kinds = [p.kind for p in a]
    assert 60 < kinds.count("error_500") < 120 and 60 < kinds.count("stream_cut") < 120
    assert all(p.after_chunks == 2 for p in a if p.kind == "stream_cut")
    assert all(0.1 <= p.latency_s <= 0.3 for p in a if p.latency_s)


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        apply_patch(default_config(), {"error_500": 0.7, "error_503": 0.5})
    with pytest.raises(ConfigError):
        apply_patch(default_config(), {"teleport": 0.1})
    with pytest.raises(ConfigError):
        apply_patch(default_config(), {"stream": {"chunks": 0}})
    plan = from_header("latency:0.25, cut:3", default_config())
    assert (plan.kind, plan.after_chunks, plan.latency_s) == ("stream_cut", 3, 0.25)


def test_mock_command() -> None:
    cmd = mock_command("py", 1234, Path("/r/ledger.csv"), Path("/r/ev.csv"), 5, {"error_500": 0.1})
    assert cmd[:3] == ["py", "-m", "harness.mockllm"]
    assert cmd[cmd.index("--port") + 1] == "1234" and cmd[cmd.index("--seed") + 1] == "5"
    assert json.loads(cmd[cmd.index("--config") + 1]) == {"error_500": 0.1}
    assert "--config" not in mock_command("py", 1, Path("l"), Path("e"), 0, {})


# -- the happy paths ----------------------------------------------------------------------------------
def test_health_models_and_ledger_header(mock: Mock) -> None:
    assert httpx.get(mock.url + "/health").json()["status"] == "ok"
    models = httpx.get(mock.url + "/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "mock-gpt"
    with open(mock.ledger, newline="") as fh:
        assert tuple(next(csv.reader(fh))) == LEDGER_COLUMNS


def test_non_streaming_ok(mock: Mock) -> None:
    r = rid()
    resp = httpx.post(mock.url + "/v1/chat/completions", json=chat(max_tokens=12, content="x" * 40),
                      headers=headers(r))
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o-mini"
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}
    row = mock.row(r)
    assert row["outcome"] == "ok" and row["end_user"] == "alice" and row["stream"] == "0"
    assert (row["prompt_tokens"], row["completion_tokens_promised"], row["completion_tokens_delivered"]) == \
        ("10", "12", "12")
    assert float(row["t_start"]) <= float(row["t_end"])


def test_path_without_v1_and_end_user_from_header(mock: Mock) -> None:
    r = rid()
    body = chat(max_tokens=None)
    del body["user"]
    resp = httpx.post(mock.url + "/chat/completions", json=body,
                      headers={**headers(r), "x-litellm-end-user-id": "bob"})
    assert resp.json()["usage"]["completion_tokens"] == 64  # the configured default
    row = mock.row(r)
    assert row["end_user"] == "bob" and row["completion_tokens_promised"] == "64"


def test_streaming_ok_with_usage(mock: Mock) -> None:
    r = rid()
    with httpx.stream("POST", mock.url + "/v1/chat/completions", headers=headers(r),
                      json=chat(stream=True, max_tokens=20, stream_options={"include_usage": True})) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        data = sse_data(list(resp.iter_lines()))
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) == 8
    assert "".join(c["choices"][0]["delta"]["content"] for c in content).count("lo") == 20
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 20
    row = mock.row(r)
    assert (row["outcome"], row["stream"], row["chunks_sent"], row["completion_tokens_delivered"]) == \
        ("ok", "1", "8", "20")


def test_streaming_without_include_usage_has_no_usage(mock: Mock) -> None:
    with httpx.stream("POST", mock.url + "/v1/chat/completions", json=chat(stream=True)) as resp:
        data = sse_data(list(resp.iter_lines()))
    assert all("usage" not in json.loads(d) for d in data[:-1])


# -- faults -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fault", "status", "kind"), [("429:7", 429, "rate_limit"), ("500", 500, "error_500"),
                                                        ("error_503", 503, "error_503")])
def test_error_statuses(mock: Mock, fault: str, status: int, kind: str) -> None:
    r = rid()
    resp = httpx.post(mock.url + "/v1/chat/completions", json=chat(), headers=headers(r, fault))
    assert resp.status_code == status
    assert "error" in resp.json()
    if status == 429:
        assert resp.headers["retry-after"] == "7"
    row = mock.row(r)
    assert row["outcome"] == f"fault:{kind}" and row["completion_tokens_delivered"] == "0"


def test_latency(mock: Mock) -> None:
    r = rid()
    t0 = time.monotonic()
    resp = httpx.post(mock.url + "/v1/chat/completions", json=chat(), headers=headers(r, "latency:0.3"))
    assert resp.status_code == 200 and time.monotonic() - t0 >= 0.3
    row = mock.row(r)
    assert row["outcome"] == "ok" and float(row["t_end"]) - float(row["t_start"]) >= 0.3


def test_hang_until_the_client_gives_up(mock: Mock) -> None:
    r = rid()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(mock.url + "/v1/chat/completions", json=chat(), headers=headers(r, "hang"), timeout=0.5)
    row = mock.row(r)
    assert row["outcome"] == "fault:hang" and float(row["t_end"]) - float(row["t_start"]) >= 0.4


def test_reset_before_the_response(mock: Mock) -> None:
    r = rid()
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.post(mock.url + "/v1/chat/completions", json=chat(), headers=headers(r, "reset"))
    assert mock.row(r)["outcome"] == "fault:reset"


def test_stream_cut_after_k_chunks(mock: Mock) -> None:
    r = rid()
    got: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError), \
            httpx.stream("POST", mock.url + "/v1/chat/completions", json=chat(stream=True, max_tokens=16),
                         headers=headers(r, "stream_cut:3")) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            got.append(line)
    data = sse_data(got)
    assert len(data) == 3 and "[DONE]" not in data
    row = mock.row(r)
    assert (row["outcome"], row["chunks_sent"], row["completion_tokens_delivered"]) == ("fault:stream_cut", "3", "6")


def test_non_stream_cut_truncates_the_body(mock: Mock) -> None:
    r = rid()
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(mock.url + "/v1/chat/completions", json=chat(), headers=headers(r, "cut"))
    assert mock.row(r)["outcome"] == "fault:stream_cut"


def test_malformed_json_body(mock: Mock) -> None:
    r = rid()
    resp = httpx.post(mock.url + "/v1/chat/completions", json=chat(), headers=headers(r, "malformed_json"))
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.text)
    assert mock.row(r)["outcome"] == "fault:malformed_json"


def test_malformed_json_frame_in_a_stream(mock: Mock) -> None:
    r = rid()
    with httpx.stream("POST", mock.url + "/v1/chat/completions", json=chat(stream=True),
                      headers=headers(r, "malformed_json:2")) as resp:
        data = sse_data(list(resp.iter_lines()))
    with pytest.raises(json.JSONDecodeError):
        json.loads(data[2])
    assert mock.row(r)["outcome"] == "fault:malformed_json"


def test_malformed_sse_frame(mock: Mock) -> None:
    r = rid()
    with httpx.stream("POST", mock.url + "/v1/chat/completions", json=chat(stream=True),
                      headers=headers(r, "malformed_sse:1")) as resp:
        lines = list(resp.iter_lines())
    frames = "\n".join(lines).split("\n\n")
    assert frames[0].startswith("data: ") and not frames[1].startswith("data:")
    assert mock.row(r)["outcome"] == "fault:malformed_sse"


def test_bad_fault_header_is_a_400(mock: Mock) -> None:
    resp = httpx.post(mock.url + "/v1/chat/completions", json=chat(), headers=headers(rid(), "teleport"))
    assert resp.status_code == 400


# -- clients that walk away, slow first tokens --------------------------------------------------------
def test_client_disconnects_mid_stream(tmp_path: Path) -> None:
    m = start_mock(tmp_path, config={"stream": {"chunks": 20, "chunk_delay_s": 0.1}})
    try:
        r = rid()
        seen = 0
        with httpx.stream("POST", m.url + "/v1/chat/completions", json=chat(stream=True, max_tokens=40),
                          headers=headers(r)) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    seen += 1
                if seen == 3:
                    break  # leaving the block closes the connection mid-stream
        row = m.row(r)
        assert row["outcome"] == "client_gone"
        assert 3 <= int(row["chunks_sent"]) <= 4
        assert int(row["completion_tokens_delivered"]) == 2 * int(row["chunks_sent"])
        assert row["completion_tokens_promised"] == "40"
    finally:
        stop_mock(m.proc)


def test_slow_first_token_and_walk_away_before_it(mock: Mock) -> None:
    r = rid()
    t0 = time.monotonic()
    with httpx.stream("POST", mock.url + "/v1/chat/completions", json=chat(stream=True),
                      headers=headers(r, "slow_first_token:30")) as resp:
        assert resp.status_code == 200 and time.monotonic() - t0 < 5  # headers come at once
    row = mock.row(r)
    assert (row["outcome"], row["chunks_sent"]) == ("client_gone", "0")


# -- determinism, run-time control, shutdown ----------------------------------------------------------
SEEDED = {"faults": {"rate_limit": 0.1, "error_500": 0.1, "error_503": 0.1, "stream_cut": 0.1,
                     "malformed_json": 0.1}, "stream": {"chunk_delay_s": 0.0}}


def _outcomes(run: Path, seed: int, with_ids: bool) -> list[str]:
    m = start_mock(run, seed=seed, config=SEEDED)
    try:
        with httpx.Client(base_url=m.url) as client:
            for i in range(80):
                h = {"x-harness-request-id": f"req-{i}"} if with_ids else {}
                try:
                    client.post("/v1/chat/completions", json=chat(stream=i % 2 == 0), headers=h)
                except httpx.HTTPError:
                    pass
    finally:
        assert stop_mock(m.proc) == 0
    return [row["outcome"] for row in m.rows()]


@pytest.mark.parametrize("with_ids", [True, False])
def test_same_seed_same_decisions(tmp_path: Path, with_ids: bool) -> None:
    first = _outcomes(tmp_path / "a", 11, with_ids)
    again = _outcomes(tmp_path / "b", 11, with_ids)
    other = _outcomes(tmp_path / "c", 12, with_ids)
    assert len(first) == 80 and first == again
    assert first != other
    assert len(set(first)) >= 5  # the faults really happened


def test_retry_of_the_same_request_id_rolls_again() -> None:
    cfg = apply_patch(default_config(), {"error_500": 0.5})
    kinds = {decide(cfg, 3, f"same#{n}").kind for n in range(40)}
    assert kinds == {None, "error_500"}


def test_run_time_control_is_applied_and_logged(tmp_path: Path) -> None:
    m = start_mock(tmp_path, seed=5, config={"error_503": 0.0})
    try:
        ctl = MockControl(m.url)
        assert ctl.get_faults()["faults"]["error_500"]["p"] == 0.0
        t_before = time.time()
        cfg = ctl.set_faults({"error_500": 1.0})
        assert cfg["faults"]["error_500"]["p"] == 1.0
        assert httpx.post(m.url + "/v1/chat/completions", json=chat()).status_code == 500
        cfg = ctl.set_faults({"faults": {"error_500": 0.0, "latency": {"p": 1, "fixed_s": 0.01}},
                              "stream": {"chunks": 2}})
        assert cfg["stream"]["chunks"] == 2 and cfg["faults"]["latency"]["fixed_s"] == 0.01
        with pytest.raises(ValueError):
            ctl.set_faults({"error_500": 2.0})
        assert httpx.post(m.url + "/v1/chat/completions", json=chat()).status_code == 200
        assert ctl.reset()["faults"]["latency"]["p"] == 0.0
        events = m.events_rows()
        assert tuple(events[0]) == EVENTS_COLUMNS
        assert [e["event"] for e in events] == ["start", "set_faults", "set_faults", "reset"]
        assert all(float(e["t"]) >= t_before for e in events[1:])
        assert json.loads(events[1]["change"]) == {"error_500": 1.0}
        assert json.loads(events[1]["config"])["faults"]["error_500"]["p"] == 1.0
    finally:
        assert stop_mock(m.proc) == 0
    assert m.events_rows()[-1]["event"] == "stop"
    assert [row["outcome"] for row in m.rows()] == ["fault:error_500", "ok"]


def test_sigterm_flushes_the_ledger_and_ends_hanging_calls(tmp_path: Path) -> None:
    m = start_mock(tmp_path, config={"hang": 1.0})
    r = rid()
    # The call hangs; stop the mock while it does: the client sees the connection end, the row is written.
    with httpx.Client(base_url=m.url, timeout=10) as client, pytest.raises(httpx.HTTPError):
        _post_then_stop(client, m, r)
    assert m.proc.returncode == 0
    row = m.row(r, deadline_s=0)
    assert row["outcome"] == "fault:hang"


def _post_then_stop(client: httpx.Client, m: Mock, r: str) -> None:
    import threading

    def stopper() -> None:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if httpx.get(m.url + "/health").json()["requests"] >= 1:
                break
            time.sleep(0.02)
        os.kill(m.proc.pid, signal.SIGTERM)

    t = threading.Thread(target=stopper)
    t.start()
    try:
        client.post("/v1/chat/completions", json=chat(), headers=headers(r))
    finally:
        t.join()
        m.proc.wait(timeout=10)
        stop_mock(m.proc)


def test_ledger_and_events_export_over_http(mock: Mock, tmp_path: Path) -> None:
    """GET /control/ledger streams the rows since a time of users with a prefix (what the external backend reads
    when it does not share the mock's disk); /control/events the control events; MockControl.download saves them."""
    t0 = time.time()
    tag = "exp" + uuid.uuid4().hex[:6]
    ids = {}
    for user in (f"{tag}-a", f"{tag}-b", "someone-else"):
        r = rid()
        assert httpx.post(mock.url + "/v1/chat/completions", json=chat(user=user), headers=headers(r)).status_code \
            == 200
        ids[user] = r
    control = MockControl(mock.url)
    control.set_faults({"error_500": 0.0})
    out = tmp_path / "ledger.csv"
    assert control.download("ledger", out, since=t0, end_user_prefix=tag + "-") == 2
    with open(out, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == LEDGER_COLUMNS
        rows = list(reader)
    assert sorted(r["request_id"] for r in rows) == sorted([ids[f"{tag}-a"], ids[f"{tag}-b"]])
    # no prefix: every user since t0 (other tests' rows are older than t0)
    assert control.download("ledger", out, since=t0) == 3
    # a later `since` excludes them all, but the header stays
    assert control.download("ledger", out, since=time.time() + 60) == 0
    assert out.read_text().splitlines() == [",".join(LEDGER_COLUMNS)]
    events = tmp_path / "events.csv"
    assert control.download("events", events, since=t0) >= 1
    with open(events, newline="") as fh:
        assert [e["event"] for e in csv.DictReader(fh)][-1] == "set_faults"
    assert httpx.get(mock.url + "/control/ledger", params={"since": "yesterday"}).status_code == 400
