"""Candidate builds (a wheel, a source tree) as matrix cells and bisect ends: their labels name the cells, the
runner gets the build back, expectations use the declared version. No build, no stack: fakes stand in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness.analyze.summary import NOT_REPRODUCED, REPRODUCED
from harness.errors import HarnessError
from harness.litellm.candidate import parse
from harness.matrix import pypi
from harness.matrix.execute import UNSUPPORTED, CellResult, RealRunner
from harness.matrix.matrix import parse_versions
from tests.litellm.test_candidate import make_tree, make_wheel

SEED = Path(__file__).resolve().parents[2] / "scenarios" / "phantom-budget.yaml"


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"))  # noqa: SIM115


def test_versions_take_wheels_and_trees_as_their_labels(tmp_path: Path) -> None:
    whl = make_wheel(tmp_path / "litellm-1.84.0-py3-none-any.whl")
    tree = make_tree(tmp_path / "litellm-1.94.0", "1.94.0")
    labels = parse_versions(f"1.84.0,{whl} {tree},{whl}")
    assert labels == ["1.84.0", parse(str(whl)).label, parse(str(tree)).label]
    assert labels[1].startswith("1.84.0+wheel.") and labels[2].startswith("1.94.0+tree.")
    assert parse(labels[1]).path == whl.resolve()          # the label stands for the build in this process
    with pytest.raises(HarnessError, match="no such file or folder"):
        parse_versions(f"1.84.0,{tmp_path / 'missing.whl'}")
    with pytest.raises(HarnessError, match="or the path of a LiteLLM wheel / source tree"):
        parse_versions("1.84.0,banana")


def test_an_unseen_label_is_one_line_asking_for_the_path() -> None:
    with pytest.raises(HarnessError, match="names a LiteLLM candidate build by its label") as info:
        parse("1.84.0+wheel.0123456789abcdef")
    assert "pass the wheel or source tree" in info.value.line()


def test_the_real_runner_runs_the_candidate_and_expects_by_its_declared_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.litellm import env as litellm_env
    from harness.run import experiment

    whl = make_wheel(tmp_path / "dist" / "litellm-1.108.7-py3-none-any.whl", "1.108.7")
    label = parse_versions(str(whl))[0]
    built: list[Any] = []
    ran: list[Any] = []

    def run_scenario(path: Path, opts: Any, console: Any) -> int:
        ran.append(opts.litellm)
        scenario, build = experiment.resolve_build(path, opts)
        ran.append((scenario.litellm, build.label, build.kind))
        return 0

    monkeypatch.setattr(litellm_env, "ensure", lambda build, console=None: built.append(build))
    monkeypatch.setattr(experiment, "run_scenario", run_scenario)
    cell = RealRunner(quiet(), retry_errors=0)(SEED, label, tmp_path / "runs" / "c")
    assert cell.version == label and built == [label]
    assert ran == [label, ("1.108.7", label, "wheel")]
    assert cell.expected == "clean"          # the seed's expect_by_version["1.108.7"], by the declared version


def test_the_real_runner_calls_a_candidate_on_compose_unsupported(tmp_path: Path) -> None:
    label = parse(str(make_wheel(tmp_path / "litellm-1.84.0-py3-none-any.whl"))).label
    cell = RealRunner(quiet(), retry_errors=0, backend="compose")(SEED, label, tmp_path / "runs" / "c")
    assert cell.status == UNSUPPORTED and "compose backend runs released LiteLLM images only" in cell.reason


def test_bisect_between_two_candidate_ends_probes_the_releases_between_their_declared_versions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.matrix import bisect_command
    from harness.matrix import execute as mrunner

    bad = make_tree(tmp_path / "litellm-1.84.0", "1.84.0")
    good = make_wheel(tmp_path / "dist" / "litellm-1.100.0-py3-none-any.whl", "1.100.0")
    good_label, bad_label = parse(str(good)).label, parse(str(bad)).label
    index = {"releases": {v: [{"filename": "a.whl", "yanked": False}]
                          for v in ("1.83.14", "1.84.0", "1.86.0", "1.90.0", "1.95.0", "1.100.0", "1.108.7")}}
    probed: list[str] = []

    def fake_call(self: RealRunner, scenario_path: Path, version: str, out_dir: Path) -> CellResult:
        probed.append(version)
        out_dir.mkdir(parents=True)
        fixed = version == good_label or parse(version).version in ("1.95.0", "1.100.0")
        return CellResult("s", version, verdict=NOT_REPRODUCED if fixed else REPRODUCED)

    monkeypatch.setattr(pypi, "fetch_index", lambda *a, **k: index)
    monkeypatch.setattr(mrunner.RealRunner, "__call__", fake_call)
    code = bisect_command(SEED, good=str(good), bad=str(bad), duration=None, check_ends=True,
                          out=tmp_path / "b", console=quiet())
    assert code == 0
    # the ends by their labels; in between: the releases strictly between their declared versions 1.84.0 and
    # 1.100.0 (the releases 1.84.0 and 1.100.0 are not probed: the ends stand for them)
    assert probed[:2] == [bad_label, good_label] and set(probed[2:]) <= {"1.86.0", "1.90.0", "1.95.0"}
    md = (tmp_path / "b" / "bisect.md").read_text()
    assert f"between {good_label} (good) and {bad_label} (bad)" in md
    assert "first fixed (NOT REPRODUCED) release: 1.95.0" in md
    assert f"Versions in range: {bad_label}, 1.86.0, 1.90.0, 1.95.0, {good_label}" in md
