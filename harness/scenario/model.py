"""The scenario schema: one YAML file describes one experiment (stack, budgets, load, faults, checks).

Loading a malformed file raises HarnessError with the file, the field path and what is wrong in one line;
that includes each fault window's params, validated against its kind's params model (harness/nemesis/registry.py)
(e.g. `faults.0.params.jiter_ms: Extra inputs are not permitted`) and an unknown kind (the known ones listed).
Every field carries its meaning as `Field(description=...)`: the schema reference in scenarios/README.md is
generated from them (harness/scenario/docs.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from harness.errors import HarnessError
from harness.nemesis.registry import fault_kind, known_kinds


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pricing(Strict):
    input_cost_per_token: float = Field(default=0.000001, ge=0, description="$ per prompt token")
    output_cost_per_token: float = Field(default=0.00001, ge=0, description="$ per completion token (× 16384 when no "
                                                                            "max_tokens is sent)")
    max_output_tokens: int | None = Field(
        default=None, gt=0, description="model_info.max_output_tokens of the mock model (caps LiteLLM's "
                                        "reservation estimate); null: not set")
    cost_map_model: str | None = Field(
        default=None, description="price the deployment as this real model of LiteLLM's own cost map (e.g. "
                                  "`gpt-5`): the proxy gets no custom prices and looks them up itself; the run fills "
                                  "the three fields above from the same version's cost map (what the analyzer "
                                  "uses), so any values given here are replaced")


class TeamBudget(Strict):
    max_budget: float | None = Field(default=None, gt=0, description="the team's max budget ($, `/team/new` "
                                                                     "max_budget); null: no team budget")


class KeyBudgets(Strict):
    count: int = Field(default=0, ge=0, le=1000, description="virtual keys the run creates (`/key/generate`); the "
                                                             "load sends every request with one of them (each end "
                                                             "user always with the same one); 0: the master key")
    max_budget: float | None = Field(default=None, gt=0, description="each key's max budget ($); null: no key budget")
    in_teams: bool = Field(default=True, description="put key i into team i mod len(teams) (`team_id`); false: no "
                                                     "key belongs to a team")


class Budget(Strict):
    default_max_budget: float | None = Field(default=50.0, gt=0, description="the default end-user budget ($); null: "
                                                                             "no default end-user budget")
    per_user: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="end user id → its own max budget ($), created with /customer/new")
    create_end_users: bool = Field(default=True, description="create every end user with /customer/new before the load "
                                                             "(a new end user has no budget until its DB row exists)")
    teams: list[TeamBudget] = Field(default_factory=list, description="teams the run creates (`/team/new`) for its "
                                                                      "keys (`keys.in_teams`)")
    keys: KeyBudgets = Field(default_factory=KeyBudgets, description="virtual keys the run creates and sends its "
                                                                     "requests with (harness/load/keys.py)")

    @model_validator(mode="after")
    def _teams_need_keys(self) -> Budget:
        if self.teams and not (self.keys.count and self.keys.in_teams):
            raise ValueError("teams need keys in them: set keys.count (and keys.in_teams: true)")
        return self


class EndUsers(Strict):
    count: int = Field(default=1000, ge=1, le=1_000_000, description="how many end-user ids")
    prefix: str = Field(default="eu-", description="ids are `<prefix><zero-padded index>`")
    pick: Literal["uniform", "hot_set"] = Field(default="uniform", description="uniform over all ids, or a hot set "
                                                                               "getting `hot_share` of the requests")
    hot_fraction: float = Field(default=0.05, gt=0, le=1, description="share of ids in the hot set")
    hot_share: float = Field(default=0.8, ge=0, le=1, description="share of requests that go to the hot set")

    def ids(self) -> list[str]:
        width = max(4, len(str(self.count - 1)))
        return [f"{self.prefix}{i:0{width}d}" for i in range(self.count)]


class Stage(Strict):
    duration_s: float = Field(gt=0, description="seconds of this stage")
    users: int = Field(ge=0, description="Locust users during the stage (0: a pause)")
    spawn_rate: float = Field(default=50.0, gt=0, description="users started per second")


class Load(Strict):
    users: int = Field(default=50, ge=1, description="concurrent Locust users")
    spawn_rate: float = Field(default=50.0, gt=0, description="users started per second")
    duration_s: float = Field(default=60.0, gt=0, description="seconds of load (ignored when `stages` is set)")
    stages: list[Stage] = Field(default_factory=list, description="a staged shape instead of users/duration")
    wait_s: tuple[float, float] = Field(default=(0.0, 0.2), description="think time between requests of one Locust "
                                                                        "user, [min, max] seconds")
    processes: int = Field(default=1, ge=1, description="Locust worker processes (compose, Locust in the stack: "
                                                        "worker containers)")
    where: Literal["auto", "host", "stack"] = Field(
        default="auto", description="where Locust runs: `host` (processes next to the harness), `stack` (inside the "
                                    "stack: Compose services `locust-master` + `locust-worker`), `auto` (the stack's "
                                    "own when its backend has one, i.e. compose; else host). $HARNESS_LOAD_IN "
                                    "overrides it")

    @field_validator("wait_s")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] < 0 or value[1] < value[0]:
            raise ValueError("must be [min, max] with 0 <= min <= max")
        return value

    @property
    def planned_duration_s(self) -> float:
        return sum(s.duration_s for s in self.stages) if self.stages else self.duration_s


def _default_choices() -> list[int | None]:
    return [256]


class MaxTokens(Strict):
    choices: list[Annotated[int, Field(gt=0)] | None] = Field(
        default_factory=_default_choices, description="max_tokens values to pick from; null in the list: send no "
                                                       "max_tokens (LiteLLM then reserves for 16384 output tokens)")
    weights: list[Annotated[float, Field(ge=0)]] | None = Field(default=None, description="relative weights of "
                                                                                          "`choices`; null: equal")

    @model_validator(mode="after")
    def _weights_match(self) -> MaxTokens:
        if not self.choices:
            raise ValueError("choices must not be empty")
        if self.weights is not None and len(self.weights) != len(self.choices):
            raise ValueError("weights must have one entry per choice")
        return self


class Retries(Strict):
    max: int = Field(default=0, ge=0, le=10, description="retries of a failed request")
    on_status: list[int] = Field(default_factory=lambda: [429, 500, 502, 503],
                                 description="HTTP statuses that are retried")
    backoff_s: float = Field(default=0.5, ge=0, description="first backoff, doubled per retry")


class FirstRequests(Strict):
    """The first `count` requests of every Locust user, planned apart from the mix (e.g. the minimal case: one
    streaming request with no max_tokens that the client cuts, then ordinary requests)."""

    count: int = Field(default=0, ge=0, description="how many of each Locust user's first requests (0: off)")
    stream: bool = Field(default=True, description="whether they stream")
    max_tokens: int | None = Field(default=None, gt=0, description="null: send no max_tokens (LiteLLM then "
                                                                   "reserves for 16384 output tokens)")
    disconnect_after_chunks: int | None = Field(default=1, ge=0, description="walk away after this many content chunks "
                                                                             "(0: as soon as the response headers are "
                                                                             "in); null: read to the end")


class Mix(Strict):
    endpoint: Literal["chat", "messages"] = Field(
        default="chat", description="the API the clients call on the proxy: `chat` (OpenAI chat completions at "
                                    "/chat/completions, key in `Authorization: Bearer`, end user in body `user`) or "
                                    "`messages` (Anthropic Messages at /v1/messages, as Claude Code sends them: key in "
                                    "`x-api-key`, end user in `metadata.user_id`; every request needs a max_tokens). "
                                    "Both also send the end user as header `x-litellm-end-user-id`")
    stream_share: float = Field(default=0.8, ge=0, le=1, description="share of requests that stream")
    disconnect_share: float = Field(default=0.2, ge=0, le=1, description="share of streaming requests whose client "
                                                                         "walks away")
    disconnect_after_chunks: tuple[int, int] = Field(default=(1, 1), description="walk away after k chunks, k in "
                                                                                 "[a, b]")
    disconnect_before_first_chunk_s: float | None = Field(default=
        None, gt=0, description="walk away before the first chunk arrives, after this many seconds "
                                "(slow-first-token case); null: off")
    client_timeout_s: float = Field(default=30.0, gt=0, description="the client gives up after this long "
                                                                    "(recorded as a timeout)")
    max_tokens: MaxTokens = Field(default_factory=MaxTokens, description="max_tokens each request sends")
    prompt_chars: tuple[int, int] = Field(default=(40, 400), description="prompt length range in characters (~4 per "
                                                                         "token)")
    retries: Retries = Field(default_factory=Retries, description="client retries")
    first_requests: FirstRequests = Field(default_factory=FirstRequests, description="the first requests of "
                                                                                     "each Locust user, planned "
                                                                                     "apart from the mix")

    @field_validator("disconnect_after_chunks", "prompt_chars")
    @classmethod
    def _range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] < 0 or value[1] < value[0]:
            raise ValueError("must be [min, max] with 0 <= min <= max")
        return value

    @model_validator(mode="after")
    def _messages_send_max_tokens(self) -> Mix:
        # Anthropic's Messages API requires max_tokens (LiteLLM's anthropic_messages() takes it as a required
        # argument), so a request without one is not a Messages request
        if self.endpoint == "messages" and (None in self.max_tokens.choices or (
                self.first_requests.count and self.first_requests.max_tokens is None)):
            raise ValueError("endpoint messages: every request needs a max_tokens (Anthropic's Messages API requires "
                             "it); no null in max_tokens.choices or first_requests.max_tokens")
        return self


class MockSettings(Strict):
    chunks: int = Field(default=20, ge=1, description="content chunks per streamed answer")
    chunk_delay_s: float = Field(default=0.05, ge=0, description="delay between chunks")
    first_token_delay_s: float = Field(default=0.0, ge=0, description="delay before the first chunk of every stream "
                                                                      "(slow model)")
    default_completion_tokens: int = Field(default=200, ge=1, description="completion tokens when the request sends no "
                                                                          "max_tokens")
    faults: dict[str, Any] = Field(default_factory=dict, description="the mock's fault config at start "
                                                                     "(harness/mockllm/config.py)")

    @field_validator("faults")
    @classmethod
    def _mock_accepts(cls, faults: dict[str, Any]) -> dict[str, Any]:
        # the mock would refuse a bad config only when the stack starts: refuse it at load instead
        from harness.mockllm.config import apply_patch, default_config, validate

        validate(apply_patch(default_config(), {"faults": faults}))   # ConfigError is a ValueError
        return faults


def _kind_known(kind: str) -> str:
    if fault_kind(kind) is None:
        raise PydanticCustomError("fault_kind", "unknown fault kind '{kind}'; known: {known}",
                                  {"kind": kind, "known": ", ".join(known_kinds())})
    return kind


class FaultWindow(Strict):
    kind: Annotated[str, AfterValidator(_kind_known)] = Field(
        description="what fails: one of the fault kinds below (harness/nemesis/kinds/)")
    at_s: float = Field(ge=0, description="seconds after the load starts")
    duration_s: float = Field(default=0.0, ge=0, description="seconds the fault stays on; 0: until the load ends (a "
                                                             "one-shot kind ignores it)")
    target: int | str | None = Field(default=None, description="replica index for kill_replica")
    params: dict[str, Any] = Field(default_factory=dict, description="the kind's params (see the fault kinds "
                                                                     "below); unknown keys are refused")

    @field_validator("params")
    @classmethod
    def _params_fit_the_kind(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        spec = fault_kind(info.data.get("kind", ""))
        if spec is not None:
            spec.parse(params)   # a ValidationError here is reported at faults.<i>.params.<field>
        return params


class LiteLLMSettings(Strict):
    disable_budget_reservation: bool | None = Field(default=None, description="general_settings (1.89.1+); null: not "
                                                                              "set")
    use_redis_transaction_buffer: bool = Field(default=True, description="general_settings")
    namespace: str | None = Field(default=None, description="litellm_settings.cache_params.namespace")
    proxy_batch_write_at: int | None = Field(default=None, gt=0, description="general_settings (seconds)")
    extra: dict[str, dict[str, Any]] = Field(default_factory=dict, description="anything else, merged verbatim "
                                                                               "into the rendered config: "
                                                                               '{"general_settings": {...}, ...}')


class Sampling(Strict):
    interval_s: float = Field(default=1.0, gt=0, description="seconds between samples")


Counters = Literal["redis", "memory"]
PROBE_ENTITIES = ("keys",)


class Probe(Strict):
    """The in-process counter probe (harness/run/probe.py): the proxy's own budget check reads the counter."""

    every_s: float = Field(default=10.0, ge=1, le=600, description="seconds between probe rounds (one more round "
                                                                   "after the drain)")
    entities: list[str] = Field(
        default_factory=lambda: ["keys"],
        description="what is probed: `keys` (each of the run's budgeted virtual keys, through every replica: its "
                    "max_budget is set to 0 with `/key/update`, one request with `max_tokens: 1` is rejected by the "
                    "read-time key check, whose `Current cost` is the counter, and the budget is restored). End "
                    "users cannot be probed: `/customer/update` ignores a max_budget of 0 and does not invalidate "
                    "the proxy's cached end-user object")
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="HTTP timeout of each probe call")

    @field_validator("entities")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one of: keys")
        for entity in value:
            if entity == "end_users":
                raise ValueError("end_users cannot be probed: LiteLLM's /customer/update drops a max_budget of 0 "
                                 "and never invalidates the cached end-user object (up to 60 s stale); use keys")
            if entity not in PROBE_ENTITIES:
                raise ValueError(f"unknown probe entity {entity!r}; known: {', '.join(PROBE_ENTITIES)}")
        return list(dict.fromkeys(value))


