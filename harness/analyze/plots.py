"""The checks' pictures (PNG, sized to stay readable when GitHub shrinks them into an issue comment).

1. inflation.png  — Redis counter vs DB spend vs true spend (band), total and the worst end users (inflation)
2. rejections.png — rejections over time by class, with the request rate (phantom)
3. drain.png      — leaked amount per end user after the drain (sorted bars, or a histogram when many) (drain)

Each check that owns a picture calls its function here from its `plot`. Fault windows from faults.csv are
shaded and labelled on the time plots; one-shot kinds (harness.nemesis.registry) are drawn as a line.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from harness.analyze.checks.drain import DrainResult  # noqa: E402
from harness.analyze.checks.inflation import InflationResult  # noqa: E402
from harness.analyze.checks.phantom import PhantomResult  # noqa: E402
from harness.analyze.classify import BUDGET, OTHER, UPSTREAM  # noqa: E402
from harness.analyze.context import Context  # noqa: E402
from harness.analyze.windows import Window, fault_windows  # noqa: E402

DPI = 100
STYLE = {
    "font.size": 13, "axes.titlesize": 15, "axes.labelsize": 13, "legend.fontsize": 11,
    "xtick.labelsize": 12, "ytick.labelsize": 12, "lines.linewidth": 2.2, "axes.grid": True,
    "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": DPI,
    "text.parse_math": False,   # "$" in titles and labels is money, not mathtext
}
C_COUNTER, C_DB, C_TRUE, C_PHANTOM = "#d62728", "#1f77b4", "#2ca02c", "#9467bd"
C_BUDGET, C_UPSTREAM, C_OTHER = "#ff7f0e", "#8c564b", "#7f7f7f"
FAULT_COLORS = ("#fdd49e", "#c6dbef", "#d9d9d9", "#e5f5e0", "#fcbba1", "#dadaeb")
USER_COLORS = ("#d62728", "#1f77b4", "#ff7f0e", "#17becf")
MAX_MARKERS = 3000
X_LABEL = "seconds after the load started"


def money_tick(v: float, top: float) -> str:
    """An axis tick: whole dollars on an axis that reaches $10 ($6,000, $20: its ticks are whole), cents below
    ($2.50), significant digits under $0.10 — one format per axis (`top`: the largest |limit|)."""
    if v == 0:
        return "$0"
    if top >= 10:
        return f"${v:,.0f}"
    return f"${v:,.2f}" if abs(v) >= 0.1 else f"${v:.3g}"


def _money(ax: Axes, axis: str = "y") -> None:
    which = ax.yaxis if axis == "y" else ax.xaxis
    limits = ax.get_ylim if axis == "y" else ax.get_xlim
    which.set_major_formatter(mticker.FuncFormatter(lambda v, _: money_tick(v, max(abs(x) for x in limits()))))


def is_one_shot(kind: str) -> bool:
    """An action at one moment (a line on the plots), per the fault-kind registry; unknown kinds are windows."""
    from harness.nemesis.registry import fault_kind

    spec = fault_kind(kind)
    return bool(spec is not None and spec.one_shot)


def shade_faults(ax: Axes, ctx: Context, windows: list[Window], t_max: float) -> list[Patch | Line2D]:
    """Shade each fault window (a dash-dotted line for one-shot actions), label it; legend handles by kind."""
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    kinds: dict[str, str] = {}
    handles: dict[str, Patch | Line2D] = {}
    for w in windows:
        color = kinds.setdefault(w.kind, FAULT_COLORS[len(kinds) % len(FAULT_COLORS)])
        start = w.start - ctx.t0
        end = (w.end - ctx.t0) if w.end is not None else None
        one_shot = is_one_shot(w.kind) and (end is None or end - start < 1.0)
        if one_shot:
            ax.axvline(start, color="#636363", lw=1.5, ls="-.", zorder=1)
            handles.setdefault(w.kind, Line2D([], [], color="#636363", lw=1.5, ls="-.", label=f"fault: {w.kind}"))
        else:
            ax.axvspan(start, t_max if end is None else end, color=color, alpha=0.55, lw=0, zorder=0)
            handles.setdefault(w.kind, Patch(color=color, alpha=0.55, label=f"fault: {w.kind}"))
        ax.text(start, 0.985, f" {w.label}", transform=trans, rotation=90, va="top", ha="left", fontsize=10,
                color="#404040", clip_on=True)
    return list(handles.values())


def _legend(ax: Axes, handles: list, below: bool = False) -> None:
    """Legend outside the plot (right, or below): never hides data or fault labels."""
    labels = [h.get_label() for h in handles]
    if not handles:
        return
    if below:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(4, len(handles)),
                  borderaxespad=0, framealpha=0.9)
    else:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, framealpha=0.9)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 2})
    plt.close(fig)


def _mark_load_end(ax: Axes, ctx: Context) -> None:
    x = ctx.t_load_end - ctx.t0
    ax.axvline(x, color="black", lw=1.2, ls=":", zorder=1)
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    ax.text(x, 0.02, " load end", transform=trans, rotation=90, va="bottom", ha="right", fontsize=10)


def _thin(idx: np.ndarray, n: int = MAX_MARKERS) -> np.ndarray:
    if len(idx) <= n:
        return idx
    return idx[np.linspace(0, len(idx) - 1, n).astype(int)]


def plot_inflation(ctx: Context, infl: InflationResult, phantom: PhantomResult | None, path: Path) -> None:
    windows = fault_windows(ctx)
    with plt.rc_context(STYLE):
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12.5, 9), sharex=True, constrained_layout=True)
        rd = infl.rounds
        t_max = max(float(rd["t_rel"].max()) if len(rd) else 0.0, ctx.t_load_end - ctx.t0)
        table = phantom.table if phantom is not None else pd.DataFrame(columns=["phantom"])
        ph = table.loc[table["phantom"].astype(bool)] if len(table) else table
        if len(rd):
            ax1.fill_between(rd["t_rel"], rd["true_low"], rd["true_high"], color=C_TRUE, alpha=0.3, lw=0,
                             label="true spend (ledger band)")
            ax1.plot(rd["t_rel"], rd["true_high"], color=C_TRUE, lw=1.5)
            ax1.plot(rd["t_rel"], rd["counter"], color=C_COUNTER, label="Redis counter")
            ax1.plot(rd["t_rel"], rd["db"], color=C_DB, ls="--", label="DB spend")
        else:
            ax1.text(0.5, 0.5, "no samples (samples.csv empty)", transform=ax1.transAxes, ha="center",
                     fontsize=14)
        if len(ph):
            # a rug in a margin below $0: where the phantom rejections happened, never over the lines
            lo, hi = ax1.get_ylim()
            ax1.set_ylim(min(lo, -0.08 * hi), hi)
            ts = np.unique(np.round(ph["t_rel"].to_numpy(), 1))
            trans = blended_transform_factory(ax1.transData, ax1.transAxes)
            ax1.scatter(ts, np.full(len(ts), 0.03), marker="|", s=90, linewidths=1, color=C_PHANTOM,
                        transform=trans, label=f"phantom rejections ({len(ph):,})", zorder=4)
        ax1.set_title("All end users: Redis counter vs DB spend vs true spend")
        ax1.set_ylabel("spend (sum over end users)")
        _money(ax1)

        rows = infl.rows
        budgets: list[float] = []
        for i, code in enumerate(infl.worst_users):
            color = USER_COLORS[i % len(USER_COLORS)]
            u = rows.frame(rows.code == code, ctx.t0).sort_values("t")
            name = ctx.user(code)
            ax2.fill_between(u["t_rel"], u["true_low"], u["true_high"], color=color, alpha=0.18, lw=0)
            ax2.plot(u["t_rel"], u["true_high"], color=color, lw=1.2, ls=":")
            ax2.plot(u["t_rel"], u["counter"], color=color, label=f"{name}: counter")
            ax2.plot(u["t_rel"], u["db"], color=color, ls="--", lw=1.6, label=f"{name}: DB")
            mine = ph.loc[ph["end_user"] == name] if len(ph) else ph
            if len(mine):
                sel = _thin(np.arange(len(mine)))
                y = mine["printed_counter"].to_numpy()[sel]
                y = np.where(np.isnan(y), mine["threshold"].to_numpy()[sel], y)
                ax2.scatter(mine["t_rel"].to_numpy()[sel], y, marker="x", s=40, color=C_PHANTOM, zorder=5,
                            label="phantom rejection (printed counter)" if i == 0 or not budgets else None)
            b = ctx.budget_by_code[code] if code < len(ctx.budget_by_code) else np.nan
            if np.isfinite(b):
                budgets.append(b)
        for b in sorted(set(budgets)):
            ax2.axhline(b, color="black", ls="-.", lw=1.5, label=f"budget ${b:,.4g}")
        if not infl.worst_users:
            ax2.text(0.5, 0.5, "counters in process memory (counters: memory):\nnot readable for end users; the "
                     "keys' probed counters: probes.csv" if ctx.data.counters_in_memory
                     else "no Redis counters observed", transform=ax2.transAxes, ha="center", fontsize=14)
        ax2.set_title(f"Worst {len(infl.worst_users)} end user(s) by counter − true spend "
                      "(solid: counter, dashed: DB, band: true)")
        ax2.set_ylabel("spend per end user")
        ax2.set_xlabel(X_LABEL)
        _money(ax2)
        for ax in (ax1, ax2):
            fault_handles = shade_faults(ax, ctx, windows, t_max)
            _mark_load_end(ax, ctx)
            ax.set_xlim(left=min(0.0, float(rd["t_rel"].min()) if len(rd) else 0.0))
            _legend(ax, ax.get_legend_handles_labels()[0] + fault_handles)
        _save(fig, path)


def plot_rejections(ctx: Context, phantom: PhantomResult, path: Path) -> None:
    r = ctx.requests
    windows = fault_windows(ctx)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(12, 6.5), constrained_layout=True)
        t = r["t_rel"].to_numpy(dtype=float)
        if not len(t):
            ax.text(0.5, 0.5, "no requests", transform=ax.transAxes, ha="center", fontsize=14)
            _save(fig, path)
            return
        t_max = max(float(np.nanmax(t)), ctx.t_load_end - ctx.t0)
        t_min = min(0.0, float(np.nanmin(t)))
        width = max(1.0, float(np.ceil((t_max - t_min) / 120)))
        edges = np.arange(np.floor(t_min), t_max + width, width)
        cls = r["cls"].to_numpy()
        phantom_idx = phantom.table.index[phantom.table["phantom"]] if len(phantom.table) else []
        is_ph = np.zeros(len(r), dtype=bool)
        if len(phantom_idx):
            is_ph[r.index.get_indexer(phantom_idx)] = True
        series = [
            ("phantom budget", is_ph, C_PHANTOM),
            ("real budget", (cls == BUDGET) & ~is_ph, C_BUDGET),
            ("upstream error", cls == UPSTREAM, C_UPSTREAM),
            ("other (stack)", cls == OTHER, C_OTHER),
        ]
        bottom = np.zeros(len(edges) - 1)
        for label, mask, color in series:
            counts, _ = np.histogram(t[mask], bins=edges)
            rate = counts / width
            if counts.any():
                ax.stairs(bottom + rate, edges, baseline=bottom.copy(), fill=True, color=color, lw=0,
                          label=f"{label} ({int(mask.sum()):,})")
                bottom += rate
        ax.set_xlabel(X_LABEL)
        all_counts, _ = np.histogram(t, bins=edges)
        ok_counts, _ = np.histogram(t[cls == "ok"], bins=edges)
        ax.stairs(all_counts / width, edges, color="black", lw=2, label="requests / s (all)")
        ax.stairs(ok_counts / width, edges, color=C_TRUE, lw=2, ls="--", label="successful / s")
        ax.set_ylabel("per second (bars: rejections by class)")
        ax.set_ylim(bottom=0, top=max(float(all_counts.max()) / width, float(bottom.max()), 1.0) * 1.12)
        fault_handles = shade_faults(ax, ctx, windows, t_max)
        _mark_load_end(ax, ctx)
        _legend(ax, ax.get_legend_handles_labels()[0] + fault_handles, below=True)
        n_rej = phantom.rejections
        ax.set_title(f"Rejections by class over time ({n_rej:,} rejections of {len(r):,} requests; "
                     f"bins of {width:g} s)")
        _save(fig, path)


def plot_drain(ctx: Context, drain: DrainResult, path: Path) -> None:
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(12, 5.5), constrained_layout=True)
        if not drain.ran:
            ax.text(0.5, 0.5, f"drain check not run: {drain.why_not}", transform=ax.transAxes, ha="center",
                    fontsize=14)
            ax.set_axis_off()
        else:
            t = drain.table
            lk = drain.leaked.sort_values("leaked", ascending=False)
            after = f"{drain.after_load_end_s:.0f} s after load end" if drain.after_load_end_s is not None else ""
            if len(lk) and len(lk) <= 40:
                y = np.arange(len(lk))
                ax.barh(y, lk["leaked"], height=0.7, color=C_COUNTER, label="counter − true spend (high bound)")
                ax.barh(y, (lk["counter"] - lk["db"]).clip(lower=0), height=0.7, color="none", edgecolor=C_DB,
                        lw=2, label="counter − DB spend")
                ax.set_yticks(y, lk["end_user"].astype(str))
                ax.set_ylim(max(len(lk), 6) - 0.5, -0.5)
                _money(ax, "x")
                ax.set_xlabel("leaked reservation ($)")
                _legend(ax, ax.get_legend_handles_labels()[0], below=True)
                ax.set_title(f"Leaked reservations after the drain ({after})\n{len(lk)} of {len(t)} end users, "
                             f"${lk['leaked'].sum():,.4g} in total")
            elif len(lk):
                vals = lk["leaked"].to_numpy()
                ax.hist(vals, bins=min(40, max(10, len(vals) // 20)), color=C_COUNTER, edgecolor="white", lw=0.5)
                _money(ax, "x")
                ax.set_xlabel("leaked reservation per end user ($)")
                ax.set_ylabel("end users")
                ax.set_title(f"Leaked reservations after the drain ({after})\n{len(lk):,} of {len(t):,} end users, "
                             f"${vals.sum():,.2f} in total, worst ${vals.max():,.4g}")
            else:
                diff = (t["counter"] - t["true_high"]).to_numpy() if len(t) else np.zeros(0)
                if len(diff):
                    ax.hist(diff, bins=min(60, max(10, len(diff) // 10)), color=C_TRUE)
                    _money(ax, "x")
                ax.set_xlabel("counter − true spend (high bound) per end user ($)")
                ax.set_ylabel("end users")
                ax.set_title(f"No leaked reservations after the drain ({after}; {len(t):,} counters checked)")
        _save(fig, path)
