"""Numbers and rows as verdict.json wants them: finite floats rounded to 1e-9 (NaN/inf → null), plain types."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# flags of a check's table that are not evidence (they select the rows)
_FLAGS = ("code", "leak", "phantom", "undercount")


def num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if not np.isfinite(v) else round(v, 9)


def share(a: int, b: int) -> float | None:
    return round(a / b, 6) if b else None


def row_dict(row: pd.Series) -> dict[str, Any]:
    """One table row (a phantom rejection, a leaked end user) as a JSON object."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k in _FLAGS:
            continue
        if isinstance(v, bool | np.bool_):
            out[str(k)] = bool(v)
        elif isinstance(v, int | np.integer):
            out[str(k)] = int(v)
        elif isinstance(v, float | np.floating):
            out[str(k)] = num(v)
        else:
            out[str(k)] = str(v)
    return out
