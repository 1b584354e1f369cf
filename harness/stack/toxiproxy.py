"""Toxiproxy's HTTP API: the Compose backend's Redis faults (the local backend's counterpart: redis_relay.py).

The fault kinds and their params are the Redis link faults of the fault registry (harness/nemesis/kinds/redis.py,
validated with `link_fault`), the same definitions the relay reads. Mapping onto Toxiproxy:

- latency: a `latency` toxic (latency, jitter) on each stream of `direction` (down: downstream, up: upstream).
- timeout: a `timeout` toxic (timeout 0: data dropped, connections held) on each stream of `direction`
  (default both, like the relay: commands never reach Redis).
- reset: a `reset_peer` toxic (timeout 0) downstream.
- down: the proxy is disabled (`enabled: false`): its listener closes and its connections are dropped.
- none: no toxic, proxy enabled.

Every call replaces what was active: toxics removed, the proxy enabled unless the kind is down.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from harness.errors import HarnessError, StackError
from harness.nemesis.kinds.redis import RedisDown, RedisLatency, RedisReset, RedisTimeout, link_fault

TOXIPROXY_REDIS_PROXY = "redis"          # the proxy defined in compose/toxiproxy.json
STREAMS = {"down": ["downstream"], "up": ["upstream"], "both": ["downstream", "upstream"]}


class ToxiproxyControl:
    """Toxiproxy's HTTP API, for the one proxy in front of Redis."""

    def __init__(self, http: httpx.Client, url: str, proxy: str = TOXIPROXY_REDIS_PROXY) -> None:
        self.http = http
        self.url = url.rstrip("/")
        self.proxy = proxy

    def _check(self, resp: httpx.Response, what: str) -> None:
        if resp.status_code >= 300:
            raise StackError(f"toxiproxy: {what} failed: HTTP {resp.status_code} {resp.text[:200]}",
                             "is the toxiproxy container up?")

    def toxics(self) -> list[dict[str, Any]]:
        resp = self.http.get(f"{self.url}/proxies/{self.proxy}/toxics")
        self._check(resp, "list toxics")
        return list(resp.json())

    def clear(self) -> None:
        for toxic in self.toxics():
            resp = self.http.delete(f"{self.url}/proxies/{self.proxy}/toxics/{toxic['name']}")
            self._check(resp, f"remove toxic {toxic['name']}")

    def add(self, toxic_type: str, stream: str, attributes: dict[str, Any]) -> None:
        body = {"name": f"harness_{toxic_type}_{stream}", "type": toxic_type, "stream": stream, "toxicity": 1.0,
                "attributes": attributes}
        resp = self.http.post(f"{self.url}/proxies/{self.proxy}/toxics", json=body)
        self._check(resp, f"add toxic {body['name']}")

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable the proxy (disabled: its listener is closed, its connections dropped)."""
        resp = self.http.post(f"{self.url}/proxies/{self.proxy}", json={"enabled": enabled})
        self._check(resp, f"{'enable' if enabled else 'disable'} proxy {self.proxy}")

    def set_fault(self, kind: str = "none", **params: Any) -> None:
        """Replace whatever is active by the link fault `kind` (see the module docstring)."""
        try:
            fault = link_fault(kind, params)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise HarnessError(f"redis fault {kind}: {where}: {first['msg']}",
                               "see the redis_* fault kinds in scenarios/README.md") from None
        except ValueError as exc:
            raise HarnessError(f"redis fault: {exc}", "see the redis_* fault kinds in scenarios/README.md") from None
        toxics: list[tuple[str, str, dict[str, Any]]] = []      # (type, stream, attributes)
        if isinstance(fault, RedisLatency):
            attributes = {"latency": int(fault.latency_ms), "jitter": int(fault.jitter_ms)}
            toxics = [("latency", stream, attributes) for stream in STREAMS[fault.direction]]
        elif isinstance(fault, RedisTimeout):
            toxics = [("timeout", stream, {"timeout": 0}) for stream in STREAMS[fault.direction]]
        elif isinstance(fault, RedisReset):
            toxics = [("reset_peer", "downstream", {"timeout": 0})]
        elif fault is not None and not isinstance(fault, RedisDown):
            raise HarnessError(f"redis fault {kind}: not implemented on Toxiproxy (harness/stack/toxiproxy.py)",
                               "run this scenario on the local backend")
        self.clear()
        self.set_enabled(not isinstance(fault, RedisDown))
        for toxic_type, stream, attributes in toxics:
            self.add(toxic_type, stream, attributes)
