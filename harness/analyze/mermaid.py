"""The headline chart as text: a Mermaid `xychart-beta` block for report.md, which GitHub renders in an issue
comment pasted as-is (the PNGs need an upload; this does not).

Same data as the top panel of inflation.png: per sample round, the sum over end users of the Redis counter, of
the DB spend and of the true spend (the ledger's upper bound) — `InflationResult.rounds`.

How Mermaid draws it (mermaid-js, xychart `transformDataWithoutCategory`): with a numeric x axis
`x-axis "…" MIN --> MAX`, the i-th value of every `line` sits at MIN + i·(MAX − MIN)/(n − 1), and the positions are
made by adding the step in a float loop `for (x = MIN; x <= MAX; x += step)`. So the series are resampled here
onto that uniform grid (linear interpolation; the grid's ends are the first and the last sample round, whose
values are kept exactly), and n is chosen so that the float loop yields exactly n positions (it can stop one
short when the sum overshoots MAX by a rounding error, which would drop the last point). Numbers are written
without exponents or thousands separators: the grammar's number is `[+-]?(\\d+(\\.\\d+)?|\\.\\d+)`.

Mermaid draws no legend for xychart: the caption under the block names the lines in order, and an `init`
directive gives them the PNG's colours (red, blue, green).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

MAX_POINTS = 60
MIN_ROUNDS = 3          # fewer sample rounds: no chart (a line needs a few points to say anything)
MIN_SPAN_S = 2.0        # a run whose samples span less than this: no chart
X_TITLE = "seconds since load start"
Y_TITLE = "spend in $, sum over end users"
TITLE = "Redis counter vs DB spend vs true spend"
# (rounds column, line title, colour name in the caption, colour: the PNG's, harness/analyze/plots.py)
SERIES = (
    ("counter", "Redis counter", "red", "#d62728"),
    ("db", "DB spend", "blue", "#1f77b4"),
    ("true_high", "true spend", "green", "#2ca02c"),
)
_CAPTION_NAMES = {
    "counter": "Redis counter (the sum of every end user's `spend:end_user:<id>`)",
    "db": "DB spend (LiteLLM_EndUserTable)",
    "true_high": "true spend (the mock LLM's ledger, upper bound)",
}


@dataclass
class Chart:
    x_min: float
    x_max: float
    y_min: float
    y_max: float
    series: list[tuple[str, list[float]]]     # (rounds column, values on the grid)
    rounds: int                                # sample rounds the chart was made from
    decimals: int
    picture: str | None = None                 # the PNG with the full picture, named in the caption

    @property
    def points(self) -> int:
        return len(self.series[0][1])

    def lines(self) -> list[str]:
        """The Markdown: the fenced block, then the caption line."""
        palette = ", ".join(color for key, _, _, color in SERIES if key in dict(self.series))
        out = ["```mermaid",
               '%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "' + palette + '"}}}}%%',
               "xychart-beta",
               f'    title "{TITLE}"',
               f'    x-axis "{X_TITLE}" {number(self.x_min, 1)} --> {number(self.x_max, 1)}',
               f'    y-axis "{Y_TITLE}" {number(self.y_min, self.decimals)} --> {number(self.y_max, self.decimals)}']
        titles = {key: title for key, title, _, _ in SERIES}
        for key, values in self.series:
            out.append(f'    line "{titles[key]}" [' + ", ".join(number(v, self.decimals) for v in values) + "]")
        out.append("```")
        colors = {key: name for key, _, name, _ in SERIES}
        named = [f"{i}. {colors[key]}: {_CAPTION_NAMES[key]}" for i, (key, _) in enumerate(self.series, 1)]
        missing = [titles[key] for key, _, _, _ in SERIES if key not in dict(self.series)]
        step = (self.x_max - self.x_min) / (self.points - 1)
        caption = (f"*Lines, in order: {'; '.join(named)}."
                   + (f" Not drawn (never observed): {', '.join(missing)}." if missing else "")
                   + f" {self.points} points, one every {step:.1f} s, interpolated from {self.rounds} sample rounds"
                   + (f"; the exact series, the worst end users, fault windows and phantom rejections: {self.picture}.*"
                      if self.picture else ".*"))
        return [*out, "", caption]


def number(value: float, decimals: int) -> str:
    """A number Mermaid's xychart grammar reads: fixed point, no exponent, no separators, no '-0'."""
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def js_positions(x_min: float, x_max: float, n: int) -> int:
    """How many x positions Mermaid's float loop makes for n values on the range (Python floats are the same
    IEEE doubles as JavaScript numbers)."""
    step = (x_max - x_min) / (n - 1)
    count, x = 0, x_min
    while x <= x_max:
        count += 1
        x += step
    return count


def build_chart(rounds: pd.DataFrame, max_points: int = MAX_POINTS, picture: str | None = None) -> Chart | None:
    """The chart of one run's sample rounds, or None when there is nothing worth drawing."""
    if max_points < 2 or "t_rel" not in rounds:
        return None
    rd = rounds.loc[np.isfinite(pd.to_numeric(rounds["t_rel"], errors="coerce").to_numpy(dtype=float))]
    rd = rd.sort_values("t_rel")
    t = rd["t_rel"].to_numpy(dtype=float)
    if len(rd) < MIN_ROUNDS or t[-1] - t[0] < MIN_SPAN_S:
        return None
    x_min, x_max = float(number(t[0], 1)), float(number(t[-1], 1))
    raw: list[tuple[str, np.ndarray]] = []
    for key, _, _, _ in SERIES:
        if key not in rd:
            continue
        v = pd.to_numeric(rd[key], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(v).any():
            continue        # never observed (a version without counters): not a line of zeros
        # a round without a counter key / DB row: nothing held, nothing written yet ($0)
        raw.append((key, np.where(np.isfinite(v), v, 0.0)))
    if not raw:
        return None
    n = min(max_points, len(rd))
    while n > 2 and js_positions(x_min, x_max, n) != n:
        n -= 1
    grid = np.linspace(x_min, x_max, n)
    # the grid's ends are the first and last round, rounded to 0.1 s: evaluate there at the rounds' own times
    grid_t = grid.copy()
    grid_t[0], grid_t[-1] = t[0], t[-1]
    series = [(key, [float(y) for y in np.interp(grid_t, t, v)]) for key, v in raw]
    top = max(max(values) for _, values in series)
    bottom = min(min(values) for _, values in series)
    y_max = _nice_ceiling(top * 1.05) if top > 0 else 1.0
    y_min = 0.0 if bottom >= 0 else -_nice_ceiling(-bottom * 1.05)
    # cents on a dollar axis; two significant digits of the axis end on a smaller one (never "0.00" for $0.004)
    decimals = min(8, max(2, 2 - math.floor(math.log10(max(y_max, -y_min)))))
    return Chart(x_min=x_min, x_max=x_max, y_min=y_min, y_max=y_max, series=series, rounds=len(rd),
                 decimals=decimals, picture=picture)


def inflation_chart(rounds: pd.DataFrame, max_points: int = MAX_POINTS, picture: str | None = None) -> list[str] | None:
    """report.md's lines for the chart (block + caption), or None: too few samples, nothing observed."""
    chart = build_chart(rounds, max_points, picture)
    return None if chart is None else chart.lines()


def _nice_ceiling(value: float) -> float:
    """The next 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 × 10^k at or above `value` (an axis end a reader can read)."""
    exp = math.floor(math.log10(value))
    for m in (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        if m * 10 ** exp >= value:
            return float(m * 10 ** exp)
    return float(10 ** (exp + 1))
