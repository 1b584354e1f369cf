"""Checks as units: the generic merge, check_safe (a crashing check is never a pass), the summary in verdict.json,
and fault coverage (a fault that did not happen blocks a clean verdict)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.analyze import analyze
from harness.analyze import checks as registry
from harness.analyze.checker import Check, CheckResult, Results, check_safe
from harness.analyze.context import Context
from harness.analyze.summary import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, SCHEMA_VERSION, Summary, read_summary
from harness.run import runfolder as rf
from tests.analyze.rundirs import RunBuilder, base_scenario, budget_text, steady_users

USERS = [f"eu-{i}" for i in range(5)]


class Boom(Check):
    name = "boom"
    section = "boom"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        raise ZeroDivisionError("division by zero in a check")


class Unknown(Check):
    name = "unknown_field"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        return CheckResult(summary={"not_a_summary_field": 1})


def clean_run(tmp_path: Path, **scen: object) -> RunBuilder:
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect="clean", **scen))
    steady_users(b, USERS)
    return b


def test_every_check_has_a_unique_name_and_only_known_scenario_words() -> None:
    names = [c.name for c in registry.CHECKS]
    assert len(names) == len(set(names))
    assert {c.counted_as for c in registry.CHECKS} - {None} == {"phantom", "leak", "deflation"}


def test_a_crashing_check_is_inconclusive_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "CHECKS", (*registry.CHECKS, Boom()))
    res = analyze(clean_run(tmp_path).write(), plots=False)
    assert res.verdict == INCONCLUSIVE and res.exit_code == 1
    assert any("boom check failed (ZeroDivisionError: division by zero in a check)" in r for r in res.reasons)
    assert res.evidence["boom"]["error"].startswith("the boom check failed")
    assert res.evidence["checks"]["boom"]["error"]


def test_a_crashing_check_does_not_hide_the_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "CHECKS", (*registry.CHECKS, Boom()))
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect="reproduced"))
    steady_users(b, USERS)
    b.request(30.0, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))
    res = analyze(b.write(), plots=False)
    assert res.verdict == REPRODUCED
    assert any("boom check failed" in n for n in res.evidence["notes"])


def test_a_crashing_prerequisite_blocks_the_checks_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.analyze.checks.inflation import Inflation

    def broken(self: Inflation, ctx: Context, done: Results) -> CheckResult:
        raise KeyError("redis_counter")

    monkeypatch.setattr(Inflation, "run", broken)
    res = analyze(clean_run(tmp_path).write())          # with plots: the pictures of failed checks are skipped
    assert res.verdict == INCONCLUSIVE
    assert any("the drain check could not run: it needs the inflation check" in r for r in res.reasons)
    assert res.summary.max_inflation_usd is None and res.summary.leaked_usd is None
    assert [p.name for p in res.pictures] == ["rejections.png"]
    assert any("inflation.png not drawn" in w for w in res.evidence["warnings"])


def test_summary_fields_a_check_invents_are_refused(tmp_path: Path) -> None:
    from harness.analyze.context import build_context
    from harness.analyze.load import load_run

    ctx = build_context(load_run(clean_run(tmp_path).write()))
    result = check_safe(Unknown(), ctx, {})
    assert result.error and "not_a_summary_field" in result.error and result.blockers


def test_verdict_json_carries_the_flat_summary(tmp_path: Path) -> None:
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect="reproduced"))
    steady_users(b, USERS)
    b.request(30.0, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))
    root = b.write()
    res = analyze(root, plots=False)
    ev = json.loads((root / rf.VERDICT_FILE).read_text())
    assert ev["schema"] == SCHEMA_VERSION == 2
    s = read_summary(root)
    assert s == res.summary and s is not None
    assert (s.verdict, s.expected, s.matches_expectation) == (REPRODUCED, "reproduced", True)
    assert (s.phantoms, s.phantom_users, s.requests, s.requests_budget) == (1, 1, 51, 1)
    assert s.first_phantom_s == pytest.approx(30.0)
    assert s.drain_ran and s.leaked_users == 0 and s.leaked_usd == 0.0 and s.deflated_usd == 0.0
    assert s.fault_problems == 0
    assert ev["checks"]["phantom"]["counted"] and ev["checks"]["phantom"]["findings"]
    # the same numbers derived from the schema-1 sections (old run folders)
    old = {k: v for k, v in ev.items() if k not in ("summary", "checks")}
    derived = Summary.from_verdict(old)
    for field in ("verdict", "phantoms", "phantom_users", "first_phantom_s", "leaked_usd", "leaked_users",
                  "max_inflation_usd", "user_max_inflation_usd", "requests", "req_per_s", "deflated_usd"):
        assert getattr(derived, field) == getattr(s, field), field


def test_read_summary_of_a_folder_without_a_readable_verdict(tmp_path: Path) -> None:
    assert read_summary(tmp_path) is None
    (tmp_path / rf.VERDICT_FILE).write_text("{not json")
    assert read_summary(tmp_path) is None


# -- fault coverage -------------------------------------------------------------------------------------
FLUSH = [{"kind": "flush_redis", "at_s": 20.0}]


def test_a_fault_that_errored_makes_a_clean_run_inconclusive(tmp_path: Path) -> None:
    b = clean_run(tmp_path, faults=FLUSH)
    b.meta["nemesis_errors"] = [{"window": 0, "kind": "flush_redis", "phase": "start",
                                 "error": "ConnectionError: redis unreachable"}]
    b.fault(20, "start", 0, "flush_redis", "redis", note="error: redis unreachable")
    res = analyze(b.write(), plots=False)
    assert res.verdict == INCONCLUSIVE
    assert any("fault window 0 (flush_redis) failed at its start: ConnectionError: redis unreachable" in r
               for r in res.reasons)
    assert res.summary.fault_problems == 1
    b.meta["nemesis_errors"] = [{"window": None, "kind": "", "phase": "stop", "error": "RuntimeError: relay gone"}]
    res = analyze(b.write(), plots=False)
    assert res.verdict == INCONCLUSIVE
    assert any("final reset failed: RuntimeError: relay gone" in r for r in res.reasons)


def test_a_fault_window_that_never_started_blocks(tmp_path: Path) -> None:
    b = clean_run(tmp_path, faults=FLUSH)
    b.meta["nemesis_errors"] = []
    res = analyze(b.write(), plots=False)
    assert res.verdict == INCONCLUSIVE
    assert any("fault window 0 (flush_redis at 20 s) never started" in r for r in res.reasons)


def test_the_bug_found_anyway_wins_over_a_failed_fault(tmp_path: Path) -> None:
    b = RunBuilder(tmp_path / "run", scenario=base_scenario(expect="reproduced", faults=FLUSH))
    steady_users(b, USERS)
    b.request(30.0, "eu-0", status=400, error_text=budget_text("eu-0", 1.25, 1.0))
    b.meta["nemesis_errors"] = [{"window": 0, "kind": "flush_redis", "phase": "start", "error": "boom"}]
    res = analyze(b.write(), plots=False)
    assert res.verdict == REPRODUCED
    assert any("failed at its start" in n for n in res.evidence["notes"])


def test_faults_that_happened_pass_and_old_folders_say_not_recorded(tmp_path: Path) -> None:
    b = clean_run(tmp_path, faults=FLUSH)
    b.fault(20, "start", 0, "flush_redis", "redis", note="redis flushed")
    b.fault(20.1, "end", 0, "flush_redis", "redis")
    b.meta["nemesis_errors"] = []
    res = analyze(b.write(), plots=False)
    assert res.verdict == NOT_REPRODUCED and res.summary.fault_problems == 0
    del b.meta["nemesis_errors"]                     # a run folder written before the field existed
    res = analyze(b.write())
    assert res.verdict == NOT_REPRODUCED and res.summary.fault_problems is None
    assert any("nemesis errors: not recorded" in n for n in res.evidence["notes"])
    assert "fault coverage" in (b.root / rf.REPORT_FILE).read_text()


def test_money_ticks_carry_no_cents_on_large_axes() -> None:
    from harness.analyze.plots import money_tick

    assert [money_tick(v, 6000) for v in (0, 500, 6000)] == ["$0", "$500", "$6,000"]
    assert [money_tick(v, 5) for v in (2.5, 0.05)] == ["$2.50", "$0.05"]


def test_one_shot_fault_kinds_come_from_the_registry() -> None:
    from harness.analyze.plots import X_LABEL, is_one_shot

    assert is_one_shot("snapshot_redis") and is_one_shot("flush_redis") and is_one_shot("restart_redis")
    assert not is_one_shot("redis_latency") and not is_one_shot("kind-from-the-future")   # unknown: a window
    assert X_LABEL == "seconds after the load started"


def test_summary_values_of_the_wrong_type_are_refused(tmp_path: Path) -> None:
    from harness.analyze.context import build_context
    from harness.analyze.load import load_run

    class WrongType(Check):
        name = "wrong_type"

        def run(self, ctx: Context, done: Results) -> CheckResult:
            return CheckResult(summary={"phantoms": "many"})

    ctx = build_context(load_run(clean_run(tmp_path).write()))
    result = check_safe(WrongType(), ctx, {})
    assert result.error and "ValidationError" in result.error and "\n" not in result.error
