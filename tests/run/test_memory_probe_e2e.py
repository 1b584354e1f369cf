"""`counters: memory` + the in-process probe end to end on a real stack (LiteLLM 1.88.1, one replica, no Redis cache):
the probe reads each key's in-memory counter through the proxy's own budget check, the reads agree with
LiteLLM_VerificationToken.spend and the ledger once the load is over, every budget is back, and the folder analyses.

Runs with --exclusive (waits for the machine lock): ~2.5 min."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import redis
import yaml
from rich.console import Console

from harness.analyze import analyze
from harness.load.keys import key_index_for
from harness.run.experiment import RunOptions, run_scenario
from harness.run.runfolder import PROBES_COLUMNS
from harness.scenario.model import load_scenario
from harness.stack.local import LocalStack
from tests.stack_helpers import descendants_of_recorded, searchable_tmp, skip_unless_built

pytestmark = pytest.mark.e2e
SCENARIO = Path(__file__).parents[1] / "data" / "memory-probe.yaml"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory):
    skip_unless_built("1.88.1")
    state = searchable_tmp("memprobe-state")
    os.environ["HARNESS_STATE_DIR"] = str(state)
    out = tmp_path_factory.mktemp("run") / "folder"
    try:
        code = run_scenario(SCENARIO, RunOptions(out=out, keep=True, stack_name="e2e-memprobe", exclusive=True),
                            console=Console(stderr=True, width=120))
        stack = LocalStack("e2e-memprobe")
        endpoints = stack.endpoints()
        assert endpoints is not None
        with psycopg.connect(endpoints.postgres_dsn, autocommit=True) as conn:
            budgets = dict(conn.execute('SELECT token, max_budget FROM "LiteLLM_VerificationToken"').fetchall())
        spend_keys = redis.Redis.from_url(endpoints.redis_direct_url).keys("*spend:*")
        yield code, out, endpoints.counters, budgets, spend_keys
    finally:
        stack = LocalStack("e2e-memprobe")
        records = stack.facts().processes
        stack.down()
        os.environ.pop("HARNESS_STATE_DIR", None)
    assert descendants_of_recorded([r["pgid"] for r in records]) == []


def test_the_proxy_ran_without_a_cache_and_redis_holds_no_counter(finished_run) -> None:
    code, out, counters, _, spend_keys = finished_run
    assert code == 0 and counters == "memory"
    config = yaml.safe_load((out / "proxy-config.yaml").read_text())
    assert "cache" not in config["litellm_settings"] and "cache_params" not in config["litellm_settings"]
    assert config["general_settings"]["use_redis_transaction_buffer"] is False
    assert spend_keys == []                                   # the counters never left the process
    samples = pd.read_csv(out / "samples.csv")
    assert samples["redis_counter"].isna().all() and samples["db_spend"].notna().any()
    assert not (out / "counters.csv").exists()


def test_the_probe_read_every_key_every_round_and_restored_every_budget(finished_run) -> None:
    _, out, _, budgets, _ = finished_run
    probes = pd.read_csv(out / "probes.csv")
    assert tuple(probes.columns) == PROBES_COLUMNS
    meta = json.loads((out / "meta.json").read_text())
    entities = meta["entities"]["keys"]
    assert probes["round"].nunique() >= 10 and probes["id"].nunique() == len(entities) == 2
    assert probes["counter"].notna().all() and (probes["error"].isna()).all()
    assert (probes["printed_budget"] == 0.0).all() and (probes["includes_reservation"] == 0).all()
    assert (probes["admitted"] == 0).all() and (probes["status"] >= 400).all()
    assert meta["probe"]["restore_failures"] == [] and meta["probe"]["errors"] == 0
    assert {k["token"]: budgets[k["token"]] for k in entities} == {k["token"]: 5.0 for k in entities}
    # during the load a counter carries the reservations in flight: never below its DB spend
    assert (probes["counter"] >= probes["db_spend"] - 1e-9).all()
    assert (probes["counter"] > probes["db_spend"] + 0.1).any()


def test_after_the_load_the_probed_counter_is_the_db_spend_and_the_ledger(finished_run) -> None:
    _, out, _, _, _ = finished_run
    meta = json.loads((out / "meta.json").read_text())
    scenario = load_scenario(out / "scenario.yaml")
    probes = pd.read_csv(out / "probes.csv")
    last = probes.sort_values("t").groupby("id").tail(1).set_index("id")
    ledger = pd.read_csv(out / "ledger.csv")
    price_in, price_out = scenario.pricing.input_cost_per_token, scenario.pricing.output_cost_per_token
    ledger["cost"] = ledger["prompt_tokens"] * price_in + ledger["completion_tokens_promised"] * price_out
    ledger["key"] = [key_index_for(u, scenario.seed, 2) for u in ledger["end_user"]]
    for k in meta["entities"]["keys"]:
        true = float(ledger.loc[ledger["key"] == k["index"], "cost"].sum())
        row = last.loc[k["token"]]
        assert row["counter"] == pytest.approx(row["db_spend"], abs=1e-9)
        assert row["counter"] == pytest.approx(true, rel=1e-6, abs=1e-9)


def test_the_folder_analyses_with_the_probe_as_its_counter_evidence(finished_run) -> None:
    _, out, _, _, _ = finished_run
    res = analyze(out, plots=False)
    assert res.verdict == "NOT REPRODUCED" and res.exit_code == 0
    assert res.summary.counter_source == "probe" and res.summary.kinds_judged == "key"
    key = res.evidence["counter_kinds"]["kinds"]["key"]
    assert key["drain"]["ran"] and key["drain"]["users_checked"] == 2 and key["drain"]["leaked_users"] == 0
    assert "read by the in-process probe" in (out / "report.md").read_text()
