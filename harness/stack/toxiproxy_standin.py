"""A Toxiproxy stand-in: Toxiproxy's HTTP API in front of this project's Redis fault relay (redis_relay.py).

    python -m harness.stack.toxiproxy_standin -host=0.0.0.0 -config=/config/toxiproxy.json

Why it exists: the Compose backend puts Shopify's Toxiproxy between the proxies and Redis and drives it with
`ToxiproxyControl` (toxiproxy.py), but no Toxiproxy binary or image is installable here: no image registry is
reachable, and the package registries that are (PyPI, Debian, npm) carry Toxiproxy clients only, no server. So
it is written by hand, on top of the relay the local backend already uses. A real toxiproxy-server can be
swapped in wherever one exists: the flags, the config file and the API subset below are Toxiproxy's own, so
the Compose service only changes its image and entrypoint.

Flags (the real toxiproxy-server's, Go style: ``-host=x``, ``-host x``, ``--host=x``): ``-host`` (API address,
default localhost), ``-port`` (API port, default 8474), ``-config`` (the proxies, Toxiproxy's JSON: a list of
``{name, listen, upstream, enabled}``), ``-seed`` (jitter's random seed), ``-version``. Unlike Toxiproxy, a
config that cannot be read or a listen address that cannot be bound stops the stand-in (exit 2) instead of
being logged and skipped: a fault rig without its proxy would make every fault silently absent.

API, with Toxiproxy's JSON shapes and status codes (api.go, toxic_collection.go of Shopify/toxiproxy):

- ``GET /version`` -> ``{"version": ...}``
- ``GET /proxies`` -> ``{name: proxy}``; ``GET /proxies/{p}`` -> proxy
  (``{"name", "listen", "upstream", "enabled", "toxics": [toxic...]}``); unknown proxy: 404 ``proxy not found``
- ``POST|PATCH /proxies/{p}`` with ``{"enabled": bool}`` -> proxy. Disabled = the relay's ``down``.
- ``GET /proxies/{p}/toxics`` -> ``[toxic...]`` (upstream toxics first, then downstream, each in order added)
- ``POST /proxies/{p}/toxics`` with ``{name, type, stream, toxicity, attributes}`` -> toxic (200); defaults:
  stream ``downstream`` (case-insensitive), toxicity 1.0, name ``<type>_<stream>``; 409 for a name in use
- ``GET|DELETE /proxies/{p}/toxics/{t}`` -> toxic | 204; unknown toxic: 404 ``toxic not found``
- ``POST /reset`` -> 204: every proxy enabled, every toxic removed
- errors: ``{"error": message, "status": code}``. Toxiproxy endpoints the harness does not use (creating,
  deleting or moving proxies, /populate, updating a toxic, /metrics) answer 501.

The relay runs one fault at a time, so the toxics of a proxy map onto ONE relay fault (`relay_fault`):

- ``latency`` (attributes latency, jitter in ms) on downstream / upstream / both streams, the same values on
  each -> relay ``latency`` with direction down / up / both;
- ``timeout`` with timeout 0 (data dropped, connections held) on the stream(s) -> relay ``timeout`` with that
  direction (both streams = the relay's default: nothing is forwarded either way);
- ``reset_peer`` with timeout 0, either stream -> relay ``reset``. The relay resets existing connections at
  once and new ones right after accept; Toxiproxy's toxic fires on the next chunk of its stream (downstream:
  Redis runs the command, the reply is replaced by the RST). The client sees a connection reset either way.
- a disabled proxy -> relay ``down`` (its toxics are kept and come back with ``enabled: true``);
- no toxic -> ``none``.

Anything else is answered 400 with the reason instead of being approximated: toxicity other than 1, timeout >
0, toxics of different types together, two toxics on one stream, different latency values per stream, toxic
types the relay has no fault for (bandwidth, slicer, slow_close, limit_data, noop), attributes that are not
non-negative integers or that the type does not have.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from harness.nemesis.kinds.redis import Direction, RedisDown, RedisFault, RedisLatency, RedisReset, RedisTimeout
from harness.stack.redis_relay import Relay, serve_json_http

VERSION = "2.12.0-harness-standin"     # the Toxiproxy release the Compose file pins, marked as the stand-in
DEFAULT_PORT = 8474
STREAMS = ("upstream", "downstream")    # Toxiproxy lists upstream toxics first
ATTRIBUTES = {"latency": ("latency", "jitter"), "timeout": ("timeout",), "reset_peer": ("timeout",)}
OTHER_TOXICS = ("bandwidth", "slicer", "slow_close", "limit_data", "noop")   # Toxiproxy's, no relay fault
DIRECTION: dict[frozenset[str], Direction] = {frozenset({"downstream"}): "down", frozenset({"upstream"}): "up",
             frozenset({"downstream", "upstream"}): "both"}


class ApiError(Exception):
    """An API answer other than success: Toxiproxy's ``{"error": message, "status": code}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def payload(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}


