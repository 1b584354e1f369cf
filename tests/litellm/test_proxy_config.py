import yaml

from harness.litellm.proxy_config import DEFAULT_BUDGET_ID, dump_config, generate_master_key, render_proxy_config
from harness.stack.base import StackSpec


def _render(**settings: object) -> dict:
    spec = StackSpec(version="1.84.0", replicas=2, litellm_settings=dict(settings), max_output_tokens=4096)
    return render_proxy_config(spec, mock_api_base="http://127.0.0.1:9/v1", redis_host="127.0.0.1", redis_port=7)


def test_counters_live_in_redis_and_cost_is_never_hidden_by_caching() -> None:
    config = _render(use_redis_transaction_buffer=True)
    ls = config["litellm_settings"]
    assert ls["cache"] is True
    assert ls["cache_params"] == {"type": "redis", "host": "127.0.0.1", "port": 7, "mode": "default_off"}
    assert ls["max_end_user_budget_id"] == DEFAULT_BUDGET_ID
    assert config["general_settings"]["use_redis_transaction_buffer"] is True


def test_pricing_and_mock_upstream() -> None:
    model = _render()["model_list"][0]
    assert model["litellm_params"]["api_base"] == "http://127.0.0.1:9/v1"
    assert model["litellm_params"]["output_cost_per_token"] > 0
    assert model["model_info"]["max_output_tokens"] == 4096


def test_no_secret_in_the_rendered_file() -> None:
    text = dump_config(_render())
    assert "sk-" not in text
    assert yaml.safe_load(text)["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"


def test_settings_knobs_and_extra() -> None:
    config = _render(disable_budget_reservation=True, namespace="ns1", proxy_batch_write_at=5,
                     extra={"router_settings": {"routing_strategy": "simple-shuffle"}})
    assert config["general_settings"]["disable_budget_reservation"] is True
    assert config["general_settings"]["proxy_batch_write_at"] == 5
    assert config["litellm_settings"]["cache_params"]["namespace"] == "ns1"
    assert config["router_settings"] == {"routing_strategy": "simple-shuffle"}


def test_master_keys_are_fresh_and_not_well_known() -> None:
    keys = {generate_master_key() for _ in range(5)}
    assert len(keys) == 5
    assert all(k.startswith("sk-") and len(k) > 30 for k in keys)


def test_a_cost_map_model_is_priced_by_the_proxy_itself() -> None:
    """pricing.cost_map_model: the deployment names the real model and carries no custom prices or max output, so
    LiteLLM looks them up in its own cost map (harness/litellm/costmap.py)."""
    spec = StackSpec(version="1.84.0", cost_map_model="gpt-5", input_cost_per_token=1.25e-6,
                     output_cost_per_token=1e-5, max_output_tokens=128000)
    model = render_proxy_config(spec, mock_api_base="http://m/v1", redis_host="h", redis_port=1)["model_list"][0]
    params = model["litellm_params"]
    assert params["model"] == "openai/gpt-5" and model["model_name"] == "mock-gpt"
    assert "input_cost_per_token" not in params and "output_cost_per_token" not in params
    assert "model_info" not in model


def test_an_anthropic_upstream_is_served_by_the_mock_at_its_root() -> None:
    """upstream_api anthropic: `anthropic/<claude model>` with api_base the mock's root — LiteLLM's anthropic
    provider appends /v1/messages (1.94.0 AnthropicMessagesConfig.get_complete_url; main.py for chat)."""
    spec = StackSpec(version="1.94.0", upstream_api="anthropic", cost_map_model="claude-sonnet-4-5")
    model = render_proxy_config(spec, mock_api_base="http://m:9/v1", redis_host="h", redis_port=1)["model_list"][0]
    params = model["litellm_params"]
    assert (params["model"], params["api_base"], model["model_name"]) == \
        ("anthropic/claude-sonnet-4-5", "http://m:9", "mock-gpt")
    assert "input_cost_per_token" not in params and "model_info" not in model   # priced from the cost map
    spec = StackSpec(version="1.94.0", upstream_api="anthropic", max_output_tokens=256)   # custom prices
    model = render_proxy_config(spec, mock_api_base="http://m:9/v1/", redis_host="h", redis_port=1)["model_list"][0]
    assert model["litellm_params"]["model"] == "anthropic/claude-sonnet-4-5"
    assert model["litellm_params"]["api_base"] == "http://m:9"
    assert model["litellm_params"]["output_cost_per_token"] > 0 and model["model_info"]["max_output_tokens"] == 256
