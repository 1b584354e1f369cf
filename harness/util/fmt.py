"""How numbers read in reports, tables and the console: one money format, one percent format."""

from __future__ import annotations

from typing import Any


def money(v: Any) -> str:
    """$1,234.56 for large amounts, four significant digits below $100 ($0.0049), "–" for none."""
    if v is None:
        return "–"
    x = float(v)
    return f"${x:,.2f}" if abs(x) >= 100 else f"${x:.4g}"


def pct(v: Any) -> str:
    """A share (0..1) as "12.3 %", "–" for none."""
    return "–" if v is None else f"{100 * float(v):.1f} %"


def md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
