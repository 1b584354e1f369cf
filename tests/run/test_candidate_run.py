"""`harness run --litellm <wheel | source tree>`: the run keys everything on the declared version, names the
build exactly (meta.json, the run id, the command to reproduce, report.md's Environment table) and refuses what
cannot work before the run folder exists. Fake stack and stages (tests/run/test_experiment.py's harness)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.litellm.candidate import parse
from tests.litellm.test_candidate import git_tree, make_tree, make_wheel
from tests.run.test_experiment import SCENARIO, Harness, _nothing_created, _stages, isolated_dirs, load_spec

EXPECTING = SCENARIO + 'expect_by_version:\n  "1.108.7": clean\n'


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "unit-run.yaml"
    path.write_text(EXPECTING)
    return path


__all__ = ["isolated_dirs"]     # test_experiment's autouse fixture: results and state in tmp_path here too


def test_a_wheel_run_uses_the_declared_version_and_names_the_build(scenario_file: Path, tmp_path: Path,
                                                                   isolated_dirs: Path) -> None:
    whl = make_wheel(tmp_path / "dist" / "litellm-1.108.7-py3-none-any.whl", "1.108.7")
    build = parse(str(whl))
    h = Harness(tmp_path)
    assert h.run(scenario_file, lambda: _stages(h.log, busy_polls=1), litellm=str(whl), out=None) == 7
    run_dir = h.analyzed[0]
    assert run_dir.parent == isolated_dirs.resolve() and run_dir.name.endswith(f"-unit-run-{build.label}")
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["litellm_version"] == "1.108.7"                  # every version rule sees the declared version
    assert meta["expect"] == "clean"                             # expect_by_version["1.108.7"]
    assert meta["litellm_build"] == {"kind": "wheel", "version": "1.108.7", "label": build.label,
                                     "path": str(whl.resolve()), "sha256": build.sha256}
    assert f"--litellm {whl.resolve()} " in meta["command"]      # the command to reproduce names the file
    spec = h.stack.spec
    assert spec is not None and spec.version == "1.108.7" and spec.candidate == build
    assert "litellm: 1.108.7" in (run_dir / "scenario.yaml").read_text()


def test_a_release_run_records_its_build_too(scenario_file: Path, tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.run(scenario_file, lambda: _stages(h.log, busy_polls=1))
    assert h.meta()["litellm_build"] == {"kind": "pypi", "version": "1.84.0", "label": "1.84.0",
                                         "requirement": "litellm[proxy]==1.84.0"}
    assert "--litellm 1.84.0 " in h.meta()["command"]


def test_a_git_tree_run_records_commit_and_dirty_hash(scenario_file: Path, tmp_path: Path) -> None:
    tree = git_tree(tmp_path / "checkout")
    (tree / "litellm" / "__init__.py").write_text("VERSION = 2\n")
    build = parse(str(tree))
    h = Harness(tmp_path)
    h.run(scenario_file, lambda: _stages(h.log, busy_polls=1), litellm=str(tree))
    info = h.meta()["litellm_build"]
    assert info["kind"] == "tree" and info["git_commit"] == build.commit and info["git_dirty_sha256"] == build.dirty
    assert info["label"] == build.label and ".dirty." in build.label


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d / "missing.whl", "no such file or folder"),
    (lambda d: make_tree(d / "t", pyproject='[project]\nname = "openai"\nversion = "1.0.0"\n'), "not litellm"),
    (lambda d: make_wheel(d / "litellm-1.50.0-py3-none-any.whl", "1.50.0"), "older than the harness can drive"),
])
def test_a_bad_candidate_creates_no_run_folder(scenario_file: Path, tmp_path: Path, isolated_dirs: Path,
                                               make, message: str) -> None:
    h = Harness(tmp_path)
    with pytest.raises(HarnessError, match=message):
        h.run(scenario_file, lambda: _stages(h.log), litellm=str(make(tmp_path)), out=None)
    _nothing_created(h, isolated_dirs)
    assert h.factory_calls == []


def test_a_candidate_on_compose_is_refused_before_anything_exists(scenario_file: Path, tmp_path: Path,
                                                                  isolated_dirs: Path) -> None:
    whl = make_wheel(tmp_path / "litellm-1.84.0-py3-none-any.whl")
    h = Harness(tmp_path)
    with pytest.raises(HarnessError, match="compose backend runs released LiteLLM images only") as info:
        h.run(scenario_file, lambda: _stages(h.log), litellm=str(whl), backend="compose", out=None)
    assert "out of scope" in info.value.problem and info.value.fix == "run the candidate on the local backend " \
                                                                      "(--backend local)"
    _nothing_created(h, isolated_dirs)


def test_version_rules_use_the_declared_version(tmp_path: Path, isolated_dirs: Path) -> None:
    path = tmp_path / "off.yaml"
    path.write_text(SCENARIO + "litellm_settings:\n  disable_budget_reservation: true\n")
    h = Harness(tmp_path)
    old = make_tree(tmp_path / "old", "1.84.0")
    with pytest.raises(HarnessError, match="disable_budget_reservation needs LiteLLM 1.89.1 or newer"):
        h.run(path, lambda: _stages(h.log), litellm=str(old), out=None)
    _nothing_created(h, isolated_dirs)
    new = make_tree(tmp_path / "new", "1.89.1")
    assert h.run(path, lambda: _stages(h.log, busy_polls=1), litellm=str(new)) == 7


def test_reuse_needs_a_stack_running_the_same_build(scenario_file: Path, tmp_path: Path,
                                                    isolated_dirs: Path) -> None:
    whl = make_wheel(tmp_path / "litellm-1.84.0-py3-none-any.whl")
    build = parse(str(whl))
    h = Harness(tmp_path)
    h.stack.up(load_spec(scenario_file))                  # the release 1.84.0 (this fake names no build)
    h.log.events.clear()
    wants = re.escape(f"running stack is LiteLLM 1.84.0, the scenario wants {build.label}")
    with pytest.raises(HarnessError, match=wants):
        h.run(scenario_file, lambda: _stages(h.log), reuse=True, litellm=str(whl), out=None)
    _nothing_created(h, isolated_dirs)
    endpoints = h.stack.endpoints()
    assert endpoints is not None
    endpoints.build = "1.84.0"                              # a stack that names its build: the release
    with pytest.raises(HarnessError, match="running stack is LiteLLM 1.84.0"):
        h.run(scenario_file, lambda: _stages(h.log), reuse=True, litellm=str(whl), out=None)
    assert h.run(scenario_file, lambda: _stages(h.log, busy_polls=1), reuse=True) == 7     # the release itself
    endpoints.build = build.label                           # `harness up --litellm <the wheel>`
    assert h.run(scenario_file, lambda: _stages(h.log, busy_polls=1), reuse=True, litellm=str(whl),
                 out=tmp_path / "run2") == 7


def test_the_reports_environment_table_names_the_build(tmp_path: Path) -> None:
    from harness.analyze import analyze

    fixture = Path(__file__).resolve().parents[1] / "data" / "runs" / "ca743df-phantom-budget"
    run = shutil.copytree(fixture, tmp_path / "run")
    whl = make_wheel(tmp_path / "litellm-1.84.0-py3-none-any.whl")
    build = parse(str(whl))
    meta = json.loads((run / "meta.json").read_text())
    meta["litellm_build"] = build.public()
    (run / "meta.json").write_text(json.dumps(meta))
    report = analyze(run, plots=False).report_path.read_text()
    env = report[report.index("## Environment"):report.index("## Reproduce")]
    assert (f"| LiteLLM build | wheel declaring 1.84.0, sha256 {build.sha256}, {whl.resolve()} |") in env
    assert "| LiteLLM version | 1.84.0 |" in env