def _not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def _bad_body(detail: str) -> ApiError:
    return ApiError(400, f"bad request body: {detail}")


@dataclass
class Toxic:
    name: str
    type: str
    stream: str                       # as given (Toxiproxy keeps the case); `direction` is the parsed one
    toxicity: float
    attributes: dict[str, int]

    @property
    def direction(self) -> str:
        return self.stream.lower()

    def to_json(self) -> dict[str, Any]:
        return {"attributes": dict(self.attributes), "name": self.name, "type": self.type, "stream": self.stream,
                "toxicity": self.toxicity}


def parse_toxic(data: Any) -> Toxic:
    """A toxic from a POST body, checked for what Toxiproxy checks and for what the relay can do."""
    if not isinstance(data, dict):
        raise _bad_body("a toxic is a JSON object")
    for key in ("name", "type", "stream"):
        if key in data and not isinstance(data[key], str):
            raise _bad_body(f"{key} must be a string")
    stream = data.get("stream", "downstream")
    if stream.lower() not in STREAMS:
        raise ApiError(400, "stream was invalid, can be either upstream or downstream")
    toxic_type = data.get("type", "")
    if toxic_type not in ATTRIBUTES:
        if toxic_type in OTHER_TOXICS:
            raise ApiError(400, f"toxic type {toxic_type} is not supported by the Toxiproxy stand-in (the relay has "
                                f"no such fault; supported: {', '.join(ATTRIBUTES)})")
        raise ApiError(400, "invalid toxic type")
    toxicity = data.get("toxicity", 1.0)
    if isinstance(toxicity, bool) or not isinstance(toxicity, int | float):
        raise _bad_body("toxicity must be a number")
    if toxicity != 1:
        raise ApiError(400, f"toxicity {toxicity} is not supported by the Toxiproxy stand-in: the relay applies a "
                            "fault to every connection (toxicity 1.0)")
    raw = data.get("attributes") or {}
    if not isinstance(raw, dict):
        raise _bad_body("attributes must be a JSON object")
    known = ATTRIBUTES[toxic_type]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ApiError(400, f"{toxic_type} toxic: unknown attribute(s) {', '.join(unknown)} "
                            f"(it has {', '.join(known)})")
    attributes: dict[str, int] = {}
    for key in known:
        value = raw.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad_body(f"attributes.{key} must be an integer (milliseconds)")
        if value < 0:
            raise ApiError(400, f"{toxic_type} toxic: {key} must be >= 0 (got {value})")
        attributes[key] = value
    if toxic_type in ("timeout", "reset_peer") and attributes["timeout"] != 0:
        what = "closing connections" if toxic_type == "timeout" else "resetting connections"
        raise ApiError(400, f"{toxic_type} toxic: timeout {attributes['timeout']} is not supported by the Toxiproxy "
                            f"stand-in: the relay has no {what} after a delay (use timeout 0)")
    name = data.get("name") or f"{toxic_type}_{stream}"
    return Toxic(name=name, type=toxic_type, stream=stream, toxicity=1.0, attributes=attributes)


