"""A real `litellm` proxy of each supported version against the real Postgres through the query-engine
stand-in: its whole start-up (every start-up query), /health/liveliness, /budget/new, /customer/new
(rows checked in Postgres), a clean stop that leaves no engine behind."""

from __future__ import annotations

import time

import httpx
import psutil
import pytest

from harness.util.procs import group_alive, http_ok, wait_until
from tests.conformance.conftest import BootedProxy, rows

pytestmark = pytest.mark.conformance


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _standins(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [k for k in kids if any("server.mjs" in part for part in k.cmdline())]


def test_proxy_budget_and_customer(proxy: BootedProxy, record_property) -> None:  # noqa: ANN001
    group, version, base = proxy.group, proxy.env.version, proxy.base
    headers = {"Authorization": f"Bearer {proxy.master_key}"}
    standin_pids: list[int] = []
    try:
        # started by the `boot` fixture while the driver tests of this version ran: the time is since then
        wait_until(lambda: http_ok(f"{base}/health/liveliness"), deadline_s=240,
                   what=f"litellm {version}", still_alive=lambda: group.alive("proxy"),
                   on_fail=lambda: group.log_tail("proxy", 40))
        startup = time.monotonic() - proxy.started
        record_property("proxy_startup_s", round(startup, 1))
        engines = _standins(proxy.proc.pid)
        assert engines, "the proxy runs no query-engine stand-in"
        standin_pids = [e.pid for e in engines]
        rss_mb = sum(e.memory_info().rss for e in engines) / 2**20
        proxy_rss_mb = psutil.Process(proxy.proc.pid).memory_info().rss / 2**20
        record_property("standin_rss_mb", round(rss_mb))
        record_property("proxy_rss_mb", round(proxy_rss_mb))
        print(f"\nLiteLLM {version}: /health/liveliness at most {startup:.1f} s after start "
              f"(start-up overlapped the driver tests); "
              f"proxy RSS {proxy_rss_mb:.0f} MB, engine stand-in RSS {rss_mb:.0f} MB")

        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            r = client.post("/budget/new", json={"budget_id": "e2e-default", "max_budget": 2.0})
            assert r.status_code == 200, r.text
            r = client.post("/customer/new", json={"user_id": "e2e-c1", "budget_id": "e2e-default"})
            assert r.status_code == 200, r.text
            r = client.post("/customer/new", json={"user_id": "e2e-c2", "max_budget": 3.5})
            assert r.status_code == 200, r.text
            r = client.get("/customer/info", params={"end_user_id": "e2e-c2"})
            assert r.status_code == 200, r.text
            assert r.json()["litellm_budget_table"]["max_budget"] == 3.5
            # no master key: rejected by auth, which reads the DB-backed key tables through the engine
            assert client.post("/budget/new", json={"budget_id": "x"},
                               headers={"Authorization": "Bearer sk-wrong"}).status_code in (400, 401, 403)

        db = proxy.dsn
        budget = rows(db, 'SELECT max_budget FROM "LiteLLM_BudgetTable" WHERE budget_id = %s', "e2e-default")
        assert budget == [{"max_budget": 2.0}]
        got = {r["user_id"]: r for r in rows(
            db, 'SELECT e.user_id, e.spend, e.budget_id, b.max_budget FROM "LiteLLM_EndUserTable" e '
                'JOIN "LiteLLM_BudgetTable" b ON b.budget_id = e.budget_id')}
        assert got["e2e-c1"]["budget_id"] == "e2e-default" and got["e2e-c1"]["max_budget"] == 2.0
        assert got["e2e-c2"]["max_budget"] == 3.5 and got["e2e-c2"]["spend"] == 0.0
    finally:
        pgid = group.records["proxy"].pgid if "proxy" in group.records else proxy.proc.pid
        proxy.stop()
    assert not group_alive(pgid), "processes of the proxy's group survived the stop"
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in standin_pids):
        assert time.monotonic() < deadline, f"query-engine stand-in(s) {standin_pids} outlived the proxy"
        time.sleep(0.1)
