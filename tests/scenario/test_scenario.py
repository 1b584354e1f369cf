from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.scenario.model import load_scenario

SCENARIOS = sorted(Path(__file__).resolve().parents[2].joinpath("scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_every_catalog_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name
    assert scenario.expect in ("reproduced", "clean")
    assert scenario.drain_s < 60  # under the counter TTL


def test_seed_scenario_models_the_production_report() -> None:
    seed = load_scenario(Path("scenarios/phantom-budget.yaml"))
    assert seed.replicas == 4
    assert seed.litellm == "1.84.0"
    assert seed.expect == "reproduced"
    assert seed.litellm_settings.use_redis_transaction_buffer is True
    assert seed.budget.default_max_budget == 50.0
    assert seed.end_users.count >= 6000
    assert seed.end_users.pick == "hot_set"


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "expected"), [
    ("name: x\nexpect: maybe\n", "expect: Input should be 'reproduced' or 'clean'"),
    ("name: x\nexpect: clean\nreplicas: 0\n", "replicas: Input should be greater than or equal to 1"),
    ("name: x\nexpect: clean\nload: {users: 5, duraton_s: 3}\n", "load.duraton_s: Extra inputs are not permitted"),
    ("name: x\nexpect: clean\nmix: {disconnect_after_chunks: [3, 1]}\n", "mix.disconnect_after_chunks"),
    ("name: x\nexpect: clean\nfaults: [{kind: kill_replica, at_s: 1, target: 7}]\n",
     "faults.0.target: kill_replica needs a replica index 0..1"),
    ("name: x\nexpect: clean\nfaults: [{kind: explode, at_s: 1}]\n",
     "faults.0.kind: unknown fault kind 'explode'; known: mock_error, "),
    ("name: x\nexpect: clean\nfaults: [{kind: redis_latency, at_s: 1, params: {latency_ms: 100, jiter_ms: 50}}]\n",
     "faults.0.params.jiter_ms: Extra inputs are not permitted"),
    ("name: x\nexpect: clean\nfaults: [{kind: mock_hang, at_s: 0}, {kind: mock_error, at_s: 1, params: {status: 502}}]"
     "\n", "faults.1.params.status: Input should be 429, 500 or 503"),
    ("name: x\nexpect: clean\nfaults: [{kind: restart_redis, at_s: 1, params: {flush: maybe}}]\n",
     "faults.0.params.flush: Input should be a valid boolean"),
    ("name: x\nexpect: clean\nmock: {faults: {error_502: 0.1}}\n", "mock.faults: Value error, unknown fault kind "
     "'error_502'"),
    ("- a\n- b\n", "(top level): must be a mapping"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_malformed_file_names_file_field_and_problem_in_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(HarnessError) as info:
        load_scenario(path)
    line = info.value.line()
    assert str(path) in line
    assert expected in line
    assert "\n" not in line


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.yaml")


def test_extends_merges_mappings_and_does_not_inherit_version_expectations(tmp_path: Path) -> None:
    _write(tmp_path, "name: base\nexpect: reproduced\nexpect_by_version: {'1.108.7': clean}\n"
           "load: {users: 7, duration_s: 9}\n", "base.yaml")
    child = _write(tmp_path, "extends: base.yaml\nname: child\nexpect: clean\nload: {users: 3}\n", "child.yaml")
    scenario = load_scenario(child)
    assert scenario.name == "child"
    assert scenario.load.users == 3
    assert scenario.load.duration_s == 9
    assert scenario.expect_by_version == {}


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    _write(tmp_path, "extends: b.yaml\nname: a\nexpect: clean\n", "a.yaml")
    _write(tmp_path, "extends: a.yaml\nname: b\nexpect: clean\n", "b.yaml")
    with pytest.raises(HarnessError, match="circular"):
        load_scenario(tmp_path / "a.yaml")


def test_max_reservation_follows_litellm_estimate() -> None:
    seed = load_scenario(Path("scenarios/phantom-budget.yaml"))
    # no max_tokens → 16384 output tokens at the output price, plus the prompt
    assert seed.max_reservation(prompt_tokens=0) == pytest.approx(16384 * seed.pricing.output_cost_per_token)


# -- catalog additions: mix.first_requests, versions, checks, snapshot_redis -----------------------------
def test_first_requests_default_off_and_parsed(tmp_path: Path) -> None:
    assert load_scenario(_write(tmp_path, "name: a\nexpect: clean\n")).mix.first_requests.count == 0
    s = load_scenario(_write(tmp_path, "name: a\nexpect: clean\nmix:\n  first_requests: {count: 1, max_tokens: null, "
                             "disconnect_after_chunks: 1}\n"))
    fr = s.mix.first_requests
    assert (fr.count, fr.stream, fr.max_tokens, fr.disconnect_after_chunks) == (1, True, None, 1)
    with pytest.raises(HarnessError, match="mix.first_requests.count"):
        load_scenario(_write(tmp_path, "name: a\nexpect: clean\nmix: {first_requests: {count: -1}}\n"))


def test_max_reservation_with_and_without_first_requests() -> None:
    s = load_scenario(Path("scenarios/minimal.yaml"))
    assert s.max_reservation() == pytest.approx(2.0)          # the cut stream: shrunk to the whole budget
    own = s.max_reservation(first_requests=False)
    assert own == pytest.approx((80 // 4 + 8) * 0.000002 + 8 * 0.0016)


def test_first_requests_are_planned_apart_from_the_mix() -> None:
    import random

    from harness.load.client import RequestPlanner
    from harness.load.config import LoadConfig

    s = load_scenario(Path("scenarios/minimal.yaml"))
    endpoints = type("E", (), {"proxy_urls": ["http://127.0.0.1:1"], "master_key": ""})()
    cfg = LoadConfig.from_scenario(s, endpoints, Path("/tmp"))
    assert (cfg.first_requests, cfg.first_max_tokens, cfg.first_disconnect_after) == (1, None, 1)
    planner = RequestPlanner(cfg, random.Random(1))
    first, *rest = [planner.next() for _ in range(5)]
    assert first.stream and first.max_tokens is None and first.disconnect_after == 1
    assert all(not p.stream and p.max_tokens == 8 and p.disconnect_after is None for p in rest)


def test_versions_default_to_litellm_and_are_not_inherited(tmp_path: Path) -> None:
    base = _write(tmp_path, "name: base\nexpect: clean\nlitellm: '1.84.0'\nversions: ['1.84.0', '1.108.7']\n",
                  "base.yaml")
    assert load_scenario(base).catalog_versions() == ["1.84.0", "1.108.7"]
    child = _write(tmp_path, "extends: base.yaml\nname: child\nlitellm: '1.89.1'\n", "child.yaml")
    assert load_scenario(child).catalog_versions() == ["1.89.1"]


def test_checks_default_and_validation(tmp_path: Path) -> None:
    assert load_scenario(_write(tmp_path, "name: a\nexpect: clean\n")).checks == ["phantom", "leak"]
    s = load_scenario(_write(tmp_path, "name: a\nexpect: clean\nchecks: [phantom, leak, deflation]\n"))
    assert "deflation" in s.checks
    with pytest.raises(HarnessError, match="checks"):
        load_scenario(_write(tmp_path, "name: a\nexpect: clean\nchecks: [inflation]\n"))


def test_snapshot_redis_is_a_fault_kind(tmp_path: Path) -> None:
    s = load_scenario(_write(tmp_path, "name: a\nexpect: clean\nfaults: [{kind: snapshot_redis, at_s: 3}]\n"))
    assert s.faults[0].kind == "snapshot_redis"


@pytest.mark.parametrize("path", sorted(Path("scenarios").glob("*.yaml")), ids=lambda p: p.stem)
def test_catalog_scenarios_load_and_name_an_issue(path: Path) -> None:
    s = load_scenario(path)
    assert s.issue, f"{path}: a catalog scenario names its upstream issue"
    assert path.read_text().startswith("#"), f"{path}: starts with a header comment"
    for version in s.catalog_versions():
        assert s.expectation_for(version) in ("reproduced", "clean")


def test_key_and_team_budgets_default_off_and_parse(tmp_path: Path) -> None:
    plain = load_scenario(_write(tmp_path, "name: a\nexpect: clean\n"))
    assert plain.budget.keys.count == 0 and plain.budget.teams == []      # old scenarios: the master key
    s = load_scenario(_write(tmp_path, "name: a\nexpect: clean\nbudget:\n  teams: [{max_budget: 12}, {}]\n"
                                       "  keys: {count: 8, max_budget: 5}\n"))
    assert [t.max_budget for t in s.budget.teams] == [12.0, None]
    assert (s.budget.keys.count, s.budget.keys.max_budget, s.budget.keys.in_teams) == (8, 5.0, True)
    assert s.budget.default_max_budget == 50.0                            # end users keep theirs


@pytest.mark.parametrize(("budget", "expected"), [
    ("{keys: {count: 2, max_bugdet: 5}}", "budget.keys.max_bugdet: Extra inputs are not permitted"),
    ("{keys: {count: -1}}", "budget.keys.count: Input should be greater than or equal to 0"),
    ("{keys: {count: 2, max_budget: 0}}", "budget.keys.max_budget: Input should be greater than 0"),
    ("{teams: [{max_budget: 3}]}", "budget: Value error, teams need keys in them"),
    ("{teams: [{max_budget: 3}], keys: {count: 2, in_teams: false}}", "teams need keys in them"),
    ("{teams: [{budget: 3}], keys: {count: 2}}", "budget.teams.0.budget: Extra inputs are not permitted"),
])
def test_key_and_team_budget_errors_are_one_line(tmp_path: Path, budget: str, expected: str) -> None:
    with pytest.raises(HarnessError, match=expected.replace(".", r"\.")):
        load_scenario(_write(tmp_path, f"name: x\nexpect: clean\nbudget: {budget}\n"))


def test_key_team_budgets_scenario_sizes_budgets_against_its_reservation() -> None:
    s = load_scenario(Path("scenarios/key-team-budgets.yaml"))
    assert s.budget.keys.count == 8 and len(s.budget.teams) == 2 and s.replicas == 2
    reservation = s.max_reservation()
    assert reservation == pytest.approx(256 * 0.0016 + (200 // 4 + 8) * 0.000002)
    # room for phantoms: a key's budget is many reservations, and team 0's is less than its 4 keys' together
    assert s.budget.keys.max_budget is not None and s.budget.keys.max_budget > 10 * reservation
    assert s.budget.teams[0].max_budget is not None and s.budget.teams[0].max_budget < 4 * s.budget.keys.max_budget


def test_messages_endpoint_and_anthropic_upstream(tmp_path: Path) -> None:
    from harness.load.config import PATHS, LoadConfig
    from harness.stack.base import StackSpec

    plain = load_scenario(_write(tmp_path, "name: a\nexpect: clean\n"))
    assert (plain.mix.endpoint, plain.upstream_api) == ("chat", "openai")        # old scenarios: as before
    s = load_scenario(_write(tmp_path, "name: a\nexpect: clean\nupstream_api: anthropic\n"
                                       "pricing: {cost_map_model: claude-sonnet-4-5}\n"
                                       "mix: {endpoint: messages, max_tokens: {choices: [512, 4096]}}\n"))
    spec = StackSpec.from_scenario(s)
    assert (spec.upstream_api, spec.cost_map_model) == ("anthropic", "claude-sonnet-4-5")
    endpoints = type("E", (), {"proxy_urls": ["http://127.0.0.1:1"]})()
    cfg = LoadConfig.from_scenario(s, endpoints, tmp_path)    # type: ignore[arg-type]
    assert (cfg.endpoint, cfg.path) == ("messages", PATHS["messages"]) == ("messages", "/v1/messages")
    assert LoadConfig.from_json(cfg.to_json()).endpoint == "messages"
    old = cfg.to_json().replace('"endpoint": "messages",', "")                   # a config written before
    assert LoadConfig.from_json(old).endpoint == "chat"


@pytest.mark.parametrize(("mix", "expected"), [
    ("{endpoint: messages, max_tokens: {choices: [null, 64]}}", "mix: Value error, endpoint messages: every request "
     "needs a max_tokens"),
    ("{endpoint: messages, max_tokens: {choices: [64]}, first_requests: {count: 1}}", "every request needs a max"),
    ("{endpoint: anthropic}", "mix.endpoint: Input should be 'chat' or 'messages'"),
])
def test_messages_endpoint_errors(tmp_path: Path, mix: str, expected: str) -> None:
    with pytest.raises(HarnessError, match=expected):
        load_scenario(_write(tmp_path, f"name: x\nexpect: clean\nmix: {mix}\n"))