def relay_fault(enabled: bool, toxics: Iterable[Toxic]) -> tuple[str, RedisFault | None]:
    """The relay fault (link kind, params) that does what these toxics do; ApiError 400 when none does."""
    if not enabled:
        return "down", RedisDown()
    active = list(toxics)
    if not active:
        return "none", None
    types = sorted({t.type for t in active})
    if len(types) > 1:
        raise ApiError(400, f"the Toxiproxy stand-in cannot combine toxics of types {' and '.join(types)}: the "
                            "relay runs one fault at a time (remove the other toxic first)")
    streams = [t.direction for t in active]
    if len(set(streams)) < len(streams):
        raise ApiError(400, f"the Toxiproxy stand-in cannot stack two {types[0]} toxics on one stream")
    direction = DIRECTION[frozenset(streams)]
    first = active[0]
    if first.type == "latency":
        if any(t.attributes != first.attributes for t in active):
            raise ApiError(400, "the Toxiproxy stand-in cannot give the two streams different latency toxics "
                                "(the relay delays both directions alike)")
        return "latency", RedisLatency(latency_ms=first.attributes["latency"],
                                       jitter_ms=first.attributes["jitter"], direction=direction)
    if first.type == "timeout":
        return "timeout", RedisTimeout(direction=direction)
    return "reset", RedisReset()


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``, ``:port`` = every interface) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {address!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass
class Proxy:
    name: str
    listen: str
    upstream: str
    enabled: bool
    relay: Relay
    toxics: dict[str, Toxic] = field(default_factory=dict)

    def toxic_list(self) -> list[Toxic]:
        return [t for stream in STREAMS for t in self.toxics.values() if t.direction == stream]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream, "enabled": self.enabled,
                "toxics": [t.to_json() for t in self.toxic_list()]}

    async def apply(self) -> None:
        """Put the relay into the fault these toxics and `enabled` mean (unchanged: left alone, so an unrelated
        update does not reset connections again)."""
        kind, fault = relay_fault(self.enabled, self.toxic_list())
        if kind != self.relay.kind or fault != self.relay.fault:
            await self.relay.set_fault(kind, fault)
            if kind != "down":
                self.listen = self._bound_listen()

    def _bound_listen(self) -> str:
        host, _ = split_address(self.listen)
        return f"[{host}]:{self.relay.listen_port}" if ":" in host else f"{host}:{self.relay.listen_port}"


@dataclass(frozen=True)
class ProxyConfig:
    name: str
    listen: str
    upstream: str
    enabled: bool = True


