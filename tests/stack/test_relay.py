"""The Redis fault relay against a real redis-server: pass-through, latency (measured), timeout, reset, down."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import redis

from harness.stack.redis_relay import RelayControl
from harness.util.procs import ProcessGroup
from tests.realservers import redis_server, relay_process


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, RelayControl]]:
    work = tmp_path_factory.mktemp("relay")
    group = ProcessGroup(work / "state")
    try:
        with redis_server(group, work) as redis_port, relay_process(group, work, redis_port) as (port, url):
            yield redis_port, port, RelayControl(url)
    finally:
        group.stop_all()


@pytest.fixture(autouse=True)
def _clear(relay: tuple[int, int, RelayControl]) -> Iterator[None]:
    relay[2].clear()
    yield
    relay[2].clear()


def _client(port: int, timeout: float = 2.0) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=timeout, socket_connect_timeout=timeout)


def _rtt(client: redis.Redis, n: int = 20) -> float:
    client.ping()
    t0 = time.perf_counter()
    for _ in range(n):
        client.ping()
    return (time.perf_counter() - t0) / n


def test_passthrough(relay: tuple[int, int, RelayControl]) -> None:
    redis_port, port, ctl = relay
    c = _client(port)
    c.set("relay:k", "1.5")
    assert c.incrbyfloat("relay:k", 2) == pytest.approx(3.5)
    assert _client(redis_port).get("relay:k") == b"3.5"
    big = b"x" * 2_000_000
    c.set("relay:big", big)
    assert c.get("relay:big") == big
    health = ctl.health()
    assert health["ok"] and health["fault"]["kind"] == "none" and health["forwarded_bytes"] > 2_000_000


def test_latency_is_added(relay: tuple[int, int, RelayControl]) -> None:
    _, port, ctl = relay
    c = _client(port)
    base = _rtt(c)
    ctl.set_fault("latency", latency_ms=40, jitter_ms=5)
    assert ctl.fault() == {"kind": "latency", "latency_ms": 40.0, "jitter_ms": 5.0, "direction": "down"}
    slow = _rtt(c, 10)
    assert 0.035 <= slow - base <= 0.1, (base, slow)
    # jitter must not reorder replies: pipelined commands come back in order
    pipe = c.pipeline(transaction=False)
    for i in range(50):
        pipe.set(f"relay:o{i}", i)
        pipe.get(f"relay:o{i}")
    assert pipe.execute()[1::2] == [str(i).encode() for i in range(50)]
    ctl.set_fault("latency", latency_ms=30, direction="both")
    assert _rtt(c, 5) - base >= 0.055
    ctl.clear()
    assert _rtt(c) < base + 0.01


def test_timeout_holds_then_recovers(relay: tuple[int, int, RelayControl]) -> None:
    _, port, ctl = relay
    held = _client(port, timeout=0.3)
    held.ping()
    ctl.set_fault("timeout")
    t0 = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        held.ping()       # existing connection: nothing comes back
    assert time.monotonic() - t0 >= 0.29
    fresh = _client(port, timeout=0.3)
    with pytest.raises(redis.TimeoutError):
        fresh.ping()      # new connection: accepted, then nothing
    assert ctl.health()["dropped_bytes"] > 0
    ctl.clear()
    assert _client(port).ping()
    assert held.ping()    # redis-py reconnects after its timeout


def test_reset_existing_and_new(relay: tuple[int, int, RelayControl]) -> None:
    _, port, ctl = relay
    c = _client(port)
    c.ping()
    before = ctl.health()["resets"]
    ctl.set_fault("reset")
    with pytest.raises(redis.ConnectionError):
        c.execute_command("PING")   # the pooled connection was reset
    with pytest.raises(redis.ConnectionError):
        _client(port).ping()
    assert ctl.health()["resets"] >= before + 2
    ctl.clear()
    assert c.ping()


def test_bad_fault_is_rejected(relay: tuple[int, int, RelayControl]) -> None:
    ctl = relay[2]
    with pytest.raises(RuntimeError, match="kind must be one of"):
        ctl.set_fault("explode")
    with pytest.raises(RuntimeError, match="latncy_ms: Extra inputs are not permitted"):
        ctl.set_fault("latency", latncy_ms=3)
    with pytest.raises(RuntimeError, match="direction"):
        ctl.set_fault("timeout", direction="sideways")
    with pytest.raises(RuntimeError, match="none takes no params"):
        ctl.set_fault("none", latency_ms=3)
    assert ctl.fault() == {"kind": "none"}


def test_timeout_default_drops_both_ways_down_only_loses_replies(relay: tuple[int, int, RelayControl]) -> None:
    redis_port, port, ctl = relay
    direct = _client(redis_port)
    direct.delete("relay:t-both", "relay:t-down")
    both, down = _client(port, timeout=0.3), _client(port, timeout=0.3)
    assert both.ping() and down.ping()     # connected (and handshaken) before the fault
    ctl.set_fault("timeout")
    assert ctl.fault() == {"kind": "timeout", "direction": "both"}
    with pytest.raises(redis.TimeoutError):
        both.set("relay:t-both", "1")
    ctl.set_fault("timeout", direction="down")
    with pytest.raises(redis.TimeoutError):
        down.set("relay:t-down", "1")
    # down only: the command reached Redis and ran, only its reply was lost; both: it never arrived
    assert direct.get("relay:t-down") == b"1"
    assert direct.get("relay:t-both") is None


def test_down_refuses_connections_then_recovers(relay: tuple[int, int, RelayControl]) -> None:
    _, port, ctl = relay
    held = _client(port)
    assert held.ping()
    ctl.set_fault("down")
    assert ctl.health()["listening"] is False and ctl.fault() == {"kind": "down"}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(redis.ConnectionError, match="refused"):
        _client(port).ping()
    with pytest.raises(redis.ConnectionError):
        held.execute_command("PING")     # its connection was dropped, and reconnecting is refused
    ctl.clear()
    assert ctl.health()["listening"] is True
    assert _client(port).ping()
    assert held.ping()


