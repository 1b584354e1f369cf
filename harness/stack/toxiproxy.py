"""Toxiproxy's HTTP API: the Compose backend's Redis faults (the local backend's counterpart: redis_relay.py)."""

from __future__ import annotations

from typing import Any

import httpx

from harness.errors import HarnessError, StackError

TOXIPROXY_REDIS_PROXY = "redis"          # the proxy defined in compose/toxiproxy.json


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

    def set_fault(self, kind: str = "none", **params: Any) -> None:
        """Replace whatever toxic is active by `kind`: latency | timeout | reset | none."""
        if kind not in ("none", "latency", "timeout", "reset"):
            raise HarnessError(f"redis fault kind must be latency, timeout, reset or none (got {kind!r})")
        direction = str(params.get("direction", "down"))
        streams = {"down": ["downstream"], "up": ["upstream"], "both": ["downstream", "upstream"]}.get(direction)
        if streams is None:
            raise HarnessError(f"redis fault direction must be down, up or both (got {direction!r})")
        self.clear()
        for stream in streams if kind != "none" else []:
            if kind == "latency":
                self.add("latency", stream, {"latency": int(float(params.get("latency_ms", 0) or 0)),
                                             "jitter": int(float(params.get("jitter_ms", 0) or 0))})
            elif kind == "timeout":     # data dropped, connections held open until the toxic goes
                self.add("timeout", stream, {"timeout": 0})
            else:                       # TCP RST on every connection
                self.add("reset_peer", stream, {"timeout": 0})