def load_config(path: Path) -> list[ProxyConfig]:
    """Toxiproxy's config file: a JSON list of ``{name, listen, upstream, enabled}`` (enabled defaults to true)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"config {path}: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"config {path}: expected a JSON list of proxies")
    proxies: list[ProxyConfig] = []
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise ValueError(f"config {path}: proxy {i} is not a JSON object")
        for key in ("name", "upstream"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise ValueError(f"config {path}: missing required field: {key} at proxy {i}")
        listen, enabled = item.get("listen", ""), item.get("enabled", True)
        if not isinstance(listen, str) or not isinstance(enabled, bool):
            raise ValueError(f"config {path}: proxy {i}: listen must be a string, enabled a boolean")
        split_address(listen)
        split_address(item["upstream"])
        if any(p.name == item["name"] for p in proxies):
            raise ValueError(f"config {path}: proxy {item['name']!r} is defined twice")
        proxies.append(ProxyConfig(item["name"], listen, item["upstream"], enabled))
    return proxies


class StandIn:
    """The proxies (one relay each) and the API over them. Construct and use inside the running loop."""

    def __init__(self, configs: Iterable[ProxyConfig]) -> None:
        self.proxies: dict[str, Proxy] = {}
        for cfg in configs:
            host, port = split_address(cfg.listen)
            up_host, up_port = split_address(cfg.upstream)
            relay = Relay(up_host, up_port, host=host, listen_port=port)
            self.proxies[cfg.name] = Proxy(cfg.name, cfg.listen, cfg.upstream, cfg.enabled, relay)

    async def start(self) -> None:
        """Open the listener of every enabled proxy (OSError when one cannot be bound)."""
        for proxy in self.proxies.values():
            if proxy.enabled:
                await proxy.relay.listen()
                proxy.listen = proxy._bound_listen()
            else:
                await proxy.relay.set_fault("down", RedisDown())

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.relay.unlisten()
            for pipe in list(proxy.relay.pipes):
                pipe.close()

    def _proxy(self, name: str) -> Proxy:
        if name not in self.proxies:
            raise _not_found("proxy")
        return self.proxies[name]

    async def route(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        try:
            return await self._route(method, [unquote(p) for p in path.strip("/").split("/")], body)
        except ApiError as exc:
            return exc.status, exc.payload()

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return json.loads(body or b"null")
        except ValueError as exc:
            raise _bad_body(str(exc)) from None

    async def _route(self, method: str, parts: list[str], body: bytes) -> tuple[int, Any]:
        match parts:
            case ["version"] if method == "GET":
                return 200, {"version": VERSION}
            case ["reset"] if method == "POST":
                for proxy in self.proxies.values():
                    proxy.enabled = True
                    proxy.toxics.clear()
                    await self._apply(proxy)
                return 204, None
            case ["proxies"] if method == "GET":
                return 200, {name: proxy.to_json() for name, proxy in self.proxies.items()}
            case ["proxies", name] if method == "GET":
                return 200, self._proxy(name).to_json()
            case ["proxies", name] if method in ("POST", "PATCH"):
                return 200, await self._update_proxy(self._proxy(name), self._json(body))
            case ["proxies", name, "toxics"] if method == "GET":
                return 200, [t.to_json() for t in self._proxy(name).toxic_list()]
            case ["proxies", name, "toxics"] if method == "POST":
                proxy = self._proxy(name)
                toxic = parse_toxic(self._json(body))
                if toxic.name in proxy.toxics:
                    raise ApiError(409, "toxic already exists")
                relay_fault(True, [*proxy.toxic_list(), toxic])      # 400 before anything changes
                proxy.toxics[toxic.name] = toxic
                await self._apply(proxy)
                return 200, toxic.to_json()
            case ["proxies", name, "toxics", toxic_name] if method in ("GET", "DELETE"):
                proxy = self._proxy(name)
                if toxic_name not in proxy.toxics:
                    raise _not_found("toxic")
                if method == "GET":
                    return 200, proxy.toxics[toxic_name].to_json()
                del proxy.toxics[toxic_name]
                await self._apply(proxy)
                return 204, None
            # Toxiproxy's, not used by the harness: create / delete a proxy, populate, update a toxic, metrics
            case ["proxies"] | ["populate"] if method == "POST":
                raise self._not_implemented(method, parts)
            case ["metrics"] if method == "GET":
                raise self._not_implemented(method, parts)
            case ["proxies", name] if method == "DELETE":
                self._proxy(name)
                raise self._not_implemented(method, parts)
            case ["proxies", name, "toxics", _] if method in ("POST", "PATCH"):
                self._proxy(name)
                raise self._not_implemented(method, parts)
        raise ApiError(404, f"no route {method} /{'/'.join(parts)}")

    @staticmethod
    def _not_implemented(method: str, parts: list[str]) -> ApiError:
        return ApiError(501, f"{method} /{'/'.join(parts)} is not implemented by the Toxiproxy stand-in")

    async def _update_proxy(self, proxy: Proxy, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise _bad_body("a proxy update is a JSON object")
        enabled = data.get("enabled", proxy.enabled)
        if not isinstance(enabled, bool):
            raise _bad_body("enabled must be a boolean")
        for key in ("listen", "upstream"):
            if key in data and data[key] != getattr(proxy, key):
                raise ApiError(501, f"changing a proxy's {key} is not implemented by the Toxiproxy stand-in")
        proxy.enabled = enabled
        await self._apply(proxy)
        return proxy.to_json()

    @staticmethod
    async def _apply(proxy: Proxy) -> None:
        try:
            await proxy.apply()
        except OSError as exc:           # the listener could not be opened again
            proxy.enabled = False
            raise ApiError(500, f"proxy {proxy.name}: {exc}") from None


async def serve(configs: list[ProxyConfig], host: str = "localhost", port: int = DEFAULT_PORT,
                ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> StandIn:
    """Run the stand-in until `stop` (or SIGTERM / SIGINT); returns it once stopped."""
    standin = StandIn(configs)
    await standin.start()
    api = await asyncio.start_server(lambda r, w: serve_json_http(standin.route, r, w), host or None, port,
                                     reuse_address=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    for proxy in standin.proxies.values():
        state = "" if proxy.enabled else " (disabled)"
        print(f"toxiproxy stand-in: proxy {proxy.name} {proxy.listen} -> {proxy.upstream}{state}", flush=True)
    api_port = api.sockets[0].getsockname()[1]
    print(f"toxiproxy stand-in {VERSION}: API on {host}:{api_port}", flush=True)
    if ready is not None:
        ready.set()
    await stop.wait()
    api.close()
    standin.close()
    return standin


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """toxiproxy-server's flags; Go's flag package takes -name=value, -name value and --name=value alike."""
    parser = argparse.ArgumentParser(prog="python -m harness.stack.toxiproxy_standin",
                                     description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("-host", "--host", default="localhost", help="address the API listens on")
    parser.add_argument("-port", "--port", type=int, default=DEFAULT_PORT, help="port the API listens on")
    parser.add_argument("-config", "--config", default="", help="JSON file of proxies to create at start")
    parser.add_argument("-seed", "--seed", type=int, default=None, help="seed of the jitter's randomness")
    parser.add_argument("-version", "--version", action="store_true", help="print the version and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.version:
        print(f"toxiproxy-server version {VERSION}")
        return 0
    try:
        configs = load_config(Path(args.config)) if args.config else []
    except ValueError as exc:
        print(f"toxiproxy stand-in: {exc}", file=sys.stderr)
        return 2
    if args.seed is not None:
        random.seed(args.seed)
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    try:
        asyncio.run(serve(configs, args.host, args.port))
    except OSError as exc:
        print(f"toxiproxy stand-in: cannot listen: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
