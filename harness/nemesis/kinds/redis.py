"""redis_* link faults: between the proxies and Redis (the local backend's relay, Toxiproxy on Compose).

These params models are THE definition of the link faults. The nemesis calls `stack.redis_fault(<link kind>,
**params)`; the relay (harness/stack/redis_relay.py) and the Toxiproxy client (harness/stack/toxiproxy.py)
both validate what they receive with `link_fault(kind, params)` below, so a kind and its params mean the same
on both backends. Link kinds: each model's `link_kind` (latency, timeout, reset, down) and "none" (no fault).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field

from harness.nemesis.registry import FaultKindSpec, FaultParams, FaultRun, fault_kinds, register
from harness.stack.base import RedisFaults

Direction = Literal["down", "up", "both"]
_DIRECTION = ("down: Redis → proxy (replies), up: proxy → Redis (commands), both")


class RedisFault(FaultParams):
    """Base of the link faults: start replaces the active link fault, end clears it."""

    link_kind: ClassVar[str]      # the name the relay / Toxiproxy client know it by

    def start(self, run: FaultRun) -> str:
        stack: RedisFaults = run.stack
        params = self.model_dump()
        stack.redis_fault(self.link_kind, **params)
        extra = f" {json.dumps(params, sort_keys=True)}" if params else ""
        return f"redis fault {self.link_kind}{extra} on"

    def end(self, run: FaultRun) -> str:
        stack: RedisFaults = run.stack
        stack.redis_fault("none")
        return "redis fault cleared"

    @staticmethod
    def final_reset(stack: Any) -> None:
        redis: RedisFaults = stack
        redis.redis_fault("none")


class RedisLatency(RedisFault):
    """Redis replies are late: every chunk is delayed by latency_ms ± jitter_ms (uniform), order kept."""

    link_kind: ClassVar[str] = "latency"
    latency_ms: float = Field(0.0, ge=0, description="delay added to every chunk (ms)")
    jitter_ms: float = Field(0.0, ge=0, description="± uniform jitter on the delay (ms)")
    direction: Direction = Field("down", description=f"which way is delayed ({_DIRECTION}); down costs one "
                                                     "delay per command round trip")


class RedisTimeout(RedisFault):
    """Redis stops answering: connections stay open (new ones are accepted) and no data gets through.

    Same on both backends: the relay drops the data, Toxiproxy adds `timeout` toxics (timeout 0) on the
    chosen streams. With the default `both`, nothing is forwarded either way: commands never reach Redis
    (nothing is executed) and nothing comes back; with `down` they are executed and only the replies are lost.
    Connections that lost data are closed at the end (relay) or when the toxic goes (Toxiproxy). The
    Toxiproxy stand-in (harness/stack/toxiproxy_standin.py) maps those toxics back onto this relay fault;
    tests/stack/test_toxiproxy_standin.py checks both backends show a client the same thing for every kind.
    """

    link_kind: ClassVar[str] = "timeout"
    direction: Direction = Field("both", description=f"which way data is dropped ({_DIRECTION})")


class RedisReset(RedisFault):
    """Connections to Redis are reset: existing ones at once (TCP RST), and every new one right after accept."""

    link_kind: ClassVar[str] = "reset"


class RedisDown(RedisFault):
    """Redis is unreachable: new connections are refused and existing ones are dropped.

    The relay closes its listening socket; Toxiproxy disables the proxy (`enabled: false`). At the end of the
    window the listener comes back and new connections work again.
    """

    link_kind: ClassVar[str] = "down"


register(FaultKindSpec("redis_latency", RedisLatency, needs=RedisFaults, on="redis"))
register(FaultKindSpec("redis_timeout", RedisTimeout, needs=RedisFaults, on="redis"))
register(FaultKindSpec("redis_reset", RedisReset, needs=RedisFaults, on="redis"))
register(FaultKindSpec("redis_down", RedisDown, needs=RedisFaults, on="redis"))


def link_kinds() -> dict[str, type[RedisFault]]:
    """Link kind → its params model, for every registered link fault."""
    return {spec.params.link_kind: spec.params for spec in fault_kinds() if issubclass(spec.params, RedisFault)}


def link_fault(kind: str, params: Mapping[str, Any]) -> RedisFault | None:
    """A backend's `redis_fault(kind, **params)`, validated: the params model, or None for "none".

    Raises ValueError for an unknown kind, pydantic.ValidationError (a ValueError) for bad params.
    """
    if kind == "none":
        if params:
            raise ValueError(f"kind none takes no params (got {', '.join(sorted(params))})")
        return None
    models = link_kinds()
    if kind not in models:
        raise ValueError(f"kind must be one of {', '.join(['none', *models])} (got {kind!r})")
    return models[kind].model_validate(dict(params))
