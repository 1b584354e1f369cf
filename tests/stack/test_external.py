"""The external backend's own code: the target file, its capabilities, the run's end-user scope, the target file a
running stack prints, and the refusals (exit 2, one line, no run folder). The real runs against a real stack are
in test_external_e2e.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import HarnessError
from harness.nemesis.registry import check_capabilities
from harness.run.experiment import scope_end_users
from harness.scenario.model import load_scenario, parse_scenario
from harness.stack.base import RedisFaults, ReplicaControl, StackSpec
from harness.stack.external import ExternalStack, load_target, with_target
from harness.stack.external.fromstack import target_for
from harness.stack.external.probe import Probe
from harness.stack.external.target import parse_target
from tests.conftest import FakeStack

REPO = Path(__file__).resolve().parents[2]


def target_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "t", "proxy": {"url": "http://127.0.0.1:4000", "master_key_env": "T_KEY"},
        "redis": {"url": "redis://127.0.0.1:6379/0"}, "postgres": {"dsn": "postgresql://litellm@127.0.0.1/litellm"},
        "mock": {"url": "http://127.0.0.1:8000"}}
    data.update(changes)
    return data


def write_target(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(target_data(**changes)))
    return path


# -- the target file ---------------------------------------------------------------------------------------------
def test_a_loopback_target_reads_its_secrets_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KEY", "sk-from-env")
    target = load_target(write_target(tmp_path))
    assert target.master_key() == "sk-from-env" and target.remote_hosts() == {}
    (tmp_path / "key").write_text("sk-from-file\n")
    (tmp_path / "pw").write_text("hunter2")
    target = load_target(write_target(tmp_path, proxy={"url": "http://localhost:4000", "master_key_file": "key"},
                                      postgres={"dsn": "postgresql://u@127.0.0.1/db", "password_file": "pw"}))
    assert target.master_key() == "sk-from-file"          # relative to the target file's folder
    assert target.postgres_password() == "hunter2"
    assert "hunter2" not in target.to_yaml() and "sk-from" not in target.to_yaml()
    monkeypatch.delenv("T_KEY")
    with pytest.raises(HarnessError, match=r"\$T_KEY, which is not set"):
        load_target(write_target(tmp_path)).master_key()


@pytest.mark.parametrize(("changes", "message"), [
    ({"proxy": {"url": "http://127.0.0.1:4000"}}, "proxy: Value error, name exactly one of master_key_env"),
    ({"proxy": {"url": "http://x", "master_key_env": "A", "master_key_file": "b"}}, "exactly one"),
    ({"redis": {"url": "redis://:secret@127.0.0.1:6379/0"}}, "redis.url: Value error, must not carry a password"),
    ({"postgres": {"dsn": "postgresql://u:secret@127.0.0.1/db"}}, "must not carry a password"),
    ({"redis": {"url": "http://127.0.0.1:6379"}}, "must be a redis:// or rediss:// URL"),
    ({"capabilities": {"kill_replica": ["kubectl", "delete", "pod", "litellm-0"]}}, "with {index}"),
    ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
])
def test_a_bad_target_file_names_the_field(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(HarnessError, match=message.replace("{", r"\{").replace("}", r"\}")) as info:
        load_target(write_target(tmp_path, **changes))
    assert "target.yaml" in info.value.problem


def test_a_remote_target_needs_allow_remote(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"proxy.url points at 10.1.2.3, which is not this machine") as info:
        load_target(write_target(tmp_path, proxy={"url": "http://10.1.2.3:4000", "master_key_env": "K"}))
    assert "allow_remote: true" in (info.value.fix or "")
    with pytest.raises(HarnessError, match=r"load.master_host points at 10.9.9.9"):
        load_target(write_target(tmp_path, load={"master_host": "10.9.9.9", "workers": [{"command": ["ssh", "h"]}]}))
    target = load_target(write_target(tmp_path, allow_remote=True,
                                      mock={"url": "http://mock.staging.internal:8000"}))
    assert target.remote_hosts() == {"mock.url": "mock.staging.internal"}


def test_missing_or_broken_target_files(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="needs a target file"):
        load_target(None)
    with pytest.raises(HarnessError, match="does not exist"):
        load_target(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("proxy: [unclosed")
    with pytest.raises(HarnessError, match="not valid YAML"):
        load_target(tmp_path / "bad.yaml")


# -- capabilities ------------------------------------------------------------------------------------------------
def test_the_stack_has_exactly_the_capabilities_the_target_names() -> None:
    bare = with_target("x", parse_target(target_data()))
    assert not isinstance(bare, ReplicaControl) and not isinstance(bare, RedisFaults)
    kill = ["kubectl", "delete", "pod", "-l", "app=litellm,replica={index}"]
    full = with_target("x", parse_target(target_data(capabilities={"kill_replica": kill,
                                                                   "toxiproxy_url": "http://127.0.0.1:8474"})))
    assert isinstance(full, ReplicaControl) and isinstance(full, RedisFaults) and isinstance(full, ExternalStack)
    kill_window = {"kind": "kill_replica", "target": 0, "at_s": 5, "duration_s": 5}
    windows = parse_scenario({"name": "k", "expect": "reproduced", "faults": [kill_window]}, Path("k.yaml")).faults
    check_capabilities(windows, full)
    with pytest.raises(HarnessError, match="needs the stack capability ReplicaControl, which the external backend"):
        check_capabilities(windows, bare)


def test_the_kill_command_gets_the_replica_index(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    stack = with_target("x", parse_target(target_data(capabilities={
        "kill_replica": ["sh", "-c", f"echo {{index}} >> {out}"]})))
    assert isinstance(stack, ReplicaControl)
    stack.kill_replica(2)
    assert out.read_text() == "2\n"
    fails = ["sh", "-c", "exit 3 # {index}"]
    failing = with_target("x", parse_target(target_data(capabilities={"kill_replica": fails})))
    assert isinstance(failing, ReplicaControl)
    with pytest.raises(HarnessError, match="exited 3"):
        failing.kill_replica(0)


# -- what preflight refuses --------------------------------------------------------------------------------------
def _stack_with_probe(found: Probe) -> ExternalStack:
    stack = ExternalStack("x", parse_target(target_data()))
    stack.probe = found
    return stack


def test_pricing_and_model_must_match_the_scenario() -> None:
    spec = StackSpec(version="1.84.0", model="mock-gpt", input_cost_per_token=0.000002, output_cost_per_token=0.0016)
    ok = Probe(version="1.84.0", pricing={"mock-gpt": {"input_cost_per_token": 0.000002,
                                                       "output_cost_per_token": 0.0016}})
    _stack_with_probe(ok)._check_pricing(spec, ok)
    cheap = Probe(version="1.84.0", pricing={"mock-gpt": {"input_cost_per_token": 0.000001,
                                                          "output_cost_per_token": 0.00001}})
    with pytest.raises(HarnessError, match=r"prices mock-gpt differently .* output_cost_per_token 1e-05 "
                                           r"\(scenario: 0.0016\)") as info:
        _stack_with_probe(cheap)._check_pricing(spec, cheap)
    assert "harness up --scenario" in (info.value.fix or "")
    other = Probe(version="1.84.0", pricing={"gpt-4o": {}})
    with pytest.raises(HarnessError, match=r"serves no model named 'mock-gpt' \(it serves: gpt-4o\)"):
        _stack_with_probe(other)._check_pricing(spec, other)


# -- the run's end users -----------------------------------------------------------------------------------------
def test_every_end_user_of_an_external_run_carries_the_run_tag() -> None:
    sc = parse_scenario({"name": "s", "expect": "reproduced", "end_users": {"count": 3, "prefix": "eu-"},
                         "budget": {"per_user": {"vip": 5.0}}}, Path("s.yaml"))
    tag = scope_end_users(sc, "20261130-090000-s-1.84.0")
    assert tag.startswith("r") and tag.endswith("-") and len(tag) == 12
    assert sc.end_users.ids() == [f"{tag}eu-0000", f"{tag}eu-0001", f"{tag}eu-0002"]
    assert sc.budget.per_user == {f"{tag}vip": 5.0}
    assert scope_end_users(parse_scenario({"name": "s", "expect": "reproduced"}, Path("s.yaml")),
                           "20261130-090001-s-1.84.0") != tag      # another run, another tag


# -- a target file for a running stack ---------------------------------------------------------------------------
def test_a_running_stack_prints_a_target_without_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    stack = FakeStack("s1")
    with pytest.raises(HarnessError, match="not running"):
        target_for(stack)
    endpoints = stack.up(StackSpec(version="1.84.0", replicas=2))
    endpoints.postgres_dsn = "postgresql://litellm:pg-secret@127.0.0.1:5433/litellm"
    stack.backend = "compose"
    endpoints.redis_fault_url = "http://127.0.0.1:8474"
    target = target_for(stack)
    text = target.to_yaml()
    assert endpoints.master_key not in text and "pg-secret" not in text
    assert target.master_key() == endpoints.master_key and target.postgres_password() == "pg-secret"
    assert target.proxy.load_urls == endpoints.proxy_urls
    assert target.redis.url == endpoints.redis_direct_url           # Redis itself, never the fault relay
    assert target.capabilities.toxiproxy_url == "http://127.0.0.1:8474"
    for secret in (Path(target.proxy.master_key_file or ""), Path(target.postgres.password_file or "")):
        assert secret.stat().st_mode & 0o777 == 0o600 and secret.parent == tmp_path / "state" / "s1"


def test_status_format_target_and_target_check_refuse_bad_input(tmp_path: Path) -> None:
    env = {**os.environ, "HARNESS_STATE_DIR": str(tmp_path / "st"), "HARNESS_RESULTS_DIR": str(tmp_path / "res"),
           "COLUMNS": "200"}

    def harness(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness", *args], env=env, capture_output=True, text=True,
                              timeout=60, cwd=REPO)

    proc = harness("status", "--format", "target")
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --format target describes one stack — add --name " \
                                                           "<stack>"
    proc = harness("status", "--name", "nothing", "--format", "target")
    assert proc.returncode == 2 and "stack 'nothing' is not running" in proc.stderr
    remote = write_target(tmp_path, proxy={"url": "http://192.0.2.10:4000", "master_key_env": "K"})
    proc = harness("target", "check", str(remote))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "192.0.2.10, which is not this machine" in proc.stderr


def test_a_non_loopback_target_without_allow_remote_is_refused_before_anything(tmp_path: Path) -> None:
    """`harness run … --backend external --target <remote>` without allow_remote: one line, exit 2, no run folder,
    no state, and not one packet sent (192.0.2.0/24 is TEST-NET-1: nothing answers there)."""
    remote = write_target(tmp_path, proxy={"url": "http://192.0.2.10:4000", "master_key_env": "K"})
    env = {**os.environ, "HARNESS_STATE_DIR": str(tmp_path / "st"), "HARNESS_RESULTS_DIR": str(tmp_path / "res"),
           "COLUMNS": "200", "K": "sk-x"}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(REPO / "scenarios/minimal.yaml"), "--backend",
                           "external", "--target", str(remote)], env=env, capture_output=True, text=True, timeout=60,
                          cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "proxy.url points at 192.0.2.10" in lines[0] and "allow_remote: true" in lines[0]
    assert not (tmp_path / "res").exists()
    assert not (tmp_path / "st").exists() or not any((tmp_path / "st").iterdir())


def test_target_without_external_backend_is_refused(tmp_path: Path) -> None:
    from harness.run.experiment import RunOptions, prepare

    target = write_target(tmp_path)
    with pytest.raises(HarnessError, match="--target names a deployment for --backend external"):
        prepare(REPO / "scenarios/minimal.yaml", RunOptions(target=target, out=tmp_path / "r"),
                lambda backend, name: FakeStack(name))
    sc = load_scenario(REPO / "scenarios/minimal.yaml")
    assert sc.backend == "local"


def test_a_password_protected_redis_is_read_with_the_password_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """redis.password_env reaches the client (never the URL); without it the probe says NOAUTH, with it SCAN works."""
    from harness.stack.external.probe import _probe_redis
    from harness.stack.redis_server import redis_binary
    from harness.util.ports import free_port
    from harness.util.procs import ProcessGroup, wait_until

    port = free_port()
    group = ProcessGroup(tmp_path / "state")
    group.start("redis", [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "s3cret",
                          "--save", "", "--dir", str(tmp_path)], log=tmp_path / "redis.log", port=port)
    try:
        import redis

        def answers() -> bool:
            try:
                return bool(redis.Redis(port=port, password="s3cret").ping())
            except redis.ConnectionError:
                return False

        wait_until(answers, deadline_s=15, what="redis")
        url = f"redis://127.0.0.1:{port}/0"
        without = Probe()
        _probe_redis(parse_target(target_data(redis={"url": url})), without)
        assert not without.checks[0].ok and "Authentication required" in without.checks[0].detail
        monkeypatch.setenv("T_REDIS_PW", "s3cret")
        found = Probe()
        _probe_redis(parse_target(target_data(redis={"url": url, "password_env": "T_REDIS_PW"})), found)
        assert found.checks[0].ok and found.redis_version, found.checks[0].detail
        assert "s3cret" not in found.checks[0].what + found.checks[0].detail
    finally:
        group.stop_all()
