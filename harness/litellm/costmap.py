"""A real model's prices from LiteLLM's own cost map, as the proxy of that version sees them.

The proxy runs with `LITELLM_LOCAL_MODEL_COST_MAP=True` (harness/litellm/env.py), so it prices a model from the
cost map shipped inside its own package: `litellm/model_prices_and_context_window_backup.json` (read by
`litellm_core_utils/get_model_cost_map.py`; 1.84.0: "If LITELLM_LOCAL_MODEL_COST_MAP is set, uses the local
backup only"). A scenario with `pricing.cost_map_model` gets its prices from that very file of the version it
runs, so the analyzer's true spend and LiteLLM's reservation estimate (`budget_reservation.py`:
input tokens × input price + min(max_tokens or 16384, max_output_tokens) × output price) use the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import HarnessError

COST_MAP_FILE = "model_prices_and_context_window_backup.json"


def cost_map_file(venv: Path) -> Path:
    """The cost map inside an environment's site-packages (HarnessError when there is none)."""
    found = sorted(venv.glob(f"lib/python3*/site-packages/litellm/{COST_MAP_FILE}"))
    if not found:
        raise HarnessError(f"no LiteLLM cost map ({COST_MAP_FILE}) in {venv}", "rebuild it: harness env build <v>")
    return found[0]


def model_prices(path: Path, model: str) -> tuple[float, float, int | None]:
    """(input $/token, output $/token, max_output_tokens) of `model`; HarnessError when the map lacks it or its
    prices (a model priced otherwise, e.g. per second, cannot drive a token-priced reservation)."""
    data = json.loads(path.read_text())
    entry = data.get(model)
    if not isinstance(entry, dict):
        near = sorted(k for k in data if model.split("-")[0] in k)[:5]
        raise HarnessError(f"pricing.cost_map_model {model!r} is not in LiteLLM's cost map ({path.name})",
                           f"use a model the map names{', e.g. ' + ', '.join(near) if near else ''}")
    try:
        price_in = float(entry["input_cost_per_token"])
        price_out = float(entry["output_cost_per_token"])
    except (KeyError, TypeError, ValueError):
        raise HarnessError(f"pricing.cost_map_model {model!r} has no per-token prices in LiteLLM's cost map",
                           "pick a token-priced chat model") from None
    max_out = entry.get("max_output_tokens")
    return price_in, price_out, int(max_out) if isinstance(max_out, int | float) and max_out > 0 else None
