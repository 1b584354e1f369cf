"""report.md's Mermaid headline chart (harness/analyze/mermaid.py): a well-formed xychart-beta block, at most 60
points on Mermaid's own x grid, first and last sample kept, and no block (no crash) for an empty or short run."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness.analyze.mermaid import MAX_POINTS, build_chart, inflation_chart, js_positions, number
from harness.analyze.report import render_report

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "runs" / "ca743df-phantom-budget"
# the xychart grammar's tokens (mermaid-js packages/mermaid/src/diagrams/xychart/parser/xychart.jison)
NUM = r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)"
STR = r'"[^"]*"'


def parse_block(lines: list[str]) -> dict[str, Any]:
    """Parse the fenced block the way the grammar reads it; raise AssertionError on anything else."""
    assert lines[0] == "```mermaid", lines[0]
    end = lines.index("```", 1)
    body = [line.strip() for line in lines[1:end] if line.strip()]
    out: dict[str, Any] = {"lines": [], "end": end}
    i = 0
    if body[0].startswith("%%{"):
        assert body[0].endswith("}%%")
        out["init"] = body[0]
        i = 1
    assert body[i] == "xychart-beta", body[i]
    for line in body[i + 1:]:
        if m := re.fullmatch(rf"title ({STR})", line):
            out["title"] = m.group(1).strip('"')
        elif m := re.fullmatch(rf"x-axis ({STR}) ({NUM}) --> ({NUM})", line):
            out["x"] = (m.group(1).strip('"'), float(m.group(2)), float(m.group(3)))
        elif m := re.fullmatch(rf"y-axis ({STR}) ({NUM}) --> ({NUM})", line):
            out["y"] = (m.group(1).strip('"'), float(m.group(2)), float(m.group(3)))
        elif m := re.fullmatch(rf"line ({STR}) \[({NUM}(?:, {NUM})*)\]", line):
            out["lines"].append((m.group(1).strip('"'), [float(v) for v in m.group(2).split(", ")]))
        else:
            raise AssertionError(f"not xychart grammar: {line[:80]}")
    return out


def rounds_frame(n: int, t0: float = -1.3, t1: float = 88.7, seed: int = 1, **cols: Any) -> pd.DataFrame:
    """Sample rounds like InflationResult.rounds: jittered times, a climbing counter, DB and truth below it."""
    rng = np.random.default_rng(seed)
    t = np.sort(np.r_[t0, t1, rng.uniform(t0, t1, max(0, n - 2))])[:n]
    true_high = np.linspace(0.0, 90.0, len(t))
    frame = pd.DataFrame({"t_rel": t, "counter": true_high * 30 + rng.uniform(0, 50, len(t)),
                          "db": np.maximum(true_high - 8, 0), "true_high": true_high})
    for key, values in cols.items():
        frame[key] = values
    return frame


def test_the_block_is_well_formed_with_equal_finite_series_on_mermaids_grid() -> None:
    rd = rounds_frame(240)
    rd.loc[5:9, "counter"] = np.nan       # rounds where no key existed: $0 held, not a hole in the line
    lines = inflation_chart(rd, picture="inflation.png")
    assert lines is not None
    block = parse_block(lines)
    assert block["title"] == "Redis counter vs DB spend vs true spend"
    assert [title for title, _ in block["lines"]] == ["Redis counter", "DB spend", "true spend"]
    n = len(block["lines"][0][1])
    assert 2 < n <= MAX_POINTS and all(len(values) == n for _, values in block["lines"])
    assert all(math.isfinite(v) for _, values in block["lines"] for v in values)
    x_title, x_min, x_max = block["x"]
    assert x_title == "seconds since load start" and (x_min, x_max) == (-1.3, 88.7)
    assert js_positions(x_min, x_max, n) == n          # Mermaid places exactly n points: none dropped
    _, y_min, y_max = block["y"]
    top = max(v for _, values in block["lines"] for v in values)
    assert y_min == 0 and top <= y_max <= top * 1.3
    assert '"plotColorPalette": "#d62728, #1f77b4, #2ca02c"' in block["init"]     # the PNG's red, blue, green
    caption = lines[block["end"] + 2]
    assert lines[block["end"] + 1] == "" and caption.startswith("*Lines, in order: 1. red: Redis counter")
    assert "2. blue: DB spend" in caption and "3. green: true spend" in caption and "inflation.png" in caption


def test_downsampling_keeps_the_first_and_last_sample() -> None:
    rd = rounds_frame(500, t0=0.27, t1=301.94, seed=7)
    chart = build_chart(rd)
    assert chart is not None and chart.points <= MAX_POINTS and chart.rounds == 500
    for key, values in chart.series:
        assert values[0] == pytest.approx(float(rd[key].iloc[0]))
        assert values[-1] == pytest.approx(float(rd[key].iloc[-1]))
    # in the Markdown too, to the printed precision
    block = parse_block(chart.lines())
    counter = dict(block["lines"])["Redis counter"]
    assert counter[0] == pytest.approx(rd["counter"].iloc[0], abs=0.005)
    assert counter[-1] == pytest.approx(rd["counter"].iloc[-1], abs=0.005)
    # a run with fewer rounds than the cap keeps one point per round
    assert build_chart(rounds_frame(25)).points == 25        # type: ignore[union-attr]


def test_the_point_count_avoids_mermaids_float_loop_dropping_the_last_point() -> None:
    # ranges where 60 points would lose the last one in Mermaid's `x += step` loop exist (so the check matters) …
    ranges = [(round(a, 1), round(a + span, 1)) for a in np.linspace(-3, 3, 13) for span in np.linspace(20, 400, 39)]
    assert any(js_positions(lo, hi, MAX_POINTS) != MAX_POINTS for lo, hi in ranges)
    # … and every chart's point count is one Mermaid lays out exactly
    for lo, hi in ranges:
        chart = build_chart(rounds_frame(200, t0=lo, t1=hi))
        assert chart is not None and chart.points > MAX_POINTS - 10
        assert js_positions(chart.x_min, chart.x_max, chart.points) == chart.points


@pytest.mark.parametrize("rd", [
    pd.DataFrame(columns=["t", "t_rel", "counter", "db", "counters", "true_low", "true_high"]),   # no samples
    rounds_frame(2),                                                                              # two rounds
    rounds_frame(30, t0=5.0, t1=6.2),                                                             # 1.2 s of samples
    rounds_frame(30, counter=np.nan, db=np.nan, true_high=np.nan),                               # nothing observed
    pd.DataFrame({"t_rel": [np.nan] * 5, "counter": [1.0] * 5}),                                  # no times
], ids=["empty", "two-rounds", "short-span", "all-nan", "no-times"])
def test_an_empty_or_very_short_run_gives_no_block(rd: pd.DataFrame) -> None:
    assert inflation_chart(rd) is None


def test_a_version_without_counters_draws_db_and_truth_and_says_so() -> None:
    lines = inflation_chart(rounds_frame(80, counter=np.nan))
    assert lines is not None
    block = parse_block(lines)
    assert [title for title, _ in block["lines"]] == ["DB spend", "true spend"]
    assert '"plotColorPalette": "#1f77b4, #2ca02c"' in block["init"]
    assert "1. blue: DB spend" in lines[-1] and "Not drawn (never observed): Redis counter." in lines[-1]


def test_cents_are_not_rounded_away_on_a_small_run() -> None:
    rd = rounds_frame(40)
    rd[["counter", "db", "true_high"]] *= 1e-4          # fractions of a cent
    block = parse_block(inflation_chart(rd) or [])
    _, _, y_max = block["y"]
    assert 0 < y_max < 1
    assert len({v for _, values in block["lines"] for v in values}) > 10     # not all "0.00"


def test_numbers_are_in_the_grammar() -> None:
    for value, decimals in [(-0.0001, 2), (1e-9, 4), (12345678.9, 2), (-3.25, 1), (1e20, 2)]:
        assert re.fullmatch(NUM, number(value, decimals)), number(value, decimals)
    assert number(-0.0001, 2) == "0.00"


def test_report_md_has_the_block_before_the_png_links(tmp_path: Path) -> None:
    from harness.analyze import analyze

    run = shutil.copytree(FIXTURE, tmp_path / "run")
    res = analyze(run)
    text = res.report_path.read_text()
    lines = text.splitlines()
    start = lines.index("```mermaid")
    block = parse_block(lines[start:])
    assert len(block["lines"]) == 3 and all(len(v) == len(block["lines"][0][1]) for _, v in block["lines"])
    assert block["x"][1] <= 0.5 and block["x"][2] > 30         # seconds since the load started, up to the drain
    pictures = [i for i, line in enumerate(lines) if re.fullmatch(r"!\[[^\]]*\]\((inflation|rejections|drain)\.png\)",
                                                                   line)]
    assert len(pictures) == 3 and start < pictures[0]            # the PNG links stay, after the chart
    assert not res.evidence["warnings"]
    # without the chart (no sample rounds) the report is as before: no empty fence
    vj: dict[str, Any] = res.evidence
    plain = render_report(vj, {}, "", ["inflation.png"], "results/x", chart=None)
    assert "```mermaid" not in plain and "![" in plain
