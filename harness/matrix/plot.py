"""The matrix's summary picture: versions × scenarios coloured by verdict, then the numbers as bars."""

from __future__ import annotations

import textwrap
from pathlib import Path

from harness.analyze.summary import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from harness.matrix.cells import Cell
from harness.matrix.execute import ERROR, UNINSTALLABLE, UNSUPPORTED

COLORS = {REPRODUCED: "#f28e8e", NOT_REPRODUCED: "#9fd89a", INCONCLUSIVE: "#fdd49e",
          UNINSTALLABLE: "#d9d9d9", UNSUPPORTED: "#d9d9d9", ERROR: "#a0a0a0"}
MIXED_COLOR = "#cab2d6"
SHORT = {REPRODUCED: "REPRODUCED", NOT_REPRODUCED: "CLEAN", INCONCLUSIVE: "INCONCLUSIVE"}


def _version_key(v: str) -> tuple[int, ...] | tuple[float]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        return (float("inf"),)


def _head(c: Cell) -> str:
    return SHORT.get(c.verdict, c.verdict if len(c.verdict) < 18 else "MIXED")


def _cell_text(c: Cell) -> str:
    if c.matches is None:
        reason = textwrap.shorten(c.reason or "", 60, placeholder="…")
        return "\n".join(textwrap.wrap(reason, 22)[:3])
    lines = [f"expected {c.expected} " + ("✓" if c.matches else "✗ NO MATCH")]
    ph, leak = c.median("phantoms"), c.median("leaked_usd")
    lines.append("phantoms –" if ph is None else f"phantoms {ph:,.0f}")
    lines.append("leaked –" if leak is None else f"leaked ${leak:,.0f}" if leak >= 10 or leak == 0 else
                 f"leaked ${leak:.2g}")
    if len(c.runs) > 1:
        lines.append(f"({len(c.runs)} repeats)")
    return "\n".join(lines)


def plot_summary(cells: list[Cell], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    scenarios = list(dict.fromkeys(c.scenario for c in cells))
    versions = sorted(dict.fromkeys(c.version for c in cells), key=_version_key)
    by_key = {c.key: c for c in cells}
    nv, ns = max(1, len(versions)), max(1, len(scenarios))
    width = max(8.0, 2.1 * nv + 2.2)
    fig = plt.figure(figsize=(width, 1.55 * ns + 4.2), dpi=110)
    grid = fig.add_gridspec(2, 2, height_ratios=[1.55 * ns, 2.8], hspace=0.3, wspace=0.18)
    ax = fig.add_subplot(grid[0, :])
    for yi, scen in enumerate(scenarios):
        for xi, ver in enumerate(versions):
            c = by_key.get((scen, ver))
            y = ns - 1 - yi
            if c is None:
                ax.add_patch(Rectangle((xi, y), 1, 1, facecolor="white", edgecolor="#cccccc"))
                continue
            color = COLORS.get(c.verdict, MIXED_COLOR)
            bad = c.matches is False
            ax.add_patch(Rectangle((xi + 0.03, y + 0.04), 0.94, 0.92, facecolor=color,
                                   edgecolor="#b00000" if bad else "white", linewidth=3 if bad else 1))
            ax.text(xi + 0.5, y + 0.78, _head(c), ha="center", va="center", fontsize=10, fontweight="bold")
            ax.text(xi + 0.5, y + 0.40, _cell_text(c), ha="center", va="center", fontsize=8.5, linespacing=1.35,
                    color="#8b0000" if bad else "black")
    ax.set_xlim(0, nv)
    ax.set_ylim(0, ns)
    ax.set_xticks([i + 0.5 for i in range(nv)], [f"LiteLLM {v}" for v in versions], fontsize=9)
    ax.set_yticks([ns - 1 - i + 0.5 for i in range(ns)], scenarios, fontsize=9)
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=11, pad=28)

    for col, (metric, label, money) in enumerate((("phantoms", "phantom rejections", False),
                                                  ("leaked_usd", "leaked $ after the drain", True))):
        bx = fig.add_subplot(grid[1, col])
        step = 0.8 / ns
        for si, scen in enumerate(scenarios):
            xs: list[float] = []
            hs: list[float] = []
            colors: list[str] = []
            for xi, ver in enumerate(versions):
                c = by_key.get((scen, ver))
                v = c.median(metric) if c else None
                x = xi - 0.4 + step * (si + 0.5)
                if v is not None and c is not None:
                    xs.append(x)
                    hs.append(v)
                    colors.append(COLORS.get(c.verdict, MIXED_COLOR))
                elif c is not None:
                    bx.annotate(_head(c).lower(), (x, 0), ha="center", va="bottom",
                                fontsize=7, color="#666666", xytext=(0, 2), textcoords="offset points")
            # one scenario: bars coloured by verdict; several: one colour per scenario (the legend)
            if ns == 1:
                bars = bx.bar(xs, hs, width=step * 0.9, label=scen, color=colors, edgecolor="#555555")
            else:
                bars = bx.bar(xs, hs, width=step * 0.9, label=scen)
            for bar, h in zip(bars, hs, strict=True):
                text = (f"${h:,.0f}" if h >= 10 or h == 0 else f"${h:.2g}") if money else f"{h:,.0f}"
                bx.annotate(text, (bar.get_x() + bar.get_width() / 2, h),
                            ha="center", va="bottom", fontsize=7.5, xytext=(0, 2), textcoords="offset points")
        bx.set_xticks(range(nv), versions, fontsize=8, rotation=30 if nv > 6 else 0)
        bx.set_title(label, fontsize=10)
        bx.margins(y=0.18)
        bx.grid(axis="y", alpha=0.3)
        if ns > 1 and col == 0:
            bx.legend(fontsize=7, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
