"""The release gate (.github/workflows/release-gate.yml, `make release-gate`, docs/release-gate.md): the workflow
passes GitHub's workflow schema (check-jsonschema's vendored copy, offline), asks for least privilege, uploads,
summarises and publishes; it runs the Makefile's targets and nothing else, and the Makefile's one command line
works: its options exist and, with a fake runner, it writes matrix.md, the JUnit file and one JSON object."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from harness.analyze.summary import NOT_REPRODUCED, REPRODUCED
from harness.matrix.cells import read_csv
from harness.matrix.execute import CellResult, RealRunner
from harness.scenario.model import load_scenario

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "release-gate.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
SEED = ROOT / "scenarios" / "phantom-budget.yaml"


def workflow() -> dict[Any, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(doc, dict)
    return doc


def triggers(doc: dict[Any, Any]) -> dict[str, Any]:
    on = doc.get("on", doc.get(True))     # YAML 1.1 (PyYAML) reads the key `on` as True
    assert isinstance(on, dict)
    return on


def steps() -> list[dict[str, Any]]:
    (job,) = workflow()["jobs"].values()
    return list(job["steps"])


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    # any attempt to reach the network fails fast: the check must work offline
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120, env=env)


# -- the workflow file -----------------------------------------------------------------------------
def test_the_workflow_passes_githubs_workflow_schema_offline(tmp_path: Path) -> None:
    assert CHECK_JSONSCHEMA.exists(), "check-jsonschema is missing: pip install -e '.[dev]'"
    ok = schema_check(WORKFLOW)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok -- validation done" in ok.stdout
    # the check can fail: a misspelt trigger and a job without runs-on are refused
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("  workflow_dispatch:", "  workflow_dispatched:")
                      .replace("    runs-on: ubuntu-24.04\n", ""))
    bad = schema_check(broken)
    assert bad.returncode == 1 and "workflow_dispatched" in bad.stdout + bad.stderr


def test_triggers_manual_with_versions_scenario_baseline_and_on_release() -> None:
    on = triggers(workflow())
    assert set(on) == {"workflow_dispatch", "release"}
    inputs = on["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"versions", "scenario", "baseline"}
    assert all(i["type"] == "string" and i["required"] is False for i in inputs.values())
    assert on["release"] == {"types": ["published"]}


def test_permissions_are_least_privilege() -> None:
    doc = workflow()
    assert doc["permissions"] == {}                                  # nothing for jobs that do not ask
    (job,) = doc["jobs"].values()
    assert job["permissions"] == {"contents": "read", "checks": "write"}   # checkout; the JUnit check run
    text = WORKFLOW.read_text()
    assert "write-all" not in text and "read-all" not in text and "secrets." not in text


def test_every_action_is_pinned_to_a_release_tag() -> None:
    uses = [s["uses"] for s in steps() if "uses" in s]
    assert {u.split("@")[0] for u in uses} == {"actions/checkout", "actions/setup-python", "actions/upload-artifact",
                                                "mikepenz/action-junit-report"}
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+){0,2}", u) for u in uses), uses


def test_python_3_11_official_images_and_the_makefile_targets_only() -> None:
    (job,) = workflow()["jobs"].values()
    assert job["env"]["HARNESS_IMAGES"] == "official"
    python = next(s for s in steps() if s.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11"
    runs = [s["run"] for s in steps() if "run" in s]
    makes = [m for run in runs for m in re.findall(r"^\s*make ([\w-]+)", run, re.MULTILINE)]
    assert makes == ["release-gate-setup", "release-gate", "down"]    # in this order
    # the matrix command line lives in the Makefile only: the workflow never spells it out
    assert not any("harness" in run.replace("$GITHUB_STEP_SUMMARY", "") for run in runs)
    # the inputs reach the shell through the environment, never as ${{ }} inside a script
    assert not any("${{" in run for run in runs)
    assert {job["env"][k] for k in ("IN_VERSIONS", "IN_SCENARIO", "IN_BASELINE")} == {
        "${{ inputs.versions }}", "${{ inputs.scenario }}", "${{ inputs.baseline }}"}


def test_results_are_uploaded_summarised_and_published_even_when_the_gate_fails() -> None:
    by_use = {s["uses"].split("@")[0]: s for s in steps() if "uses" in s}
    upload = by_use["actions/upload-artifact"]
    assert upload["with"]["path"] == "${{ env.GATE_OUT }}" and upload["if"] == "${{ !cancelled() }}"
    junit = by_use["mikepenz/action-junit-report"]
    assert junit["with"]["report_paths"] == "${{ env.GATE_OUT }}/junit.xml" and junit["if"] == "${{ !cancelled() }}"
    assert junit["with"]["require_tests"] is True
    summary = next(s for s in steps() if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert summary["if"] == "${{ !cancelled() }}"
    assert 'cat "$GATE_OUT/matrix.md" >> "$GITHUB_STEP_SUMMARY"' in summary["run"]
    names = [s.get("name", "") for s in steps()]
    gate = next(i for i, s in enumerate(steps()) if re.search(r"^\s*make release-gate ", s.get("run", ""), re.M))
    assert gate < names.index(summary["name"]) and gate < names.index(upload["name"])


def test_the_input_step_turns_inputs_into_make_variables(tmp_path: Path) -> None:
    """Run the workflow's own shell: empty inputs leave the Makefile's defaults, given ones become variables."""
    step = next(s for s in steps() if "GITHUB_ENV" in s.get("run", ""))
    uses_args = [s["run"] for s in steps() if "make release-gate" in s.get("run", "")]

    def args_for(**inputs: str) -> list[str]:
        env_file = tmp_path / "env"
        env_file.write_text("")
        env = {"PATH": os.environ["PATH"], "GITHUB_ENV": str(env_file), "GATE_OUT": "results/release-gate",
               "IN_VERSIONS": inputs.get("versions", ""), "IN_SCENARIO": inputs.get("scenario", ""),
               "IN_BASELINE": inputs.get("baseline", "")}
        subprocess.run(["bash", "-e", "-c", step["run"]], env=env, check=True)
        m = re.fullmatch(r"GATE_ARGS<<(\w+)\n(.*)\n\1\n", env_file.read_text(), re.DOTALL)
        assert m, env_file.read_text()
        # what the next steps' `mapfile` makes of it
        script = 'mapfile -t args <<< "$GATE_ARGS"; printf "%s\\0" "${args[@]}"'
        out = subprocess.run(["bash", "-c", script], env={"GATE_ARGS": m.group(2)}, capture_output=True, text=True,
                             check=True).stdout
        return out.split("\0")[:-1]

    assert args_for() == ["GATE_OUT=results/release-gate"]
    assert args_for(versions="1.84.0,1.108.7", scenario="scenarios/a.yaml scenarios/b.yaml", baseline="none") == [
        "GATE_OUT=results/release-gate", "GATE_VERSIONS=1.84.0,1.108.7",
        "GATE_SCENARIO=scenarios/a.yaml scenarios/b.yaml", "GATE_BASELINE=none"]
    assert all('make release-gate' in run and '"${args[@]}"' in run for run in uses_args)


# -- the Makefile: the one command line ------------------------------------------------------------
def make_dry_run(*variables: str) -> list[list[str]]:
    """The commands `make release-gate` would run (make -n), each split like a shell would."""
    proc = subprocess.run(["make", "-n", "--no-print-directory", "release-gate", *variables], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return [shlex.split(line) for line in proc.stdout.splitlines() if line.strip()]


def matrix_command(*variables: str) -> tuple[list[str], str]:
    """`harness matrix …` from the dry run: (its arguments, the file its stdout goes to)."""
    (cmd,) = [c for c in make_dry_run(*variables) if c[0].endswith("/harness") and c[1] == "matrix"]
    assert cmd[-2] == ">", cmd
    return cmd[1:-2], cmd[-1]


def test_make_release_gate_runs_the_matrix_on_compose_with_junit_json_and_the_baseline(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    commands = make_dry_run(f"GATE_OUT={out}")
    assert ["scripts/setup-compose.sh"] in commands                  # release-gate-setup → setup-compose
    images = next(c for c in commands if c[1:3] == ["images", "build"])
    assert images[3:] == ["1.84.0", "1.108.7"]                        # the gate's versions, pulled first
    args, stdout_file = matrix_command(f"GATE_OUT={out}")
    opts = dict(zip(args[1::2], args[2::2], strict=False))
    assert opts["--backend"] == "compose" and opts["--versions"] == "1.84.0,1.108.7"
    assert opts["--scenario"] == "scenarios/phantom-budget.yaml" and opts["--baseline"] == "baselines/release-gate"
    assert opts["--out"] == str(out) and opts["--junit"] == f"{out}/junit.xml"
    assert "--json" in args and stdout_file == f"{out}/results.json"
    # two scenarios, no baseline
    args, _ = matrix_command(f"GATE_OUT={out}", "GATE_SCENARIO=scenarios/a.yaml scenarios/b.yaml",
                             "GATE_BASELINE=none", "GATE_VERSIONS=1.84.0")
    assert "--baseline" not in args and args.count("--scenario") == 2 and "scenarios/b.yaml" in args


def test_the_stored_baseline_has_a_cell_for_every_default_cell() -> None:
    args, _ = matrix_command("GATE_OUT=/nonexistent/gate")
    opts = dict(zip(args[1::2], args[2::2], strict=False))
    name = load_scenario(ROOT / opts["--scenario"]).name
    cells = read_csv(ROOT / opts["--baseline"] / "matrix.csv")
    assert {(c.scenario, c.version) for c in cells} == {(name, v) for v in opts["--versions"].split(",")}
    assert all(c.status == "ok" and c.matches for c in cells)          # a baseline of runs that decided


def test_the_makefile_command_line_works_with_a_fake_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact arguments of `make release-gate`, through the real CLI, with the cells faked: matrix.md,
    comparison.md (the baseline was read), a JUnit file with one case per cell and one JSON object."""
    from harness import cli
    from harness.matrix import execute

    seen: list[tuple[str | None, str]] = []

    def fake_call(self: RealRunner, scenario_path: Path, version: str, out_dir: Path) -> CellResult:
        seen.append((self.backend, version))
        verdict = NOT_REPRODUCED if version == "1.108.7" else REPRODUCED
        return CellResult("phantom-budget", version, verdict=verdict, phantoms=0 if verdict == NOT_REPRODUCED else 90,
                          leaked_usd=1500.0, wall_s=200.0)

    monkeypatch.setattr(execute.RealRunner, "__call__", fake_call)
    monkeypatch.chdir(ROOT)
    out = tmp_path / "gate"
    out.mkdir()                     # the recipe's mkdir -p
    args, _ = matrix_command(f"GATE_OUT={out}")
    result = CliRunner(mix_stderr=False).invoke(cli.app, args)
    assert result.exit_code == 0, result.stderr
    assert seen == [("compose", "1.84.0"), ("compose", "1.108.7")]
    doc = json.loads(result.stdout)
    assert doc["command"] == "matrix" and doc["exit_code"] == 0 and doc["counts"]["passed"] == 2
    assert doc["out_dir"] == str(out.absolute())
    cases = ET.parse(out / "junit.xml").getroot().findall("./testsuite/testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [("phantom-budget", "1.84.0"),
                                                                     ("phantom-budget", "1.108.7")]
    assert (out / "matrix.md").exists() and "baseline" in (out / "comparison.md").read_text()


def test_the_real_runner_on_compose_builds_no_local_environment(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.litellm import env as litellm_env
    from harness.run import experiment

    built: list[str] = []
    backends: list[str | None] = []

    def run_scenario(path: Path, opts: Any, console: Console) -> int:
        backends.append(opts.backend)
        return 0

    monkeypatch.setattr(litellm_env, "ensure", lambda version, console=None: built.append(version))
    monkeypatch.setattr(experiment, "run_scenario", run_scenario)
    quiet = Console(file=io.StringIO())
    RealRunner(quiet, backend="compose", retry_errors=0)(SEED, "1.84.0", tmp_path / "a")
    assert built == [] and backends == ["compose"]                    # Compose runs the version's image
    RealRunner(quiet, retry_errors=0)(SEED, "1.84.0", tmp_path / "b")
    assert built == ["1.84.0"] and backends == ["compose", None]      # the seed scenario is local: its env
