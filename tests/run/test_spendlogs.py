"""The spend-log dump (harness/run/spendlogs.py) against a real Postgres: the table as LiteLLM's migrations create
it (the columns the dump reads), an older table without some columns, no table, an empty table, no database."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from rich.console import Console

import harness.run.spendlogs as spendlogs
from harness.run.context import Clock, RunContext
from harness.run.runfolder import SPEND_LOGS_COLUMNS, SPEND_LOGS_FILE, MetaWriter
from harness.run.spendlogs import dump_spend_logs
from harness.run.stages import SamplerStage
from harness.scenario.model import parse_scenario
from harness.stack.base import StackSpec
from harness.util.ports import free_port
from harness.util.procs import ProcessGroup
from tests.conftest import FakeStack
from tests.realservers import postgres_server

# the columns the dump reads, typed as LiteLLM's migrations create them (plus one it must not copy)
TABLE_SQL = ('CREATE TABLE "LiteLLM_SpendLogs"(request_id text PRIMARY KEY, call_type text NOT NULL, '
             'spend double precision NOT NULL DEFAULT 0.0, prompt_tokens integer NOT NULL DEFAULT 0, '
             'completion_tokens integer NOT NULL DEFAULT 0, "startTime" timestamp(3) NOT NULL, '
             '"endTime" timestamp(3) NOT NULL, end_user text, status text, litellm_call_id text, messages jsonb)')
ROW_SQL = ('INSERT INTO "LiteLLM_SpendLogs"(request_id, call_type, spend, prompt_tokens, completion_tokens, '
           '"startTime", "endTime", end_user, status, litellm_call_id, messages) VALUES '
           "('chatcmpl-abc', 'acompletion', 0.192056, 28, 120, '2026-11-30 05:50:50.399', '2026-11-30 05:50:50.569', "
           "'eu-0007', 'success', 'c-1', '{\"secret\": \"prompt text\"}'), "
           "('5f1e-uuid', 'acompletion', 0, 0, 0, '2026-11-30 05:50:51', '2026-11-30 05:50:51.5', "
           "'eu, \"quoted\"\nline', 'failure', '5f1e-uuid', NULL)")


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    group = ProcessGroup(tmp_path_factory.mktemp("spendlogs") / "state")
    try:
        with postgres_server(group) as server_dsn:
            yield server_dsn
    finally:
        group.stop_all()


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('DROP TABLE IF EXISTS "LiteLLM_SpendLogs"')
        yield conn


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / SPEND_LOGS_FILE, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == SPEND_LOGS_COLUMNS
        return list(reader)


def test_rows_are_dumped_with_epoch_times_and_nothing_else(db: psycopg.Connection, dsn: str,
                                                          tmp_path: Path) -> None:
    db.execute(TABLE_SQL)
    db.execute(ROW_SQL)
    info = dump_spend_logs(dsn, tmp_path)
    assert info["file"] == SPEND_LOGS_FILE and info["rows"] == 2 and info["reason"] is None
    assert info["columns_missing"] == []
    rows = _rows(tmp_path)
    assert [r["request_id"] for r in rows] == ["chatcmpl-abc", "5f1e-uuid"]        # by startTime
    first, failure = rows
    assert float(first["spend"]) == 0.192056 and (first["prompt_tokens"], first["completion_tokens"]) == ("28", "120")
    assert float(first["start_time"]) == pytest.approx(1796017850.399) and float(first["end_time"]) == pytest.approx(
        1796017850.569)
    assert (first["end_user"], first["status"], first["litellm_call_id"]) == ("eu-0007", "success", "c-1")
    assert failure["end_user"] == 'eu, "quoted"\nline' and failure["status"] == "failure"
    assert "prompt text" not in (tmp_path / SPEND_LOGS_FILE).read_text()
    assert not list(tmp_path.glob("*.part"))


def test_an_older_table_without_some_columns_leaves_them_empty(db: psycopg.Connection, dsn: str,
                                                               tmp_path: Path) -> None:
    db.execute('CREATE TABLE "LiteLLM_SpendLogs"(request_id text PRIMARY KEY, call_type text, spend double '
               'precision, "startTime" timestamp(3), end_user text)')
    db.execute("""INSERT INTO "LiteLLM_SpendLogs" VALUES ('chatcmpl-x', 'acompletion', 0.5, '2026-01-01', 'eu-1')""")
    info = dump_spend_logs(dsn, tmp_path)
    assert info["rows"] == 1
    assert info["columns_missing"] == ["litellm_call_id", "status", "prompt_tokens", "completion_tokens", "end_time"]
    (row,) = _rows(tmp_path)
    assert (row["request_id"], row["spend"], row["status"], row["litellm_call_id"]) == ("chatcmpl-x", "0.5", "", "")


def test_no_table_gives_no_file_and_a_reason(db: psycopg.Connection, dsn: str, tmp_path: Path) -> None:
    info = dump_spend_logs(dsn, tmp_path)
    assert info["file"] is None and info["rows"] == 0
    assert "no \"LiteLLM_SpendLogs\" table" in info["reason"]
    assert not (tmp_path / SPEND_LOGS_FILE).exists()


def test_an_empty_table_gives_the_header_and_a_reason(db: psycopg.Connection, dsn: str, tmp_path: Path) -> None:
    db.execute(TABLE_SQL)
    info = dump_spend_logs(dsn, tmp_path)
    assert info["file"] == SPEND_LOGS_FILE and info["rows"] == 0 and "is empty" in info["reason"]
    assert _rows(tmp_path) == []


def test_an_unreachable_database_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    info = dump_spend_logs(f"postgresql://postgres@127.0.0.1:{free_port()}/litellm", tmp_path, connect_timeout=1)
    assert info["file"] is None and info["reason"].startswith('"LiteLLM_SpendLogs" not read (OperationalError')
    assert list(tmp_path.iterdir()) == []


# -- the stage that runs it ------------------------------------------------------------------------------
class _FakeSampler:
    samples, errors, last_error, last_duration_s = 3, 0, None, 0.01
    other_truncated, last_kind_rows, in_memory = 0, 0, False

    def sample_once(self) -> int:
        return 0

    def stop(self) -> None:
        pass


@pytest.mark.parametrize("load_ran", [True, False])
def test_the_sampler_stage_dumps_after_its_last_sample_when_a_load_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       load_ran: bool) -> None:
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    calls: list[tuple[str, Path]] = []

    def dump(dsn: str, run_dir: Path, **options: Any) -> dict[str, Any]:
        assert options == {"end_user_prefix": "", "postgres_options": {}}   # a stack of its own: every user
        calls.append((dsn, run_dir))
        return {"file": None, "reason": "fake"}

    monkeypatch.setattr(spendlogs, "dump_spend_logs", dump)
    sc = parse_scenario({"name": "stages", "expect": "reproduced"}, tmp_path / "s.yaml")
    stack = FakeStack()
    endpoints = stack.up(StackSpec.from_scenario(sc))
    ctx = RunContext(scenario=sc, run_id="r", run_dir=tmp_path, stack=stack, endpoints=endpoints,
                     meta=MetaWriter(tmp_path / "meta.json", {"status": "stack up"}),
                     console=Console(file=open(os.devnull, "w"), width=80), clock=Clock())  # noqa: SIM115
    if load_ran:
        ctx.load_started()
    stage = SamplerStage()
    stage.sampler = _FakeSampler()  # type: ignore[assignment]
    stage.stop(ctx)
    if load_ran:
        assert calls == [(endpoints.postgres_dsn, tmp_path)]
        assert ctx.meta.data["spend_logs"] == {"file": None, "reason": "fake"}
    else:
        assert calls == [] and "spend_logs" not in ctx.meta.data
    assert ctx.meta.data["sampler"]["samples"] == 3
