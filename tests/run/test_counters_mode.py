"""`counters: memory` and `probe` where they cannot run: refused with one line before anything starts (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.run.experiment import RunOptions, prepare
from harness.scenario.model import load_scenario
from harness.stack.base import StackSpec
from harness.stack.compose.stack import ComposeStack
from tests.conftest import FakeStack, fake_endpoints

SCENARIO = """\
name: mem
expect: reproduced
litellm: "1.84.0"
replicas: 1
counters: memory
probe: {every_s: 10}
budget: {keys: {count: 1, max_budget: 5.0, in_teams: false}}
"""


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "results"


def _file(tmp_path: Path, text: str = SCENARIO) -> Path:
    path = tmp_path / "mem.yaml"
    path.write_text(text)
    return path


def test_compose_refuses_memory_counters_before_touching_docker(tmp_path: Path) -> None:
    def no_docker() -> None:
        raise AssertionError("no engine may be asked")

    stack = ComposeStack("m", state_dir=tmp_path / "state", client_factory=no_docker)   # type: ignore[arg-type]
    spec = StackSpec.from_scenario(load_scenario(_file(tmp_path)))
    for call in (stack.preflight, stack.up):
        with pytest.raises(HarnessError, match="counters: memory runs on the local backend only") as err:
            call(spec)
        assert "\n" not in err.value.problem


def test_external_refuses_memory_counters_and_the_probe(tmp_path: Path, isolated_dirs: Path) -> None:
    from harness.stack.external import with_target
    from harness.stack.external.target import parse_target
    from tests.stack.test_external import target_data

    stack = with_target("x", parse_target(target_data()))
    with pytest.raises(HarnessError, match="counters: memory: the external backend runs what the target runs"):
        stack.preflight(StackSpec.from_scenario(load_scenario(_file(tmp_path))))
    target = tmp_path / "t.yaml"
    target.write_text("name: t\n")
    with pytest.raises(HarnessError, match="probe: the counter probe changes the budgets"):
        prepare(_file(tmp_path, SCENARIO.replace("counters: memory\n", "")),
                RunOptions(backend="external", target=target, out=tmp_path / "out"), lambda b, n: FakeStack(n))
    assert not (tmp_path / "out").exists()


def test_reuse_of_a_stack_with_its_counters_elsewhere_is_refused(tmp_path: Path, isolated_dirs: Path) -> None:
    stack = FakeStack("default")
    stack._endpoints = fake_endpoints()              # a running stack with Redis counters
    with pytest.raises(HarnessError, match="keeps its counters in redis, the scenario wants counters: memory") \
            as err:
        prepare(_file(tmp_path), RunOptions(reuse=True, out=tmp_path / "out"), lambda b, n: stack)
    assert "--counters memory" in err.value.fix and not (tmp_path / "out").exists()
