"""A fault-injecting TCP relay between the proxies and Redis (the local backend's Toxiproxy).

    python -m harness.stack.redis_relay --listen-port P --upstream-host 127.0.0.1 --upstream-port R \\
        --control-port C

Binds 127.0.0.1 only. HTTP control on the control port:

- ``GET /health``  -> ``{"ok": true, "fault": {...}, "connections": n, "listening": bool, ...counters}``
- ``GET /fault``   -> the current fault: ``{"kind": ..., <its params>}``
- ``POST /fault``  with JSON ``{"kind": "none"|"latency"|"timeout"|"reset"|"down", <params>}``

The kinds and their params are the Redis link faults of the fault registry (harness/nemesis/kinds/redis.py,
validated with `link_fault`): the same definitions the Toxiproxy client (Compose backend) reads. Here:

- ``latency``: every chunk in `direction` is delayed by ``latency_ms`` ± ``jitter_ms`` (uniform), order kept.
- ``timeout``: connections are accepted and held; data in `direction` is dropped (default both ways: nothing
  reaches Redis). Connections that dropped data are out of protocol sync: they are closed when the fault is
  cleared.
- ``reset``: existing connections are reset (RST) at once, and so is every new one right after accept.
- ``down``: the listening socket is closed (new connections are refused) and existing connections are closed;
  any other fault opens the listener again.
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
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import httpx
from pydantic import ValidationError

from harness.nemesis.kinds.redis import RedisFault, RedisLatency, RedisTimeout, link_fault
from harness.util.control_client import JsonControlClient
from harness.util.netutil import abort_with_rst


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
        elif self.pipe.close_on_accept and not self.downstream:
            self.pipe.close()

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
                 "reset_on_accept", "close_on_accept")

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
        self.close_on_accept = False

    def forward(self, src: _Side, data: bytes) -> None:
        relay = self.relay
        if relay.kind == "none":
            self._write(src, data)
            return
        fault = relay.fault
        if isinstance(fault, RedisLatency | RedisTimeout):
            direction = fault.direction
            if direction != "both" and (direction == "down") != src.downstream:
                self._write(src, data)      # the other way: untouched
                return
            if isinstance(fault, RedisLatency):
                self._delayed(src, data, fault)
                return
        # timeout (or reset / down racing with a read): hold the connection, forward nothing
        self.tainted = True
        relay.dropped_bytes += len(data)

    def _write(self, src: _Side, data: bytes) -> None:
        if src is self.client and self.pending is not None:
            self.pending.append(data)
            return
        dst = src.peer
        if dst is not None and dst.transport is not None and not dst.transport.is_closing():
            dst.transport.write(data)
            self.relay.forwarded_bytes += len(data)

    def _delayed(self, src: _Side, data: bytes, fault: RedisLatency) -> None:
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
    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1",
                 listen_port: int = 0) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.listen_port = listen_port
        self.kind = "none"
        self.fault: RedisFault | None = None      # the params of `kind` (None for "none")
        self.pipes: set[_Pipe] = set()
        self.loop = asyncio.get_running_loop()
        self.server: asyncio.AbstractServer | None = None
        self.accepted = 0
        self.resets = 0
        self.forwarded_bytes = 0
        self.dropped_bytes = 0
        self.upstream_errors = 0
        self.started = time.time()
        self.fault_since = time.time()
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self) -> None:
        """Open the listening socket (again after `down`)."""
        if self.server is None:
            self.server = await self.loop.create_server(self.client_protocol, self.host, self.listen_port,
                                                        reuse_address=True)
            if self.listen_port == 0:    # an ephemeral port: keep it, so the listener comes back on it after down
                self.listen_port = self.server.sockets[0].getsockname()[1]

    def unlisten(self) -> None:
        """Close the listening socket: new connections are refused (existing ones are not touched here)."""
        if self.server is not None:
            self.server.close()
            self.server = None

    def client_protocol(self) -> _Side:
        self.accepted += 1
        pipe = _Pipe(self)
        side = pipe.client
        if self.kind == "reset":
            self.resets += 1
            pipe.reset_on_accept = True   # reset in connection_made, where the transport arrives
            return side
        if self.kind == "down":           # accepted just before the listener closed
            pipe.close_on_accept = True
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
            if pipe.upstream.transport is not None:
                pipe.upstream.transport.close()
            return
        sock = pipe.upstream.transport.get_extra_info("socket") if pipe.upstream.transport else None
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        pipe.upstream_ready()

    async def set_fault(self, kind: str, fault: RedisFault | None) -> None:
        """Replace the active fault (`kind` and its validated params, see `link_fault`)."""
        previous = self.kind
        self.kind, self.fault = kind, fault
        self.fault_since = time.time()
        if kind == "reset":
            for pipe in list(self.pipes):
                self.resets += 1
                pipe.reset()
        elif kind == "down":
            self.unlisten()
            for pipe in list(self.pipes):
                pipe.close()
        elif previous == "timeout" and kind != "timeout":
            for pipe in list(self.pipes):
                if pipe.tainted:
                    pipe.close()
        if kind != "down":
            await self.listen()

    def describe_fault(self) -> dict[str, Any]:
        return {"kind": self.kind, **(self.fault.model_dump() if self.fault is not None else {})}

    def status(self) -> dict[str, Any]:
        return {"ok": True, "fault": self.describe_fault(), "fault_since": self.fault_since,
                "listening": self.server is not None,
                "connections": len(self.pipes), "accepted": self.accepted, "resets": self.resets,
                "forwarded_bytes": self.forwarded_bytes, "dropped_bytes": self.dropped_bytes,
                "upstream_errors": self.upstream_errors,
                "upstream": f"{self.upstream_host}:{self.upstream_port}"}


# -- the control endpoint: a tiny HTTP/1.1 server (no framework on the relay's import path) -------------
JsonRoute = Callable[[str, str, bytes], Awaitable[tuple[int, Any]]]


async def serve_json_http(route: JsonRoute, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Serve one HTTP/1.1 connection (keep-alive, Content-Length bodies): `route(method, path, body)` gives the
    status and the JSON payload (None: no body). Also the Toxiproxy stand-in's API (toxiproxy_standin.py)."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            status, payload = await route(method, path.split("?", 1)[0], body)
            data = b"" if payload is None else json.dumps(payload).encode()
            keep = headers.get("connection", "").lower() != "close"
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = "Error"
            length = "" if status == 204 else f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            writer.write(f"HTTP/1.1 {status} {reason}\r\n{length}"
                         f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n".encode() + data)
            await writer.drain()
            if not keep:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def _control(relay: Relay, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    async def route(method: str, path: str, body: bytes) -> tuple[int, Any]:
        return await _route(relay, method, path, body)

    await serve_json_http(route, reader, writer)


def _validation_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"{loc}: {first['msg']}" if loc else str(first["msg"])


async def _route(relay: Relay, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    if path == "/health" and method == "GET":
        return 200, relay.status()
    if path == "/fault" and method == "GET":
        return 200, relay.describe_fault()
    if path == "/fault" and method == "POST":
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            kind = str(data.pop("kind", "none"))
            fault = link_fault(kind, data)
        except ValidationError as exc:
            return 400, {"error": _validation_line(exc)}
        except ValueError as exc:       # also json.JSONDecodeError
            return 400, {"error": str(exc)}
        await relay.set_fault(kind, fault)
        return 200, relay.describe_fault()
    return 404, {"error": f"no route {method} {path}"}


async def serve(listen_port: int, upstream_host: str, upstream_port: int, control_port: int,
                host: str = "127.0.0.1", ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    relay = Relay(upstream_host, upstream_port, host, listen_port)
    loop = asyncio.get_running_loop()
    await relay.listen()
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
    relay.unlisten()
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
