"""Scenario `counters` (redis | memory) and `probe`: what loads, what is refused (one line), what the proxy config
and the stack spec become."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.litellm.proxy_config import proxy_cache_is_redis, render_proxy_config
from harness.scenario.model import load_scenario
from harness.stack.base import StackSpec

KEYS = "budget: {keys: {count: 2, max_budget: 5.0, in_teams: false}}\n"


def _load(tmp_path: Path, text: str):  # noqa: ANN202
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nexpect: clean\n" + text)
    return load_scenario(path)


def _render(spec: StackSpec) -> dict:
    return render_proxy_config(spec, mock_api_base="http://127.0.0.1:9/v1", redis_host="127.0.0.1", redis_port=7)


def test_default_is_redis_and_no_probe(tmp_path: Path) -> None:
    s = _load(tmp_path, "")
    assert (s.counters, s.probe) == ("redis", None)
    assert StackSpec.from_scenario(s).counters == "redis"


def test_memory_counters_render_a_proxy_config_without_any_cache(tmp_path: Path) -> None:
    s = _load(tmp_path, "counters: memory\nreplicas: 3\n" + KEYS)      # several replicas: allowed
    spec = StackSpec.from_scenario(s)
    assert spec.counters == "memory" and spec.replicas == 3
    config = _render(spec)
    ls = config["litellm_settings"]
    assert "cache" not in ls and "cache_params" not in ls
    assert ls["drop_params"] is True and ls["max_end_user_budget_id"]
    assert config["general_settings"]["use_redis_transaction_buffer"] is False    # the default true: forced off
    assert proxy_cache_is_redis(config) is False                   # readiness then checks the database only
    redis_config = _render(StackSpec.from_scenario(_load(tmp_path, "")))
    assert proxy_cache_is_redis(redis_config) and redis_config["litellm_settings"]["cache_params"]["type"] == "redis"


def test_probe_fields_and_defaults(tmp_path: Path) -> None:
    s = _load(tmp_path, "counters: memory\nprobe: {every_s: 5}\n" + KEYS)
    assert s.probe is not None and (s.probe.every_s, s.probe.entities, s.probe.timeout_s) == (5.0, ["keys"], 10.0)
    assert _load(tmp_path, "probe: {}\n" + KEYS).probe is not None      # with Redis counters too (a cross-check)


@pytest.mark.parametrize(("text", "expected"), [
    ("counters: disk\n", "counters: Input should be 'redis' or 'memory'"),
    ("counters: memory\nlitellm_settings: {use_redis_transaction_buffer: true}\n",
     "counters: memory has no Redis: set litellm_settings.use_redis_transaction_buffer: false"),
    ("counters: memory\nlitellm_settings: {namespace: ns}\n", "namespace has no meaning"),
    ("counters: memory\nlitellm_settings: {extra: {litellm_settings: {cache: true}}}\n", "without a cache"),
    ("probe: {}\n", "probe.entities keys needs budgeted virtual keys"),
    ("probe: {}\nbudget: {keys: {count: 2}}\n", "needs budgeted virtual keys"),
    ("probe: {entities: [end_users]}\n" + KEYS, "probe.entities: Value error, end_users cannot be probed: LiteLLM's "
                                                "/customer/update drops a max_budget of 0"),
    ("probe: {entities: [teams]}\n" + KEYS, "unknown probe entity 'teams'; known: keys"),
    ("probe: {entities: []}\n" + KEYS, "name at least one of: keys"),
    ("probe: {every_s: 0.1}\n" + KEYS, "probe.every_s: Input should be greater than or equal to 1"),
    ("probe: {evry_s: 5}\n" + KEYS, "probe.evry_s: Extra inputs are not permitted"),
])
def test_bad_counters_or_probe_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(HarnessError) as err:
        _load(tmp_path, text)
    assert expected in str(err.value) and "\n" not in err.value.problem


def test_memory_counters_extend_a_redis_scenario(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("name: base\nexpect: clean\n" + KEYS)
    path = tmp_path / "m.yaml"
    path.write_text("extends: base.yaml\nname: m\ncounters: memory\nprobe: {every_s: 10}\n")
    s = load_scenario(path)
    assert s.counters == "memory" and s.probe is not None and s.budget.keys.count == 2
