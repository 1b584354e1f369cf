"""Per-request fault decisions: a pure function of (seed, decision key, config), never of timing.

The decision key is the request id the upstream call carries (`x-harness-request-id`) plus how many
times the mock has seen that id (so a retry of the same request rolls again), or the mock's own
arrival sequence number when no id came with the call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from harness.mockllm.config import EXCLUSIVE_KINDS, HEADER_PARAM, ConfigError, canonical_kind

_SCALE = float(1 << 64)


@dataclass(slots=True)
class FaultPlan:
    """What the mock will do with one request."""

    kind: str | None = None        # the exclusive fault, or None
    latency_s: float = 0.0         # added before the response
    first_token_delay_s: float = 0.0  # added before the first chunk of a stream
    retry_after_s: float = 1.0
    after_chunks: int = 1
    forced: bool = False           # decided by the x-mock-fault header

    def describe(self) -> str:
        return self.kind or "none"


def uniforms(seed: int, key: str) -> tuple[float, float, float, float]:
    """Four independent uniforms in [0, 1) from seed and key (BLAKE2b: stable across runs and platforms)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=32).digest()
    return tuple(int.from_bytes(digest[i:i + 8], "little") / _SCALE for i in range(0, 32, 8))  # type: ignore[return-value]


def decide(config: dict[str, Any], seed: int, key: str) -> FaultPlan:
    faults = config["faults"]
    u_kind, u_latency, u_jitter, u_slow = uniforms(seed, key)
    plan = _base_plan(config)
    acc = 0.0
    for kind in EXCLUSIVE_KINDS:
        p = faults[kind]["p"]
        if p <= 0.0:
            continue
        acc += p
        if u_kind < acc:
            plan.kind = kind
            if "after_chunks" in faults[kind]:
                plan.after_chunks = int(faults[kind]["after_chunks"])
            break
    lat = faults["latency"]
    if lat["p"] > 0.0 and u_latency < lat["p"]:
        plan.latency_s = lat["fixed_s"] + lat["jitter_s"] * u_jitter
    slow = faults["slow_first_token"]
    if slow["p"] > 0.0 and u_slow < slow["p"]:
        plan.first_token_delay_s += slow["delay_s"]
    return plan


def from_header(value: str, config: dict[str, Any]) -> FaultPlan:
    """`x-mock-fault: kind[:param][,kind[:param]...]`; `none` forces a clean answer."""
    plan = _base_plan(config)
    plan.forced = True
    for item in value.split(","):
        item = item.strip()
        if not item or item in ("none", "ok"):
            continue
        name, _, param = item.partition(":")
        kind = canonical_kind(name.strip())
        number: float | None = None
        if param.strip():
            try:
                number = float(param)
            except ValueError as exc:
                raise ConfigError(f"x-mock-fault: {item!r}: the parameter must be a number") from exc
        field = HEADER_PARAM.get(kind)
        if kind == "latency":
            plan.latency_s = number if number is not None else config["faults"]["latency"]["fixed_s"]
        elif kind == "slow_first_token":
            plan.first_token_delay_s += number if number is not None else config["faults"][kind]["delay_s"]
        else:
            plan.kind = kind
            if field == "retry_after_s" and number is not None:
                plan.retry_after_s = number
            elif field == "after_chunks":
                plan.after_chunks = int(number if number is not None else config["faults"][kind]["after_chunks"])
    return plan


def _base_plan(config: dict[str, Any]) -> FaultPlan:
    faults = config["faults"]
    plan = FaultPlan(first_token_delay_s=float(config["stream"]["first_token_delay_s"]),
                retry_after_s=float(faults["rate_limit"]["retry_after_s"]))
    return plan

