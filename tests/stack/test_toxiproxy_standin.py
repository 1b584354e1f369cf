"""The Toxiproxy stand-in: its API (Toxiproxy's shapes and codes), ToxiproxyControl (the real client) driving it
over loopback sockets against a real redis-server, and the same observable behaviour as the relay driven by
RelayControl for every link fault kind."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.errors import StackError
from harness.nemesis.kinds.redis import RedisLatency, RedisReset, RedisTimeout
from harness.stack.redis_relay import RelayControl
from harness.stack.toxiproxy import TOXIPROXY_REDIS_PROXY, ToxiproxyControl
from harness.stack.toxiproxy_standin import (
    ApiError,
    ProxyConfig,
    StandIn,
    Toxic,
    load_config,
    main,
    parse_args,
    parse_toxic,
    relay_fault,
)
from harness.util.ports import free_port
from harness.util.procs import ProcessGroup, http_ok, wait_until
from tests.realservers import redis_server, relay_process

REPO = Path(__file__).resolve().parents[2]


# -- the rig: redis-server, the stand-in (as the Compose service runs it) and the relay, all on loopback ------
@dataclass
class Rig:
    redis_port: int
    api: str                 # the stand-in's API URL
    proxy_port: int          # proxy "redis"
    spare_port: int          # proxy "spare": disabled in the config
    relay_port: int
    relay: RelayControl
    http: httpx.Client

    def toxi(self, proxy: str = TOXIPROXY_REDIS_PROXY) -> ToxiproxyControl:
        return ToxiproxyControl(self.http, self.api, proxy)


def _ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port(exclude=ports))
    return sorted(ports)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("standin")
    group = ProcessGroup(work / "state")
    api_port, proxy_port, spare_port = _ports(3)
    try:
        with redis_server(group, work) as redis_port, relay_process(group, work, redis_port) as (relay_port, url):
            config = work / "toxiproxy.json"
            config.write_text(json.dumps([
                {"name": "redis", "listen": f"127.0.0.1:{proxy_port}", "upstream": f"127.0.0.1:{redis_port}",
                 "enabled": True},
                {"name": "spare", "listen": f"127.0.0.1:{spare_port}", "upstream": f"127.0.0.1:{redis_port}",
                 "enabled": False},
            ]))
            # the Compose service's command line, with the API on loopback
            group.start("standin", [sys.executable, "-m", "harness.stack.toxiproxy_standin", "-host=127.0.0.1",
                                    f"-port={api_port}", f"-config={config}"],
                        log=work / "standin.log", port=api_port, cwd=REPO)
            api = f"http://127.0.0.1:{api_port}"
            wait_until(lambda: http_ok(f"{api}/version"), deadline_s=15, what="toxiproxy stand-in", interval=0.05,
                       still_alive=lambda: group.alive("standin"), on_fail=lambda: group.log_tail("standin"))
            with httpx.Client(timeout=5.0) as http:
                yield Rig(redis_port, api, proxy_port, spare_port, relay_port, RelayControl(url), http)
    finally:
        group.stop_all()


def _restore(rig: Rig) -> None:
    """Back to the config's state: /reset (every proxy enabled, no toxic), then "spare" disabled again."""
    assert rig.http.post(f"{rig.api}/reset").status_code == 204
    assert rig.http.post(f"{rig.api}/proxies/spare", json={"enabled": False}).status_code == 200
    rig.relay.clear()


@pytest.fixture(autouse=True)
def _clean(rig: Rig) -> Iterator[None]:
    _restore(rig)
    yield
    _restore(rig)


# -- raw RESP over sockets: every outcome is a plain category (reply / silent / reset / closed / refused) -------
def _cmd(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _exchange(sock: socket.socket, payload: bytes, timeout: float = 0.4) -> str:
    sock.settimeout(timeout)
    try:
        sock.sendall(payload)
        data = sock.recv(4096)
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except TimeoutError:
        return "silent"
    return "reply" if data else "closed"


def _connect(port: int) -> socket.socket | None:
    """A connection, or None when it is refused."""
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=2)
    except ConnectionRefusedError:
        return None


