"""The real multi-replica stack (issue 2): LiteLLM 1.84.0 × 2, real Redis, real Postgres, the mock LLM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import psycopg
import pytest
import redis

from harness.stack.base import StackSpec
from harness.stack.local import LocalStack
from tests.stack_helpers import descendants_of_recorded, listening_ports, poll, searchable_tmp, skip_unless_built

pytestmark = pytest.mark.e2e
VERSION = "1.84.0"
IN_PRICE, OUT_PRICE = 0.000002, 0.0008


def _require_env(version: str) -> None:
    skip_unless_built(version)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    _require_env(VERSION)
    state = searchable_tmp("state")
    stack = LocalStack(name="e2e-stack", state_dir=state)
    spec = StackSpec(version=VERSION, replicas=2, default_budget=50.0, input_cost_per_token=IN_PRICE,
                     output_cost_per_token=OUT_PRICE, run_dir=tmp_path_factory.mktemp("run"),
                     litellm_settings={"use_redis_transaction_buffer": True, "proxy_batch_write_at": 5})
    endpoints = stack.up(spec)
    yield stack, endpoints, stack.logs()
    stack.down()  # a no-op when test_down_leaves_no_process_and_no_port already took it down


def test_every_replica_serves_and_spend_lands_in_redis_and_postgres(stack) -> None:
    stack_obj, endpoints, _ = stack
    headers = {"Authorization": f"Bearer {endpoints.master_key}"}
    costs = []
    for url in endpoints.proxy_urls:
        resp = httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=60,
                          json={"model": "mock-gpt", "user": "u1", "max_tokens": 50,
                                "messages": [{"role": "user", "content": f"hello from the test via {url}"}]})
        assert resp.status_code == 200, resp.text
        usage = resp.json()["usage"]
        costs.append(usage["prompt_tokens"] * IN_PRICE + usage["completion_tokens"] * OUT_PRICE)
    expected = sum(costs)
    assert expected > 0

    def db_spend() -> float | None:
        with psycopg.connect(endpoints.postgres_dsn) as conn:
            row = conn.execute('SELECT spend FROM "LiteLLM_EndUserTable" WHERE user_id = %s', ("u1",)).fetchone()
        return None if row is None else float(row[0])

    poll(lambda: (s := db_spend()) is not None and abs(s - expected) < 1e-9, deadline_s=20,
         what=f"LiteLLM_EndUserTable.spend for u1 == {expected}")
    counter = redis.Redis.from_url(endpoints.redis_direct_url).get("spend:end_user:u1")
    assert counter is not None
    # the counter holds the real spend once every reservation is reconciled
    poll(lambda: abs(float(redis.Redis.from_url(endpoints.redis_direct_url).get("spend:end_user:u1") or 0)
                     - expected) < 1e-9, deadline_s=10, what="counter reconciled to real spend")


def test_master_key_is_not_in_logs_or_config(stack) -> None:
    stack_obj, endpoints, logs = stack
    for log in logs.values():
        text = log.read_text(errors="replace")
        assert endpoints.master_key not in text, log
    config = (stack_obj.log_dir / "proxy-config.yaml").read_text()
    assert endpoints.master_key not in config
    secrets_file = stack_obj.state_dir / "secrets.json"
    assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"


def test_down_leaves_no_process_and_no_port(stack) -> None:
    """Runs last on the module's stack (tests run in file order) instead of starting a stack of its own:
    bringing one up costs ~50 s and down's contract is the same on either."""
    stack_obj, _, _ = stack
    records = stack_obj.facts().processes
    ports = [r["port"] for r in records if r["port"]]
    assert any(r["name"] == "proxy-1" for r in records)  # the whole 2-replica stack is what goes down
    assert len(listening_ports(ports)) == len(ports)
    stack_obj.down()
    assert listening_ports(ports) == []
    assert descendants_of_recorded([r["pgid"] for r in records]) == []


def test_replica_that_fails_to_start_is_named_and_nothing_is_left() -> None:
    _require_env(VERSION)
    tmp_path = searchable_tmp("broken")
    env = {**os.environ, "HARNESS_PROXY_EXTRA_ARGS": "--no-such-litellm-flag", "HARNESS_STATE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "harness", "up", "--litellm", VERSION, "--replicas", "1",
                           "--name", "broken"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "replica 0 failed to start" in proc.stderr
    assert "no-such-litellm-flag" in proc.stderr  # the tail of its log
    assert not (tmp_path / "broken" / "state.json").exists()   # nothing recorded is left


def test_sigterm_during_up_leaves_nothing() -> None:
    _require_env(VERSION)
    tmp_path = searchable_tmp("sigterm")
    env = {**os.environ, "HARNESS_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "up", "--litellm", VERSION, "--replicas", "1",
                             "--name", "interrupted"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    state_file = tmp_path / "interrupted" / "state.json"

    def proxy_started() -> list[dict]:
        if not state_file.exists():
            return []
        try:
            procs = json.loads(state_file.read_text())["processes"]
        except json.JSONDecodeError:
            return []
        return procs if any(p["name"] == "proxy-0" for p in procs) else []

    started = poll(proxy_started, deadline_s=120, what="proxy-0 started")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert descendants_of_recorded([p["pgid"] for p in started]) == []
    assert listening_ports([p["port"] for p in started if p["port"]]) == []
