"""Request classification: both LiteLLM budget wordings (any status, JSON-wrapped), upstream, walk-away, other."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.analyze.classify import BUDGET, DISCONNECT, OK, OTHER, UPSTREAM, classify_requests
from tests.analyze.rundirs import budget_text, read_time_text


def frame(rows: list[dict]) -> pd.DataFrame:
    base = {"status": 200, "disconnected": 0, "error_type": "", "error_text": "", "request_id": ""}
    return pd.DataFrame([{**base, **r} for r in rows])


@pytest.mark.parametrize("status", [400, 422, 429])
def test_reservation_wording_any_status_json_wrapped(status: int) -> None:
    body = json.dumps({"error": {"message": budget_text("eu-0007", 2.1634, 2.0), "type": "budget_exceeded",
                                 "code": str(status)}})
    df = classify_requests(frame([{"status": status, "error_type": "http_error", "error_text": body}]))
    row = df.iloc[0]
    assert row["cls"] == BUDGET
    assert row["wording"] == "reservation"
    assert row["budget_user"] == "eu-0007"
    assert row["printed_counter"] == pytest.approx(2.1634)
    assert row["printed_budget"] == pytest.approx(2.0)


@pytest.mark.parametrize("status", [400, 422, 429])
def test_read_time_wording(status: int) -> None:
    text = "litellm.BudgetExceededError: " + read_time_text("eu-3", 2.0000000000000004, 2.0)
    df = classify_requests(frame([{"status": status, "error_type": "http_error", "error_text": text}]))
    row = df.iloc[0]
    assert row["cls"] == BUDGET
    assert row["wording"] == "read_time"
    assert row["budget_user"] == "eu-3"
    assert row["printed_counter"] == pytest.approx(2.0000000000000004)
    assert row["printed_budget"] == 2.0


def test_scientific_notation_and_escaped_json() -> None:
    inner = json.dumps({"detail": "Budget has been exceeded! EndUser=u-1 Current cost: 1.5e-05, Max budget: 1e-05"})
    df = classify_requests(frame([{"status": 429, "error_type": "http_error", "error_text": json.dumps(inner)}]))
    assert df.iloc[0]["cls"] == BUDGET
    assert df.iloc[0]["printed_counter"] == pytest.approx(1.5e-05)
    assert df.iloc[0]["printed_budget"] == pytest.approx(1e-05)


def test_other_entity_budget_is_budget_but_not_end_user() -> None:
    df = classify_requests(frame([{"status": 400, "error_type": "http_error",
                                   "error_text": "Budget has been exceeded! Current cost: 3.0, Max budget: 2.0"}]))
    assert df.iloc[0]["cls"] == BUDGET
    assert df.iloc[0]["detail"] == "other_entity"
    assert df.iloc[0]["budget_user"] == ""


def test_upstream_disconnect_other() -> None:
    df = classify_requests(frame([
        {"status": 200},
        {"status": 503, "error_type": "http_error",
         "error_text": "litellm.ServiceUnavailableError: OpenAIException - mock fault"},
        {"status": 500, "error_type": "http_error", "error_text": "something", "request_id": "r-fault"},
        {"status": 200, "disconnected": 1, "error_type": "client_disconnect"},
        {"status": 0, "error_type": "connection", "error_text": "connection refused"},
        {"status": 500, "error_type": "http_error", "error_text": "Internal error: prisma"},
        {"status": 0, "error_type": "timeout", "request_id": "r-hang"},
    ]), fault_request_ids={"r-fault", "r-hang"})
    assert list(df["cls"]) == [OK, UPSTREAM, UPSTREAM, DISCONNECT, OTHER, OTHER, UPSTREAM]
    assert df.iloc[4]["detail"] == "connection"
    assert df.iloc[5]["detail"] == "http_500"


def test_budget_text_wins_over_disconnect_and_status() -> None:
    df = classify_requests(frame([{"status": 200, "disconnected": 1, "error_type": "stream_error",
                                   "error_text": budget_text("a", 3, 2)}]))
    assert df.iloc[0]["cls"] == BUDGET


def test_no_text_columns_nan_safe() -> None:
    df = classify_requests(frame([{"status": np.nan, "error_type": "connection", "error_text": ""}]))
    assert df.iloc[0]["cls"] == OTHER
    assert df.iloc[0]["detail"] == "connection"