def _fresh(port: int, payload: bytes) -> str:
    """A new connection's fate: refused, or the outcome of its first command."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:          # reset right after accept, before connect() returned here
        return "reset"
    try:
        return _exchange(sock, payload)
    finally:
        sock.close()


def _rtt(sock: socket.socket, n: int = 5) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        assert _exchange(sock, _cmd("PING"), timeout=2.0) == "reply"
    return (time.perf_counter() - t0) / n


@dataclass(frozen=True)
class Seen:
    held: str            # a connection made before the fault: its next command (reply / silent / dropped)
    new: str             # a connection made during the fault: refused, or its first command
    executed: bool       # did the held connection's SET reach Redis?
    legs_delayed: int    # held connection's round trip, in units of the case's latency (0 without one)


def _observe(port: int, redis_port: int, apply: Callable[[], None], key: str, latency_ms: float = 40.0) -> Seen:
    direct = socket.create_connection(("127.0.0.1", redis_port), timeout=2)
    held = socket.create_connection(("127.0.0.1", port), timeout=2)
    try:
        assert _exchange(direct, _cmd("DEL", key, key + ":new"), timeout=2.0) == "reply"
        base = _rtt(held)
        apply()
        outcome = _exchange(held, _cmd("SET", key, "1"))
        # FIN or RST: a connection closed while our command is on its way is reset by the kernel, so which one
        # arrives is a race (on Toxiproxy too); that it is gone is not
        outcome = "dropped" if outcome in ("closed", "reset") else outcome
        legs = round(max(0.0, _rtt(held) - base) * 1000 / latency_ms) if outcome == "reply" else 0
        new_outcome = _fresh(port, _cmd("SET", key + ":new", "1"))
        direct.settimeout(2.0)
        direct.sendall(_cmd("EXISTS", key))
        executed = direct.recv(64) == b":1\r\n"
        return Seen(outcome, new_outcome, executed, legs)
    finally:
        held.close()
        direct.close()


# (kind, params) -> what a client sees, the same on both backends
CASES: list[tuple[str, dict[str, Any], Seen]] = [
    ("none", {}, Seen("reply", "reply", True, 0)),
    ("latency", {"latency_ms": 40}, Seen("reply", "reply", True, 1)),                      # down: replies late
    ("latency", {"latency_ms": 40, "direction": "up"}, Seen("reply", "reply", True, 1)),
    ("latency", {"latency_ms": 40, "direction": "both"}, Seen("reply", "reply", True, 2)),
    ("timeout", {}, Seen("silent", "silent", False, 0)),                                   # both: nothing gets through
    ("timeout", {"direction": "down"}, Seen("silent", "silent", True, 0)),                 # runs, reply lost
    ("timeout", {"direction": "up"}, Seen("silent", "silent", False, 0)),
    ("reset", {}, Seen("dropped", "reset", False, 0)),                                     # reset, even new ones
    ("down", {}, Seen("dropped", "refused", False, 0)),                                    # gone, new ones refused
]


@pytest.mark.parametrize(("kind", "params", "expected"), CASES,
                         ids=[f"{k}-{p.get('direction', 'default')}" for k, p, _ in CASES])
def test_toxiproxy_on_the_standin_behaves_like_the_relay(rig: Rig, kind: str, params: dict[str, Any],
                                                         expected: Seen) -> None:
    key = f"standin:{kind}:{params.get('direction', 'default')}"
    via_toxiproxy = _observe(rig.proxy_port, rig.redis_port, lambda: rig.toxi().set_fault(kind, **params),
                             key + ":toxi")
    via_relay = _observe(rig.relay_port, rig.redis_port, lambda: rig.relay.set_fault(kind, **params), key + ":relay")
    assert via_toxiproxy == via_relay == expected
    # clearing the fault brings plain forwarding back on both
    rig.toxi().set_fault("none")
    rig.relay.clear()
    for port in (rig.proxy_port, rig.relay_port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        try:
            assert _exchange(sock, _cmd("PING"), timeout=2.0) == "reply"
        finally:
            sock.close()


def test_latency_is_measurably_added(rig: Rig) -> None:
    sock = socket.create_connection(("127.0.0.1", rig.proxy_port), timeout=2)
    try:
        base = _rtt(sock, 10)
        rig.toxi().set_fault("latency", latency_ms=50, jitter_ms=5)
        slow = _rtt(sock, 6)
        assert 0.045 <= slow - base <= 0.15, (base, slow)
        rig.toxi().set_fault("none")
        assert _rtt(sock, 10) < base + 0.02
    finally:
        sock.close()


# -- the API: Toxiproxy's shapes and status codes ------------------------------------------------------------
def test_version_and_proxies(rig: Rig) -> None:
    version = rig.http.get(f"{rig.api}/version")
    assert version.status_code == 200 and version.json()["version"].startswith("2.12.0")
    proxies = rig.http.get(f"{rig.api}/proxies").json()
    assert proxies == {
        "redis": {"name": "redis", "listen": f"127.0.0.1:{rig.proxy_port}",
                  "upstream": f"127.0.0.1:{rig.redis_port}", "enabled": True, "toxics": []},
        "spare": {"name": "spare", "listen": f"127.0.0.1:{rig.spare_port}",
                  "upstream": f"127.0.0.1:{rig.redis_port}", "enabled": False, "toxics": []},
    }
    assert rig.http.get(f"{rig.api}/proxies/redis").json() == proxies["redis"]


def test_toxic_crud_with_toxiproxy_defaults(rig: Rig) -> None:
    base = f"{rig.api}/proxies/redis/toxics"
    created = rig.http.post(base, json={"type": "latency", "attributes": {"latency": 20}})
    assert created.status_code == 200
    assert created.json() == {"attributes": {"latency": 20, "jitter": 0}, "name": "latency_downstream",
                              "type": "latency", "stream": "downstream", "toxicity": 1.0}
    up = rig.http.post(base, json={"name": "up", "type": "latency", "stream": "Upstream",
                                   "attributes": {"latency": 20, "jitter": 0}})
    assert up.status_code == 200 and up.json()["stream"] == "Upstream"
    assert [t["name"] for t in rig.http.get(base).json()] == ["up", "latency_downstream"]   # upstream first
    assert rig.http.get(f"{base}/up").json()["attributes"] == {"latency": 20, "jitter": 0}
    assert rig.http.get(f"{rig.api}/proxies/redis").json()["toxics"] == rig.http.get(base).json()
    again = rig.http.post(base, json={"name": "up", "type": "latency", "stream": "downstream"})
    assert again.status_code == 409 and again.json() == {"error": "toxic already exists", "status": 409}
    deleted = rig.http.delete(f"{base}/up")
    assert deleted.status_code == 204 and deleted.content == b""
    gone = rig.http.get(f"{base}/up")
    assert gone.status_code == 404 and gone.json() == {"error": "toxic not found", "status": 404}
    assert rig.http.delete(f"{base}/up").status_code == 404
    assert [t["name"] for t in rig.http.get(base).json()] == ["latency_downstream"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/proxies/nope"), ("POST", "/proxies/nope"),
                                              ("GET", "/proxies/nope/toxics"), ("POST", "/proxies/nope/toxics"),
                                              ("GET", "/proxies/nope/toxics/x"), ("DELETE", "/proxies/nope/toxics/x")])
def test_unknown_proxy_is_404(rig: Rig, method: str, path: str) -> None:
    resp = rig.http.request(method, rig.api + path, json={"type": "latency"} if method == "POST" else None)
    assert resp.status_code == 404 and resp.json() == {"error": "proxy not found", "status": 404}


def test_toxiproxy_control_reports_an_unknown_proxy(rig: Rig) -> None:
    with pytest.raises(StackError, match="HTTP 404"):
        rig.toxi("nope").set_fault("latency", latency_ms=10)


BAD_TOXICS: list[tuple[dict[str, Any], str]] = [
    ({"type": "meltdown"}, "invalid toxic type"),
    ({"stream": "sideways", "type": "latency"}, "stream was invalid, can be either upstream or downstream"),
    ({"type": "bandwidth", "attributes": {"rate": 10}}, "bandwidth is not supported by the Toxiproxy stand-in"),
    ({"type": "latency", "toxicity": 0.5, "attributes": {"latency": 10}}, "toxicity 0.5 is not supported"),
    ({"type": "timeout", "attributes": {"timeout": 100}}, "timeout 100 is not supported"),
    ({"type": "reset_peer", "attributes": {"timeout": 5}}, "timeout 5 is not supported"),
    ({"type": "latency", "attributes": {"latency": 10.5}}, "attributes.latency must be an integer"),
    ({"type": "latency", "attributes": {"latency": -1}}, "latency must be >= 0"),
    ({"type": "latency", "attributes": {"latncy": 10}}, "unknown attribute(s) latncy"),
    ({"type": "latency", "name": 3}, "name must be a string"),
]


@pytest.mark.parametrize(("body", "message"), BAD_TOXICS)
def test_bad_toxic_is_400_and_changes_nothing(rig: Rig, body: dict[str, Any], message: str) -> None:
    resp = rig.http.post(f"{rig.api}/proxies/redis/toxics", json=body)
    assert resp.status_code == 400 and resp.json()["status"] == 400
    assert message in resp.json()["error"]
    assert rig.http.get(f"{rig.api}/proxies/redis/toxics").json() == []


def test_bad_json_is_400(rig: Rig) -> None:
    resp = rig.http.post(f"{rig.api}/proxies/redis/toxics", content=b"{not json")
    assert resp.status_code == 400 and resp.json()["error"].startswith("bad request body: ")
    resp = rig.http.post(f"{rig.api}/proxies/redis", json={"enabled": "no"})
    assert resp.status_code == 400 and "enabled must be a boolean" in resp.json()["error"]


@pytest.mark.parametrize(("first", "second", "message"), [
    ({"type": "latency", "stream": "upstream", "attributes": {"latency": 10}},
     {"type": "timeout", "stream": "downstream"}, "cannot combine toxics of types latency and timeout"),
    ({"type": "latency", "attributes": {"latency": 10}},
     {"name": "more", "type": "latency", "attributes": {"latency": 10}}, "cannot stack two latency toxics"),
    ({"type": "latency", "attributes": {"latency": 10}},
     {"type": "latency", "stream": "upstream", "attributes": {"latency": 30}}, "different latency toxics"),
    ({"type": "reset_peer"}, {"type": "timeout", "stream": "upstream"}, "reset_peer and timeout"),
])
def test_inexpressible_combination_is_400_and_keeps_the_first(rig: Rig, first: dict[str, Any],
                                                              second: dict[str, Any], message: str) -> None:
    base = f"{rig.api}/proxies/redis/toxics"
    assert rig.http.post(base, json=first).status_code == 200
    resp = rig.http.post(base, json=second)
    assert resp.status_code == 400 and message in resp.json()["error"]
    assert [t["type"] for t in rig.http.get(base).json()] == [first["type"]]


def test_unused_toxiproxy_endpoints_are_501(rig: Rig) -> None:
    resp = rig.http.post(f"{rig.api}/proxies", json={"name": "x", "upstream": "127.0.0.1:1"})
    assert resp.status_code == 501 and "not implemented by the Toxiproxy stand-in" in resp.json()["error"]
    moved = rig.http.post(f"{rig.api}/proxies/redis", json={"listen": "127.0.0.1:1"})
    assert moved.status_code == 501 and "listen" in moved.json()["error"]
    assert rig.http.get(f"{rig.api}/nothing").status_code == 404


def test_disable_keeps_toxics_and_enable_brings_them_back(rig: Rig) -> None:
    ctl = rig.toxi()
    ctl.set_fault("timeout")
    disabled = rig.http.post(f"{rig.api}/proxies/redis", json={"enabled": False})
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert len(disabled.json()["toxics"]) == 2
    assert _connect(rig.proxy_port) is None                      # down: refused
    assert rig.http.post(f"{rig.api}/proxies/redis", json={"enabled": True}).json()["enabled"] is True
    sock = _connect(rig.proxy_port)
    assert sock is not None
    try:
        assert _exchange(sock, _cmd("PING")) == "silent"         # the timeout toxics are in force again
    finally:
        sock.close()


def test_toxiproxy_control_enables_a_disabled_proxy(rig: Rig) -> None:
    assert _connect(rig.spare_port) is None
    rig.toxi("spare").set_fault("none")
    sock = _connect(rig.spare_port)
    assert sock is not None
    try:
        assert _exchange(sock, _cmd("PING"), timeout=2.0) == "reply"
    finally:
        sock.close()


def test_reset_enables_every_proxy_and_removes_every_toxic(rig: Rig) -> None:
    rig.toxi().set_fault("latency", latency_ms=30, direction="both")
    rig.toxi("spare").set_fault("reset")
    rig.http.post(f"{rig.api}/proxies/redis", json={"enabled": False})
    assert _connect(rig.proxy_port) is None
    resp = rig.http.post(f"{rig.api}/reset")
    assert resp.status_code == 204 and resp.content == b""
    proxies = rig.http.get(f"{rig.api}/proxies").json()
    assert all(p["enabled"] and p["toxics"] == [] for p in proxies.values())
    for port in (rig.proxy_port, rig.spare_port):
        sock = _connect(port)
        assert sock is not None
        try:
            assert _exchange(sock, _cmd("PING"), timeout=2.0) == "reply"
            assert _rtt(sock) < 0.03                             # no latency left
        finally:
            sock.close()


# -- pure parts: the toxic → relay fault mapping, the config file, the flags -------------------------------------
def _toxic(toxic_type: str, stream: str = "downstream", **attributes: int) -> Toxic:
    return parse_toxic({"type": toxic_type, "stream": stream, "attributes": attributes})


def test_relay_fault_mapping() -> None:
    assert relay_fault(True, []) == ("none", None)
    assert relay_fault(False, [_toxic("latency", latency=5)])[0] == "down"
    assert relay_fault(True, [_toxic("latency", latency=5, jitter=2)]) == (
        "latency", RedisLatency(latency_ms=5, jitter_ms=2, direction="down"))
    assert relay_fault(True, [_toxic("latency", "upstream", latency=5)])[1] == RedisLatency(latency_ms=5,
                                                                                             direction="up")
    assert relay_fault(True, [_toxic("timeout", "upstream"), _toxic("timeout")]) == (
        "timeout", RedisTimeout(direction="both"))
    assert relay_fault(True, [_toxic("reset_peer", "upstream")]) == ("reset", RedisReset())
    with pytest.raises(ApiError, match="cannot combine"):
        relay_fault(True, [_toxic("timeout"), _toxic("reset_peer", "upstream")])


def test_toxiproxy_control_timeout_maps_to_the_relays_default() -> None:
    """redis_timeout means one thing: ToxiproxyControl's toxics for it are the relay's default timeout."""
    default = RedisTimeout()
    toxics = [_toxic("timeout", "downstream"), _toxic("timeout", "upstream")]     # what ToxiproxyControl adds
    assert relay_fault(True, toxics) == ("timeout", default) and default.direction == "both"


def test_the_compose_config_file_loads() -> None:
    assert load_config(REPO / "compose" / "toxiproxy.json") == [
        ProxyConfig("redis", "0.0.0.0:6379", "redis:6379", True)]


@pytest.mark.parametrize(("text", "message"), [
    ("{", "Expecting property name"),
    ('{"name": "redis"}', "expected a JSON list"),
    ('[{"name": "redis", "listen": "0.0.0.0:6379"}]', "missing required field: upstream at proxy 1"),
    ('[{"name": "r", "listen": "nowhere", "upstream": "redis:6379"}]', "is not host:port"),
    ('[{"name": "r", "listen": ":1", "upstream": "a:1"}, {"name": "r", "listen": ":2", "upstream": "a:1"}]',
     "defined twice"),
])
def test_bad_config_stops_the_standin(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                      message: str) -> None:
    config = tmp_path / "toxiproxy.json"
    config.write_text(text)
    assert main([f"-config={config}", "-port=0"]) == 2
    assert message in capsys.readouterr().err


def test_go_style_flags() -> None:
    args = parse_args(["-host=0.0.0.0", "-config=/config/toxiproxy.json"])
    assert (args.host, args.port, args.config) == ("0.0.0.0", 8474, "/config/toxiproxy.json")
    args = parse_args(["--host", "127.0.0.1", "-port", "9000", "-seed=3"])
    assert (args.host, args.port, args.seed, args.config) == ("127.0.0.1", 9000, 3, "")


def test_a_proxy_disabled_in_the_config_does_not_listen() -> None:
    async def scenario() -> tuple[Any, socket.socket | None]:
        standin = StandIn([ProxyConfig("p", f"127.0.0.1:{listen_port}", "127.0.0.1:1", False)])
        await standin.start()
        try:
            _, shown = await standin.route("GET", "/proxies/p", b"")
            return shown, await asyncio.to_thread(_connect, listen_port)
        finally:
            standin.close()

    listen_port = free_port()
    shown, sock = asyncio.run(scenario())
    assert shown["enabled"] is False and shown["listen"] == f"127.0.0.1:{listen_port}"
    assert sock is None


def test_an_ephemeral_listen_port_is_reported_and_kept_across_down() -> None:
    closed_port = free_port()       # nothing listens there
    async def scenario() -> tuple[str, str, bytes]:
        standin = StandIn([ProxyConfig("p", "127.0.0.1:0", f"127.0.0.1:{closed_port}", True)])
        await standin.start()
        try:
            _, shown = await standin.route("GET", "/proxies/p", b"")
            assert (await standin.route("POST", "/proxies/p", b'{"enabled": false}'))[0] == 200
            _, again = await standin.route("POST", "/proxies/p", b'{"enabled": true}')
            port = int(again["listen"].rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            data = await asyncio.wait_for(reader.read(), timeout=5)   # the upstream refuses: closed at once
            writer.close()
            return shown["listen"], again["listen"], data
        finally:
            standin.close()

    shown, again, data = asyncio.run(scenario())
    assert shown == again and not shown.endswith(":0")
    assert data == b""
