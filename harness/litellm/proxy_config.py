"""The LiteLLM proxy config: one template for every backend (local processes and Compose).

The master key is never in the file: the config reads it from the LITELLM_MASTER_KEY environment
variable, and DATABASE_URL likewise, so the rendered file can be kept in a run folder.
"""

from __future__ import annotations

import secrets
from typing import Any

import yaml

from harness.stack.base import ANTHROPIC_UPSTREAM_MODEL, StackSpec

DEFAULT_BUDGET_ID = "harness-default-end-user-budget"
MOCK_API_KEY = "mock-upstream-key"  # the mock LLM accepts any key; not a secret


def generate_master_key() -> str:
    """A per-stack master key (recent LiteLLM releases refuse well-known ones such as sk-1234)."""
    return "sk-harness-" + secrets.token_urlsafe(24)


def render_proxy_config(spec: StackSpec, *, mock_api_base: str, redis_host: str, redis_port: int,
                        budget_id: str | None = DEFAULT_BUDGET_ID) -> dict[str, Any]:
    """The proxy config as a dict (write it with `dump_config`). `mock_api_base`: the mock's OpenAI base URL
    (`<mock>/v1`)."""
    settings = dict(spec.litellm_settings)
    if spec.upstream_api == "anthropic":
        # an Anthropic model served by the mock: LiteLLM's anthropic provider calls `<api_base>/v1/messages`
        # (/v1/messages: AnthropicMessagesConfig.get_complete_url; /chat/completions: main.py's anthropic branch;
        # both append /v1/messages unless api_base ends with it: 1.94.0), so api_base is the mock's root
        model = f"anthropic/{spec.cost_map_model or ANTHROPIC_UPSTREAM_MODEL}"
        api_base = mock_api_base.removesuffix("/").removesuffix("/v1")
    else:
        # LiteLLM forwards the body `user` field only to a model it knows as an OpenAI chat model, so the
        # deployment names a real one (its own prices below replace the cost map's) served by the mock.
        model = f"openai/{spec.cost_map_model or spec.upstream_model}"
        api_base = mock_api_base
    litellm_params: dict[str, Any] = {
        "model": model,
        "api_base": api_base,
        "api_key": MOCK_API_KEY,
        "timeout": 120,
        "stream_timeout": 120,
        "max_retries": 0,
    }
    if not spec.cost_map_model:     # else the proxy prices the real model from its own cost map
        litellm_params["input_cost_per_token"] = spec.input_cost_per_token
        litellm_params["output_cost_per_token"] = spec.output_cost_per_token
    model_entry: dict[str, Any] = {"model_name": spec.model, "litellm_params": litellm_params}
    if spec.max_output_tokens is not None and not spec.cost_map_model:
        model_entry["model_info"] = {"max_output_tokens": spec.max_output_tokens}

    memory = spec.counters == "memory"
    litellm_settings: dict[str, Any] = {}
    if not memory:
        cache_params: dict[str, Any] = {
            "type": "redis",
            "host": redis_host,
            "port": redis_port,
            # response caching off unless asked for, so cost is never hidden by a cache hit
            "mode": "default_off",
        }
        if settings.get("namespace"):
            cache_params["namespace"] = settings["namespace"]
        litellm_settings.update(cache=True, cache_params=cache_params)
    # counters: memory — no cache at all: LiteLLM attaches no Redis to spend_counter_cache (proxy_server.py
    # `spend_counter_cache.attach_redis_cache` runs only for a Redis `litellm.cache`), so every process counts in
    # its own DualCache in memory
    litellm_settings.update({"drop_params": True, "request_timeout": 120, "num_retries": 0})
    if spec.default_budget is not None and budget_id is not None:
        litellm_settings["max_end_user_budget_id"] = budget_id

    general_settings: dict[str, Any] = {
        "master_key": "os.environ/LITELLM_MASTER_KEY",
        "database_url": "os.environ/DATABASE_URL",
        "use_redis_transaction_buffer": (not memory) and bool(settings.get("use_redis_transaction_buffer", True)),
        "disable_prisma_schema_update": True,
        # x-harness-request-id (and the end-user headers) reach the mock, so its ledger joins requests.csv
        "forward_client_headers_to_llm_api": True,
    }
    if settings.get("disable_budget_reservation") is not None:
        general_settings["disable_budget_reservation"] = bool(settings["disable_budget_reservation"])
    if settings.get("proxy_batch_write_at") is not None:
        general_settings["proxy_batch_write_at"] = int(settings["proxy_batch_write_at"])

    config: dict[str, Any] = {
        "model_list": [model_entry],
        "litellm_settings": litellm_settings,
        "general_settings": general_settings,
    }
    for section, values in (settings.get("extra") or {}).items():
        config.setdefault(section, {})
        if isinstance(config[section], dict) and isinstance(values, dict):
            config[section].update(values)
        else:
            config[section] = values
    return config


def proxy_cache_is_redis(config: dict[str, Any]) -> bool:
    """Whether the proxy config gives LiteLLM a Redis cache (what readiness expects in its `cache` field); False
    for a config without a cache (`counters: memory`): readiness then checks the database only."""
    settings = config.get("litellm_settings") or {}
    params = settings.get("cache_params") or {}
    return settings.get("cache") is True and params.get("type", "local") == "redis"


def dump_config(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)