Expectation = Literal["reproduced", "clean"]
Check = Literal["phantom", "leak", "deflation"]


def _default_checks() -> list[Check]:
    return ["phantom", "leak"]


class Scenario(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="run ids and the report use it")
    description: str = Field(default="", description="one line for the report and the catalog list")
    issue: str | None = Field(default=None, description="upstream issue(s) this scenario shows")
    expect: Expectation = Field(description="the outcome expected on every version not in `expect_by_version`")
    expect_by_version: dict[str, Expectation] = Field(
        default_factory=dict, description='per-version expectations that override `expect`, e.g. '
                                          '{"1.108.7": "clean"}')
    versions: list[str] = Field(default_factory=list, description="the versions `harness catalog` runs this "
                                                                  "scenario on; empty: just `litellm`")
    checks: list[Check] = Field(
        default_factory=_default_checks,
        description="what counts as the bug (REPRODUCED): phantom rejections, leaked reservations after the "
                    "drain, and (opt-in) deflation — a counter below the true spend after the drain (e.g. "
                    "Redis restarted from an old snapshot)")
    backend: Literal["local", "compose", "external"] = Field(default="local", description="where the stack runs "
                                                                                          "(`harness run --backend` "
                                                                                          "overrides)")
    litellm: str = Field(default="1.84.0", description="the LiteLLM version `harness run` uses (`--litellm` overrides)")
    replicas: int = Field(default=2, ge=1, le=32, description="LiteLLM proxy processes; requests go round-robin over "
                                                              "them")
    model: str = Field(default="mock-gpt", description="the model name clients send (the mock serves it)")
    upstream_api: Literal["openai", "anthropic"] = Field(
        default="openai", description="the API the proxy's deployment speaks to the mock: `openai` (model_list "
                                      "`openai/<real OpenAI model>`, api_base the mock's /v1, calls its "
                                      "/v1/chat/completions) or `anthropic` (an Anthropic model served by the mock: "
                                      "`anthropic/<pricing.cost_map_model, else claude-sonnet-4-5>`, api_base the "
                                      "mock's root, to which LiteLLM appends /v1/messages). Independent of "
                                      "`mix.endpoint`: LiteLLM translates between the two")
    litellm_settings: LiteLLMSettings = Field(default_factory=LiteLLMSettings, description="proxy config "
                                                                                           "settings")
    pricing: Pricing = Field(default_factory=Pricing, description="the mock model's prices (they size "
                                                                  "LiteLLM's reservations)")
    budget: Budget = Field(default_factory=Budget, description="end-user, key and team budgets")
    end_users: EndUsers = Field(default_factory=EndUsers, description="the end-user ids the load sends (header "
                                                                      "`x-litellm-end-user-id` and body `user`)")
    load: Load = Field(default_factory=Load, description="the Locust load shape")
    mix: Mix = Field(default_factory=Mix, description="what each request looks like and how its client behaves")
    mock: MockSettings = Field(default_factory=MockSettings, description="the mock upstream's answers")
    faults: list[FaultWindow] = Field(default_factory=list, description="fault windows (the nemesis), relative "
                                                                        "to the load start")
    sampling: Sampling = Field(default_factory=Sampling, description="the Redis-counter / DB-spend sampler")
    counters: Counters = Field(
        default="redis",
        description="where LiteLLM keeps its spend counters: `redis` (the proxy config has a Redis cache, "
                    "`litellm_settings.cache`; the sampler reads `spend:*` from Redis) or `memory` (no cache in the "
                    "proxy config and `use_redis_transaction_buffer: false`: each proxy process keeps its counters "
                    "in its own memory — `spend_counter_cache`, a DualCache without Redis — so with replicas > 1 "
                    "every replica has its own counter of the same key; the sampler then reads only DB spend and "
                    "the counters are known only through `probe`). `memory` runs on the local backend only")
    probe: Probe | None = Field(default=None, description="read the proxies' own counters of the run's keys "
                                                          "through their budget check every `every_s` "
                                                          "(probes.csv); null: off. Needs `budget.keys` with a "
                                                          "max_budget")
    drain_s: float = Field(default=25.0, ge=0, le=55, description="seconds of sampling after the load ends (under the "
                                                                  "60 s counter TTL)")
    seed: int = Field(default=42, description="seeds the load's random choices")

    @field_validator("faults")
    @classmethod
    def _targets_exist(cls, faults: list[FaultWindow], info: ValidationInfo) -> list[FaultWindow]:
        replicas = info.data.get("replicas")
        if replicas is None:     # replicas itself was invalid: reported on its own
            return faults
        for i, window in enumerate(faults):
            spec = fault_kind(window.kind)
            bad_target = not isinstance(window.target, int) or not 0 <= window.target < replicas
            if spec is not None and spec.on == "replica" and bad_target:
                # a ValidationError raised here is reported at faults.<i>.target
                raise ValidationError.from_exception_data("FaultWindow", [{
                    "type": PydanticCustomError("replica_target", "{kind} needs a replica index 0..{last}",
                                                {"kind": window.kind, "last": replicas - 1}),
                    "loc": (i, "target"), "input": window.target}])
        return faults

    @model_validator(mode="after")
    def _counters_fit(self) -> Scenario:
        if self.counters == "memory":
            settings = self.litellm_settings
            if settings.use_redis_transaction_buffer and "use_redis_transaction_buffer" in settings.model_fields_set:
                raise ValueError("counters: memory has no Redis: set litellm_settings.use_redis_transaction_buffer: "
                                 "false (or leave it out)")
            if settings.namespace is not None:
                raise ValueError("counters: memory has no Redis cache: litellm_settings.namespace has no meaning")
            extra = settings.extra.get("litellm_settings") or {}
            if "cache" in extra or "cache_params" in extra:
                raise ValueError("counters: memory renders the proxy config without a cache: remove "
                                 "litellm_settings.extra.litellm_settings.cache/cache_params")
        if self.probe is not None and "keys" in self.probe.entities and \
                (not self.budget.keys.count or self.budget.keys.max_budget is None):
            raise ValueError("probe.entities keys needs budgeted virtual keys: set budget.keys.count and "
                             "budget.keys.max_budget")
        return self

    def expectation_for(self, version: str) -> str:
        return self.expect_by_version.get(version, self.expect)

    def catalog_versions(self) -> list[str]:
        """The versions `harness catalog` runs this scenario on."""
        return list(dict.fromkeys(self.versions)) or [self.litellm]

    def max_reservation(self, prompt_tokens: int | None = None, first_requests: bool = True,
                        end_user_cap: bool = True) -> float:
        """The largest reservation one request of this scenario can make (LiteLLM's estimate).

        first_requests=False: of the ordinary requests of the mix only (not `mix.first_requests`).
        end_user_cap=False: not capped by the default end-user budget (LiteLLM shrinks a reservation to what is left
        of the first budget it overflows; a key's and a team's counter come before the end user's).
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
        if end_user_cap and self.budget.default_max_budget is not None:
            estimate = min(estimate, self.budget.default_max_budget)
        return estimate

    def min_reservation(self, prompt_tokens: int | None = None) -> float:
        """The smallest reservation one ordinary request of this scenario makes (LiteLLM's estimate): the smallest
        max_tokens choice sent (weight > 0) with the shortest prompt."""
        weights = self.mix.max_tokens.weights or [1.0] * len(self.mix.max_tokens.choices)
        sent = [c for c, w in zip(self.mix.max_tokens.choices, weights, strict=True) if w > 0] or \
            list(self.mix.max_tokens.choices)
        out = min(16384 if c is None else c for c in sent)
        if self.pricing.max_output_tokens is not None:
            out = min(out, self.pricing.max_output_tokens)
        prompt = prompt_tokens if prompt_tokens is not None else max(1, -(-self.mix.prompt_chars[0] // 4))
        estimate = prompt * self.pricing.input_cost_per_token + out * self.pricing.output_cost_per_token
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
