"""A real model's prices from the cost map inside a LiteLLM environment (harness/litellm/costmap.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.litellm import env as litellm_env
from harness.litellm.costmap import COST_MAP_FILE, cost_map_file, model_prices


def _venv_with(tmp_path: Path, data: dict[str, object]) -> Path:
    folder = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "litellm"
    folder.mkdir(parents=True)
    (folder / COST_MAP_FILE).write_text(json.dumps(data))
    return tmp_path / "venv"


def test_prices_and_max_output_of_a_model(tmp_path: Path) -> None:
    venv = _venv_with(tmp_path, {"gpt-5": {"input_cost_per_token": 1.25e-6, "output_cost_per_token": 1e-5,
                                           "max_output_tokens": 128000},
                                 "whisper-1": {"input_cost_per_second": 0.0001}})
    path = cost_map_file(venv)
    assert model_prices(path, "gpt-5") == (1.25e-6, 1e-5, 128000)
    with pytest.raises(HarnessError, match="has no per-token prices"):
        model_prices(path, "whisper-1")
    with pytest.raises(HarnessError, match="'gpt-6' is not in LiteLLM's cost map") as info:
        model_prices(path, "gpt-6")
    assert "gpt-5" in (info.value.fix or "")
    with pytest.raises(HarnessError, match="no LiteLLM cost map"):
        cost_map_file(tmp_path / "elsewhere")


def test_the_real_cost_map_of_a_built_version() -> None:
    envs = {e.version: e for e in litellm_env.cached()}
    if "1.84.0" not in envs:
        pytest.skip("LiteLLM 1.84.0 environment not built (make setup builds it)")
    price_in, price_out, max_out = model_prices(cost_map_file(envs["1.84.0"].venv), "gpt-5")
    assert (price_in, price_out, max_out) == (1.25e-6, 1e-5, 128000)     # read in the 1.84.0 wheel's file


def test_claude_in_the_cost_map_of_1_94_0() -> None:
    """upstream_api anthropic prices the deployment as a real Claude model of the version's own cost map."""
    envs = {e.version: e for e in litellm_env.cached()}
    if "1.94.0" not in envs:
        pytest.skip("LiteLLM 1.94.0 environment not built (harness env build 1.94.0)")
    assert model_prices(cost_map_file(envs["1.94.0"].venv), "claude-sonnet-4-5") == (3e-6, 1.5e-5, 64000)
