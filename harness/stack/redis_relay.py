"""A fault-injecting TCP relay between the proxies and Redis (the local backend's Toxiproxy).

    python -m harness.stack.redis_relay --listen-port P --upstream-host 127.0.0.1 --upstream-port R \\
        --control-port C

Binds 127.0.0.1 only. HTTP control on the control port:

- ``GET /health``  -> ``{"ok": true, "fault": {...}, "connections": n, ...counters}``
- ``GET /fault``   -> the current fault
- ``POST /fault``  with JSON ``{"kind": "none"|"latency"|"timeout"|"reset", "latency_ms": .., "jitter_ms": ..,
  "direction": "down"|"up"|"both"}``

Fault semantics:

- ``latency``: every chunk is delayed by ``latency_ms`` ± ``jitter_ms`` (uniform), order kept. By default only
  Redis -> client ("down", like Toxiproxy's default stream), so one command round trip costs one delay.
- ``timeout``: connections are accepted and held, nothing is forwarded (data is dropped). Connections that
  dropped data are out of protocol sync: they are closed when the fault is cleared.
- ``reset``: existing connections are reset (RST) at once, and so is every new one right after accept.
- ``none``: plain forwarding.

The forwarding path is asyncio protocols (uvloop when installed) with no per-chunk allocation besides the
data itself: the relay is on the hot path of every proxy Redis call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from harness.util.control_client import JsonControlClient
from harness.util.netutil import abort_with_rst

KINDS = ("none", "latency", "timeout", "reset")
DIRECTIONS = ("down", "up", "both")


@dataclass
class Fault:
    kind: str = "none"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    direction: str = "down"

    @classmethod
    def parse(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        kind = data.get("kind", "none")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)} (got {kind!r})")
        unknown = set(data) - {"kind", "latency_ms", "jitter_ms", "direction"}
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
        latency = float(data.get("latency_ms", 0.0) or 0.0)
        jitter = float(data.get("jitter_ms", 0.0) or 0.0)
        direction = data.get("direction", "down")
        if latency < 0 or jitter < 0:
            raise ValueError("latency_ms and jitter_ms must be >= 0")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
        return cls(kind=kind, latency_ms=latency, jitter_ms=jitter, direction=direction)


def _rst(transport: asyncio.BaseTransport | None) -> None:
    """Close a transport with a TCP RST (SO_LINGER 0)."""
    abort_with_rst(transport)


class _Side(asyncio.Protocol):
    """One end of a relayed connection; `peer` is the other end."""

    def __init__(self, pipe: _Pipe, downstream: bool) -> None:
        self.pipe = pipe
        self.downstream = downstream   # True: this side faces Redis, its data flows down to the client
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        if self.pipe.reset_on_accept and not self.downstream:
            self.pipe.reset()

    def data_received(self, data: bytes) -> None:
        self.pipe.forward(self, data)

    def eof_received(self) -> bool | None:
        self.pipe.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.transport.is_closing():
            self.peer.transport.resume_reading()


class _Pipe:
    """A client connection and its upstream (Redis) connection."""

    __slots__ = ("relay", "client", "upstream", "pending", "tainted", "closed", "due_down", "due_up",
                 "reset_on_accept")

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.client = _Side(self, downstream=False)
        self.upstream = _Side(self, downstream=True)
        self.client.peer = self.upstream
        self.upstream.peer = self.client
        self.pending: list[bytes] | None = []   # client data until the upstream connection is made
        self.tainted = False
        self.closed = False
        self.due_down = 0.0
        self.due_up = 0.0
        self.reset_on_accept = False

    def forward(self, src: _Side, data: bytes) -> None:
        fault = self.relay.fault
        kind = fault.kind
        if kind == "none":
            self._write(src, data)
            return
        if kind == "latency":
            down = src.downstream
            if fault.direction == "both" or (fault.direction == "down") == down:
                self._delayed(src, data, fault)
            else:
                self._write(src, data)
            return
        # timeout (or reset racing with a read): hold the connection, forward nothing
        self.tainted = True
        self.relay.dropped_bytes += len(data)

    def _write(self, src: _Side, data: bytes) -> None:
        if src is self.client and self.pending is not None:
            self.pending.append(data)
            return
        dst = src.peer
        if dst is not None and dst.transport is not None and not dst.transport.is_closing():
            dst.transport.write(data)
            self.relay.forwarded_bytes += len(data)

    def _delayed(self, src: _Side, data: bytes, fault: Fault) -> None:
        loop = self.relay.loop
        delay = fault.latency_ms
        if fault.jitter_ms:
            delay += random.uniform(-fault.jitter_ms, fault.jitter_ms)
        now = loop.time()
        due = now + max(0.0, delay) / 1000.0
        # keep the byte order: never deliver before an earlier chunk of the same direction
        if src.downstream:
            due = self.due_down = max(due, self.due_down)
        else:
            due = self.due_up = max(due, self.due_up)
        loop.call_at(due, self._write, src, data)

    def upstream_ready(self) -> None:
        pending, self.pending = self.pending, None
        for data in pending or ():
            self._write(self.client, data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.relay.pipes.discard(self)
        for side in (self.client, self.upstream):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.close()

    def reset(self) -> None:
        self.closed = True
        self.relay.pipes.discard(self)
        _rst(self.client.transport)
        _rst(self.upstream.transport)


class Relay:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.fault = Fault()
        self.pipes: set[_Pipe] = set()
        self.loop = asyncio.get_running_loop()
        self.accepted = 0
        self.resets = 0
        self.forwarded_bytes = 0
        self.dropped_bytes = 0
        self.upstream_errors = 0
        self.started = time.time()
        self.fault_since = time.time()
        self._tasks: set[asyncio.Task[None]] = set()

    def client_protocol(self) -> _Side:
        self.accepted += 1
        pipe = _Pipe(self)
        side = pipe.client
        if self.fault.kind == "reset":
            self.resets += 1
            pipe.reset_on_accept = True   # reset in connection_made, where the transport arrives
            return side
        self.pipes.add(pipe)
        task = self.loop.create_task(self._connect(pipe))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return side

    async def _connect(self, pipe: _Pipe) -> None:
        try:
            await self.loop.create_connection(lambda: pipe.upstream, self.upstream_host, self.upstream_port)
        except OSError:
            self.upstream_errors += 1
            pipe.close()
            return
        if pipe.closed:
            pipe.upstream.transport and pipe.upstream.transport.close()
            return
        sock = pipe.upstream.transport.get_extra_info("socket") if pipe.upstream.transport else None
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        pipe.upstream_ready()

    def set_fault(self, fault: Fault) -> None:
        previous = self.fault
        self.fault = fault
        self.fault_since = time.time()
        if fault.kind == "reset":
            for pipe in list(self.pipes):
                self.resets += 1
                pipe.reset()
        elif previous.kind == "timeout" and fault.kind != "timeout":
            for pipe in list(self.pipes):
                if pipe.tainted:
                    pipe.close()

    def status(self) -> dict[str, Any]:
        return {"ok": True, "fault": asdict(self.fault), "fault_since": self.fault_since,
                "connections": len(self.pipes), "accepted": self.accepted, "resets": self.resets,
                "forwarded_bytes": self.forwarded_bytes, "dropped_bytes": self.dropped_bytes,
                "upstream_errors": self.upstream_errors,
                "upstream": f"{self.upstream_host}:{self.upstream_port}"}


# -- the control endpoint: a tiny HTTP/1.1 server (no framework on the relay's import path) -------------
async def _control(relay: Relay, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            status, payload = _route(relay, method, path.split("?", 1)[0], body)
            data = json.dumps(payload).encode()
            keep = headers.get("connection", "").lower() != "close"
            writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                         f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n".encode() + data)
            await writer.drain()
            if not keep:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


def _route(relay: Relay, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    if path == "/health" and method == "GET":
        return 200, relay.status()
    if path == "/fault" and method == "GET":
        return 200, asdict(relay.fault)
    if path == "/fault" and method == "POST":
        try:
            fault = Fault.parse(json.loads(body or b"{}"))
        except (ValueError, json.JSONDecodeError) as exc:
            return 400, {"error": str(exc)}
        relay.set_fault(fault)
        return 200, asdict(fault)
    return 404, {"error": f"no route {method} {path}"}


async def serve(listen_port: int, upstream_host: str, upstream_port: int, control_port: int,
                host: str = "127.0.0.1", ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    relay = Relay(upstream_host, upstream_port)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(relay.client_protocol, host, listen_port, reuse_address=True)
    control = await asyncio.start_server(lambda r, w: _control(relay, r, w), host, control_port,
                                         reuse_address=True)
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    print(f"redis relay 127.0.0.1:{listen_port} -> {upstream_host}:{upstream_port}, control :{control_port}",
          flush=True)
    if ready is not None:
        ready.set()
    await stop.wait()
    server.close()
    control.close()
    for pipe in list(relay.pipes):
        pipe.close()


def relay_command(listen_port: int, upstream_port: int, control_port: int, upstream_host: str = "127.0.0.1",
                  python: str = sys.executable) -> list[str]:
    """The command line that starts the relay (for ProcessGroup.start)."""
    return [python, "-m", "harness.stack.redis_relay", "--listen-port", str(listen_port),
            "--upstream-host", upstream_host, "--upstream-port", str(upstream_port),
            "--control-port", str(control_port)]


class RelayControl(JsonControlClient):
    """Client of the relay's control endpoint, e.g. ``RelayControl("http://127.0.0.1:7001")``."""

    what = "relay"

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def healthy(self) -> bool:
        try:
            return bool(self.health().get("ok"))
        except (httpx.HTTPError, RuntimeError):
            return False

    def fault(self) -> dict[str, Any]:
        return self._call("GET", "/fault")

    def set_fault(self, kind: str = "none", **params: Any) -> dict[str, Any]:
        return self._call("POST", "/fault", {"kind": kind, **params})

    def clear(self) -> dict[str, Any]:
        return self.set_fault("none")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.stack.redis_relay", description=__doc__.split("\n")[0])
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--upstream-host", default="127.0.0.1")
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(serve(args.listen_port, args.upstream_host, args.upstream_port, args.control_port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
