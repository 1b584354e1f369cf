"""The scenario schema: one YAML file describes one experiment (stack, budgets, load, faults, checks).

Loading a malformed file raises HarnessError with the file, the field path and what is wrong in one line.
The schema reference lives in scenarios/README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import HarnessError

FaultKind = Literal[
    # the mock LLM (its control endpoint)
    "mock_error",        # params: status (429|500|503), probability
    "mock_latency",      # params: latency_s, jitter_s, probability
    "mock_hang",         # params: probability
    "mock_reset",        # connection reset before the response; params: probability
    "mock_stream_cut",   # params: after_chunks, probability
    "mock_malformed",    # params: kind (json|sse), probability
    "mock_slow_first_token",  # params: delay_s
    # Redis, between the proxies and Redis (fault-injecting relay / Toxiproxy)
    "redis_latency",     # params: latency_ms, jitter_ms
    "redis_timeout",     # connections accepted, nothing forwarded
    "redis_reset",       # connections reset
    "restart_redis",     # stop + start Redis (params: flush: bool — start empty instead of from its dump)
    "flush_redis",       # FLUSHALL
    "snapshot_redis",    # SAVE now: a later restart_redis (flush: false) comes back to this (old) data set
    # proxies
    "kill_replica",      # SIGKILL replica `target` (int), restart it at the end of the window
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pricing(Strict):
    input_cost_per_token: Annotated[float, Field(ge=0)] = 0.000001
    output_cost_per_token: Annotated[float, Field(ge=0)] = 0.00001
    # model_info.max_output_tokens of the mock model (caps LiteLLM's reservation estimate); None = not set
    max_output_tokens: Annotated[int | None, Field(gt=0)] = None


class Budget(Strict):
    default_max_budget: Annotated[float | None, Field(gt=0)] = 50.0  # None: no default end-user budget
    per_user: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    # create every end user with /customer/new before the load (a new end user has no budget until its
    # DB row exists)
    create_end_users: bool = True


class EndUsers(Strict):
    count: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    prefix: str = "eu-"
    pick: Literal["uniform", "hot_set"] = "uniform"
    hot_fraction: Annotated[float, Field(gt=0, le=1)] = 0.05   # share of ids in the hot set
    hot_share: Annotated[float, Field(ge=0, le=1)] = 0.8       # share of requests that go to the hot set

    def ids(self) -> list[str]:
        width = max(4, len(str(self.count - 1)))
        return [f"{self.prefix}{i:0{width}d}" for i in range(self.count)]


class Stage(Strict):
    duration_s: Annotated[float, Field(gt=0)]
    users: Annotated[int, Field(ge=0)]
    spawn_rate: Annotated[float, Field(gt=0)] = 50.0


class Load(Strict):
    users: Annotated[int, Field(ge=1)] = 50               # concurrent Locust users
    spawn_rate: Annotated[float, Field(gt=0)] = 50.0
    duration_s: Annotated[float, Field(gt=0)] = 60.0
    stages: list[Stage] = Field(default_factory=list)     # a staged shape instead of users/duration
    wait_s: tuple[float, float] = (0.0, 0.2)              # think time between requests of one Locust user
    processes: Annotated[int, Field(ge=1)] = 1            # Locust worker processes

    @field_validator("wait_s")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] < 0 or value[1] < value[0]:
            raise ValueError("must be [min, max] with 0 <= min <= max")
        return value

    @property
    def planned_duration_s(self) -> float:
        return sum(s.duration_s for s in self.stages) if self.stages else self.duration_s


class MaxTokens(Strict):
    # None in `choices` means: send no max_tokens (LiteLLM then reserves for 16384 output tokens)
    choices: list[Annotated[int, Field(gt=0)] | None] = Field(default_factory=lambda: [256])
    weights: list[Annotated[float, Field(ge=0)]] | None = None

    @model_validator(mode="after")
    def _weights_match(self) -> MaxTokens:
        if not self.choices:
            raise ValueError("choices must not be empty")
        if self.weights is not None and len(self.weights) != len(self.choices):
            raise ValueError("weights must have one entry per choice")
        return self


class Retries(Strict):
    max: Annotated[int, Field(ge=0, le=10)] = 0
    on_status: list[int] = Field(default_factory=lambda: [429, 500, 502, 503])
    backoff_s: Annotated[float, Field(ge=0)] = 0.5


class FirstRequests(Strict):
    """The first `count` requests of every Locust user, planned apart from the mix (e.g. the minimal case: one
    streaming request with no max_tokens that the client cuts, then ordinary requests)."""

    count: Annotated[int, Field(ge=0)] = 0
    stream: bool = True
    # None: send no max_tokens (LiteLLM then reserves for 16384 output tokens)
    max_tokens: Annotated[int | None, Field(gt=0)] = None
    # walk away after this many content chunks (0: as soon as the response headers are in); None: read to the end
    disconnect_after_chunks: Annotated[int | None, Field(ge=0)] = 1


class Mix(Strict):
    stream_share: Annotated[float, Field(ge=0, le=1)] = 0.8
    disconnect_share: Annotated[float, Field(ge=0, le=1)] = 0.2    # of streaming requests
    disconnect_after_chunks: tuple[int, int] = (1, 1)              # walk away after k chunks, k in [a, b]
    # walk away before the first chunk arrives, after this many seconds (slow-first-token case); None = off
    disconnect_before_first_chunk_s: Annotated[float | None, Field(gt=0)] = None
    client_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    max_tokens: MaxTokens = Field(default_factory=MaxTokens)
    prompt_chars: tuple[int, int] = (40, 400)
    retries: Retries = Field(default_factory=Retries)
    first_requests: FirstRequests = Field(default_factory=FirstRequests)

    @field_validator("disconnect_after_chunks", "prompt_chars")
    @classmethod
    def _range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] < 0 or value[1] < value[0]:
            raise ValueError("must be [min, max] with 0 <= min <= max")
        return value


class MockSettings(Strict):
    chunks: Annotated[int, Field(ge=1)] = 20
    chunk_delay_s: Annotated[float, Field(ge=0)] = 0.05
    first_token_delay_s: Annotated[float, Field(ge=0)] = 0.0
    default_completion_tokens: Annotated[int, Field(ge=1)] = 200
    faults: dict[str, Any] = Field(default_factory=dict)   # the mock's fault config at start


class FaultWindow(Strict):
    kind: FaultKind
    at_s: Annotated[float, Field(ge=0)]                     # seconds after the load starts
    duration_s: Annotated[float, Field(ge=0)] = 0.0         # 0: a one-shot action (flush, restart)
    target: int | str | None = None                        # replica index for kill_replica
    params: dict[str, Any] = Field(default_factory=dict)


class LiteLLMSettings(Strict):
    disable_budget_reservation: bool | None = None   # general_settings (1.89.1+)
    use_redis_transaction_buffer: bool = True        # general_settings
    namespace: str | None = None                     # litellm_settings.cache_params.namespace
    proxy_batch_write_at: Annotated[int | None, Field(gt=0)] = None  # general_settings (s)
    # anything else, merged verbatim into the rendered config: {"general_settings": {...}, ...}
    extra: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Sampling(Strict):
    interval_s: Annotated[float, Field(gt=0)] = 1.0


class Scenario(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    description: str = ""
    issue: str | None = None                          # upstream issue(s) this scenario shows
    expect: Literal["reproduced", "clean"]
    # per-version expectations override `expect`, e.g. {"1.108.7": "clean"}
    expect_by_version: dict[str, Literal["reproduced", "clean"]] = Field(default_factory=dict)
    # the versions `harness catalog` runs this scenario on; empty: just `litellm`
    versions: list[str] = Field(default_factory=list)
    # what counts as the bug (REPRODUCED): phantom rejections, leaked reservations after the drain, and (opt-in)
    # deflation — a counter below the true spend after the drain (e.g. Redis restarted from an old snapshot)
    checks: list[Literal["phantom", "leak", "deflation"]] = Field(default_factory=lambda: ["phantom", "leak"])
    backend: Literal["local", "compose", "external"] = "local"
    litellm: str = "1.84.0"
    replicas: Annotated[int, Field(ge=1, le=32)] = 2
    model: str = "mock-gpt"
    litellm_settings: LiteLLMSettings = Field(default_factory=LiteLLMSettings)
    pricing: Pricing = Field(default_factory=Pricing)
    budget: Budget = Field(default_factory=Budget)
    end_users: EndUsers = Field(default_factory=EndUsers)
    load: Load = Field(default_factory=Load)
    mix: Mix = Field(default_factory=Mix)
    mock: MockSettings = Field(default_factory=MockSettings)
    faults: list[FaultWindow] = Field(default_factory=list)
    sampling: Sampling = Field(default_factory=Sampling)
    drain_s: Annotated[float, Field(ge=0, le=55)] = 25.0    # under the 60 s counter TTL
    seed: int = 42

    @model_validator(mode="after")
    def _check_faults(self) -> Scenario:
        for i, window in enumerate(self.faults):
            bad_target = not isinstance(window.target, int) or not 0 <= window.target < self.replicas
            if window.kind == "kill_replica" and bad_target:
                raise ValueError(f"faults.{i}.target: kill_replica needs a replica index 0..{self.replicas - 1}")
        return self

    def expectation_for(self, version: str) -> str:
        return self.expect_by_version.get(version, self.expect)

    def catalog_versions(self) -> list[str]:
        """The versions `harness catalog` runs this scenario on."""
        return list(dict.fromkeys(self.versions)) or [self.litellm]

    def max_reservation(self, prompt_tokens: int | None = None, first_requests: bool = True) -> float:
        """The largest reservation one request of this scenario can make (LiteLLM's estimate).

        first_requests=False: of the ordinary requests of the mix only (not `mix.first_requests`).
        """
        choices: list[int | None] = list(self.mix.max_tokens.choices)
        if first_requests and self.mix.first_requests.count:
            choices.append(self.mix.first_requests.max_tokens)
        out_tokens = [16384 if c is None else c for c in choices]
        worst_out = max(out_tokens)
        if self.pricing.max_output_tokens is not None:
            worst_out = min(worst_out, self.pricing.max_output_tokens)
        prompt = prompt_tokens if prompt_tokens is not None else max(1, self.mix.prompt_chars[1] // 4 + 8)
        estimate = prompt * self.pricing.input_cost_per_token + worst_out * self.pricing.output_cost_per_token
        if self.budget.default_max_budget is not None:
            estimate = min(estimate, self.budget.default_max_budget)
        return estimate

    def dump_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _format_error(path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: {loc}: {msg}{more}"


def parse_scenario(data: Any, source: Path) -> Scenario:
    if not isinstance(data, dict):
        raise HarnessError(f"{source}: (top level): must be a mapping of scenario fields",
                           "see scenarios/README.md for the schema")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise HarnessError(_format_error(source, exc), "fix the field (schema: scenarios/README.md)") from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`; mappings merge key by key, everything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> Any:
    if not path.exists():
        raise HarnessError(f"{path}: no such scenario file", "pass a file from scenarios/ or a path that exists")
    if path.resolve() in chain:
        raise HarnessError(f"{path}: extends: circular chain", "remove the cycle of `extends`")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        raise HarnessError(f"{path}: {where}: not valid YAML ({getattr(exc, 'problem', exc)})",
                           "fix the YAML syntax") from None
    if isinstance(data, dict) and "extends" in data:
        parent = data.pop("extends")
        if not isinstance(parent, str):
            raise HarnessError(f"{path}: extends: must be a file name", "e.g. extends: phantom-budget.yaml")
        base = _read_yaml(path.parent / parent, (*chain, path.resolve()))
        if not isinstance(base, dict):
            raise HarnessError(f"{path.parent / parent}: (top level): must be a mapping of scenario fields",
                               "see scenarios/README.md for the schema")
        # what a scenario says about itself is never inherited from its parent
        base = {k: v for k, v in base.items() if k not in ("expect_by_version", "versions")}
        data = deep_merge(base, data)
    return data


def load_scenario(path: Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Load and validate a scenario file; `overrides` are top-level fields set from the command line.

    A scenario may start with `extends: other.yaml` (relative to its own folder): it is then that file
    with this one's fields merged on top (mappings key by key).
    """
    data = _read_yaml(path)
    if isinstance(data, dict) and overrides:
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return parse_scenario(data, path)
