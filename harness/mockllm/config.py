"""The mock's configuration: stream shape and fault probabilities, as plain JSON-able dicts.

Shape (every key optional; a fault given as a bare number means its probability):

    {"stream": {"chunks": 8, "chunk_delay_s": 0.02, "first_token_delay_s": 0.0,
                "completion_tokens": 64, "usage": "auto"},
     "faults": {"rate_limit": {"p": 0.1, "retry_after_s": 1}, "error_500": 0.05, ...},
     "models": ["mock-gpt"]}

Exclusive faults (at most one per request, drawn in this order from one uniform number):
rate_limit (429 + Retry-After), error_500, error_503, hang (accept, never answer), reset (connection reset
before the response), stream_cut (connection closed after `after_chunks` chunks; a non-stream body is cut
in half), malformed_json (a truncated JSON body; a broken JSON `data:` frame in a stream), malformed_sse
(a frame without the `data:` prefix after `after_chunks` chunks). Additive faults (independent draws):
latency (`fixed_s` + uniform jitter up to `jitter_s`, before the response) and slow_first_token
(`delay_s` more before the first chunk of a stream).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

EXCLUSIVE_KINDS = ("rate_limit", "error_500", "error_503", "hang", "reset", "stream_cut",
                   "malformed_json", "malformed_sse")
ADDITIVE_KINDS = ("latency", "slow_first_token")
FAULT_KINDS = EXCLUSIVE_KINDS + ADDITIVE_KINDS

ALIASES = {"429": "rate_limit", "500": "error_500", "503": "error_503", "cut": "stream_cut",
           "slow_first": "slow_first_token", "bad_json": "malformed_json", "bad_sse": "malformed_sse"}

FAULT_DEFAULTS: dict[str, dict[str, float]] = {
    "rate_limit": {"p": 0.0, "retry_after_s": 1.0},
    "error_500": {"p": 0.0},
    "error_503": {"p": 0.0},
    "hang": {"p": 0.0},
    "reset": {"p": 0.0},
    "stream_cut": {"p": 0.0, "after_chunks": 1},
    "malformed_json": {"p": 0.0, "after_chunks": 1},
    "malformed_sse": {"p": 0.0, "after_chunks": 1},
    "latency": {"p": 0.0, "fixed_s": 0.0, "jitter_s": 0.0},
    "slow_first_token": {"p": 0.0, "delay_s": 1.0},
}
# The meaning of `kind:param` in the x-mock-fault header.
HEADER_PARAM = {"rate_limit": "retry_after_s", "stream_cut": "after_chunks", "malformed_sse": "after_chunks",
                "malformed_json": "after_chunks",
                "latency": "fixed_s", "slow_first_token": "delay_s"}

STREAM_DEFAULTS: dict[str, Any] = {
    "chunks": 8,                 # content chunks per streamed response (fewer if fewer tokens)
    "chunk_delay_s": 0.02,       # pause between chunks
    "first_token_delay_s": 0.0,  # pause after the headers, before the first chunk
    "completion_tokens": 64,     # when the request sets neither max_tokens nor max_completion_tokens
    "usage": "auto",             # usage chunk in streams: auto (stream_options.include_usage) | always | never
}

DEFAULT_MODELS = ["mock-gpt"]


class ConfigError(ValueError):
    """A configuration or patch the mock cannot accept."""


def canonical_kind(name: str) -> str:
    kind = ALIASES.get(name, name)
    if kind not in FAULT_KINDS:
        raise ConfigError(f"unknown fault kind {name!r}; known: {', '.join(FAULT_KINDS)}")
    return kind


def default_config() -> dict[str, Any]:
    return {"stream": dict(STREAM_DEFAULTS), "faults": copy.deepcopy(FAULT_DEFAULTS), "models": list(DEFAULT_MODELS)}


def load_config_arg(arg: str | None) -> dict[str, Any]:
    """`--config`: inline JSON, or a path to a JSON file; empty → {}."""
    if not arg:
        return {}
    text = arg.strip()
    if not text.startswith("{"):
        text = Path(arg).read_text()
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ConfigError("the mock config must be a JSON object")
    return data


def split_patch(patch: dict[str, Any]) -> dict[str, Any]:
    """Accept {"faults": {...}, "stream": {...}} or a bare {kind: spec} mapping of faults."""
    if any(k in patch for k in ("faults", "stream", "models")):
        unknown = set(patch) - {"faults", "stream", "models"}
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        return patch
    return {"faults": patch}


def apply_patch(config: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A new config: `config` with `patch` merged in (per fault kind, per key). Validates the result."""
    patch = split_patch(patch)
    new = copy.deepcopy(config)
    for name, spec in (patch.get("faults") or {}).items():
        kind = canonical_kind(name)
        if isinstance(spec, int | float) and not isinstance(spec, bool):
            spec = {"p": spec}
        if not isinstance(spec, dict):
            raise ConfigError(f"fault {name!r}: expected a probability or an object, got {spec!r}")
        for key, value in spec.items():
            if key not in FAULT_DEFAULTS[kind]:
                raise ConfigError(f"fault {name!r}: unknown key {key!r}; known: {sorted(FAULT_DEFAULTS[kind])}")
            new["faults"][kind][key] = _number(f"{kind}.{key}", value)
    for key, value in (patch.get("stream") or {}).items():
        if key not in STREAM_DEFAULTS:
            raise ConfigError(f"stream: unknown key {key!r}; known: {sorted(STREAM_DEFAULTS)}")
        if key == "usage":
            if value not in ("auto", "always", "never"):
                raise ConfigError("stream.usage must be auto, always or never")
            new["stream"][key] = value
        else:
            new["stream"][key] = _number(f"stream.{key}", value)
    if "models" in patch:
        models = patch["models"]
        if not (isinstance(models, list) and all(isinstance(m, str) for m in models)):
            raise ConfigError("models must be a list of strings")
        new["models"] = list(models)
    validate(new)
    return new


def validate(config: dict[str, Any]) -> None:
    total = 0.0
    for kind, spec in config["faults"].items():
        p = spec["p"]
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"fault {kind}: p must be within [0, 1], got {p}")
        if kind in EXCLUSIVE_KINDS:
            total += p
    if total > 1.0 + 1e-9:
        raise ConfigError(f"the exclusive fault probabilities add up to {total:.3f} > 1")
    stream = config["stream"]
    if int(stream["chunks"]) < 1 or int(stream["completion_tokens"]) < 1:
        raise ConfigError("stream.chunks and stream.completion_tokens must be at least 1")
    if stream["chunk_delay_s"] < 0 or stream["first_token_delay_s"] < 0:
        raise ConfigError("stream delays must not be negative")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if value < 0:
        raise ConfigError(f"{name}: must not be negative")
    return value
