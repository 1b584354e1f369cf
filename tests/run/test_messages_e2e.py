"""`harness run` on LiteLLM's Anthropic-format endpoint, end to end (BerriAI/litellm#40050): Claude-Code-like clients
POST /v1/messages to a real LiteLLM 1.94.0 with a budgeted virtual key, the deployment is `anthropic/claude-sonnet-4-5`
served by the mock's /v1/messages (tests/data/e2e-messages.yaml). Every request reaches the mock, the proxy bills
them (DB spend and the key's counter), and the analyzer gives a verdict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from rich.console import Console

from harness.run.experiment import RunOptions, run_scenario
from harness.run.runfolder import LEDGER_COLUMNS, REQUESTS_COLUMNS
from tests.stack_helpers import searchable_tmp, skip_unless_built

pytestmark = pytest.mark.e2e
SCENARIO = Path(__file__).parents[1] / "data" / "e2e-messages.yaml"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory):
    skip_unless_built("1.94.0")
    os.environ["HARNESS_STATE_DIR"] = str(searchable_tmp("run-state"))
    out = tmp_path_factory.mktemp("run") / "folder"
    try:
        code = run_scenario(SCENARIO, RunOptions(out=out, stack_name="e2e-messages", exclusive=True),
                            console=Console(stderr=True, width=120))
    finally:
        os.environ.pop("HARNESS_STATE_DIR", None)
    return code, out


def _csv(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name, keep_default_na=False)


def test_the_proxy_calls_the_mock_as_an_anthropic_model(finished_run) -> None:
    _, out = finished_run
    config = yaml.safe_load((out / "proxy-config.yaml").read_text())
    params = config["model_list"][0]["litellm_params"]
    assert params["model"] == "anthropic/claude-sonnet-4-5" and not params["api_base"].endswith("/v1")
    assert "output_cost_per_token" not in params                    # priced from 1.94.0's own cost map


def test_every_request_reaches_the_mock_messages_route(finished_run) -> None:
    _, out = finished_run
    requests, ledger = _csv(out, "requests.csv"), _csv(out, "ledger.csv")
    assert tuple(requests.columns) == REQUESTS_COLUMNS and tuple(ledger.columns) == LEDGER_COLUMNS
    assert len(requests) >= 40 and (requests["status"] == 200).all() and (requests["error_type"] == "").all()
    assert {0, 1} <= set(requests["stream"]) and (requests["disconnected"] == 1).any()
    assert set(requests["key"]) == {0}                             # the run's one virtual key
    # one upstream call per request, with the end user and the model the anthropic provider sends
    assert sorted(requests["request_id"]) == sorted(ledger["request_id"])
    joined = requests.merge(ledger, on="request_id", suffixes=("", "_mock"))
    assert (joined["end_user"] == joined["end_user_mock"]).all()
    assert set(ledger["model"]) == {"claude-sonnet-4-5"}
    walked = joined[joined["disconnected"] == 1]
    assert (walked["outcome"] == "client_gone").all() and (walked["chunks"] == 2).all()
    done = joined[joined["disconnected"] == 0]
    assert (done["outcome"] == "ok").all()
    assert (done.loc[done["stream"] == 1, "chunks"] == 10).all()


def test_the_proxy_bills_the_messages_calls(finished_run) -> None:
    _, out = finished_run
    logs = _csv(out, "spend-logs.csv")
    assert set(logs["call_type"]) == {"anthropic_messages"} and (logs["spend"].astype(float) > 0).all()
    samples = _csv(out, "samples.csv")
    last = samples[samples["sample"] == samples["sample"].max()]
    assert (last["db_spend"].astype(float) > 0).all() and (last["redis_counter"].astype(float) > 0).all()
    counters = _csv(out, "counters.csv")
    key = counters[(counters["kind"] == "key") & (counters["sample"] == counters["sample"].max())]
    assert len(key) == 1
    assert float(key["redis_counter"].iloc[0]) > 0 and float(key["db_spend"].iloc[0]) > 0


def test_the_analyzer_gives_a_verdict(finished_run) -> None:
    code, out = finished_run
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["verdict"] in ("REPRODUCED", "NOT REPRODUCED")      # never INCONCLUSIVE: the evidence is whole
    assert code in (0, 1)
    assert verdict["requests"]["total"] == len(_csv(out, "requests.csv"))
