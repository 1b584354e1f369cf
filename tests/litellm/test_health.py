"""harness.litellm.health.readiness against the answers each LiteLLM release gives.

The bodies below are written from the handlers in
.cache/litellm/<version>/venv/lib/python3.11/site-packages/litellm/proxy/health_endpoints/_health_endpoints.py
(1.83.14: `health_readiness`; 1.84.0, 1.89.1, 1.90.0, 1.108.7: `health_readiness` (public, `status` + `db`),
`health_readiness_details` / `_get_health_readiness_details` (behind a key)), and the 401 body from
litellm/proxy/_types.py `ProxyException.to_dict` wrapped in `{"error": …}` (proxy_server.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.errors import StackError
from harness.litellm.health import DETAILS_PATH, READINESS_PATH, readiness
from harness.litellm.proxy_config import proxy_cache_is_redis, render_proxy_config
from harness.stack.base import StackSpec
from harness.stack.local import LocalStack
from tests.conftest import readiness_details

URL = "http://127.0.0.1:4000"
KEY = "sk-harness-test"


UNAUTHORIZED = (401, {"error": {"message": "Authentication Error, No api key passed in.", "type": "auth_error",
                                "param": "None", "code": "401"}})
NEWER = ("1.84.0", "1.89.1", "1.90.0", "1.108.7")


class Proxy:
    """A replica's two readiness routes; records what was asked with which Authorization header."""

    def __init__(self, public: tuple[int, Any], detailed: tuple[int, Any] | None = None) -> None:
        self.routes = {READINESS_PATH: public, DETAILS_PATH: detailed or (404, {"detail": "Not Found"})}
        self.asked: list[tuple[str, str | None]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization")
        self.asked.append((request.url.path, auth))
        status, body = self.routes.get(request.url.path, (404, {"detail": "Not Found"}))
        if request.url.path == DETAILS_PATH and auth != f"Bearer {KEY}":
            status, body = UNAUTHORIZED
        return httpx.Response(status, json=body)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))


def check(proxy: Proxy, **kwargs: Any) -> tuple[bool, str]:
    with proxy.client() as client:       # httpx.Client.get: what the Compose backend passes
        state = readiness(client.get, URL, **kwargs)
    return state.ready, state.detail


# -- 1.83.14: one public route with everything, HTTP 200 whatever the database says --------------------------
def test_1_83_14_ready_from_the_public_payload_without_a_key() -> None:
    proxy = Proxy((200, readiness_details("1.83.14")))
    assert check(proxy) == (True, "ready")
    assert proxy.asked == [(READINESS_PATH, None)]


@pytest.mark.parametrize("db", ["Not connected", "disconnected", "unknown"])
def test_1_83_14_a_database_not_connected_is_not_ready_although_http_200(db: str) -> None:
    assert check(Proxy((200, readiness_details("1.83.14", db=db))), master_key=KEY) == (False, f"db: {db}")


@pytest.mark.parametrize(("cache", "shown"), [(None, "None"), ("local", "local"),
                                              ({"type": "redis-semantic", "index_info": "ok"}, "redis-semantic")])
def test_1_83_14_a_cache_other_than_redis_is_not_ready(cache: Any, shown: str) -> None:
    assert check(Proxy((200, readiness_details("1.83.14", cache=cache)))) == (False, f"cache: {shown} (expected redis)")


def test_a_stack_without_redis_does_not_ask_for_it() -> None:
    assert check(Proxy((200, readiness_details("1.83.14", cache=None))), expect_redis=False) == (True, "ready")
    proxy = Proxy((200, {"status": "healthy", "db": "connected"}))
    assert check(proxy, expect_redis=False) == (True, "ready")
    assert proxy.asked == [(READINESS_PATH, None)]          # no detailed payload needed


# -- 1.84.0 and newer: public status + db, the cache behind the master key ------------------------------------
@pytest.mark.parametrize("version", NEWER)
def test_newer_releases_ready_needs_the_detailed_payload_with_the_master_key(version: str) -> None:
    proxy = Proxy((200, {"status": "healthy", "db": "connected"}), (200, readiness_details(version)))
    assert check(proxy, master_key=KEY) == (True, "ready")
    assert proxy.asked == [(READINESS_PATH, None), (DETAILS_PATH, f"Bearer {KEY}")]


@pytest.mark.parametrize("version", NEWER)
def test_newer_releases_without_redis_in_the_details_are_not_ready(version: str) -> None:
    proxy = Proxy((200, {"status": "healthy", "db": "connected"}), (200, readiness_details(version, cache=None)))
    assert check(proxy, master_key=KEY) == (False, "cache: None (expected redis)")


@pytest.mark.parametrize(("db", "status"), [("disconnected", 503), ("Not connected", 200)])
def test_newer_releases_a_database_not_connected_is_not_ready(db: str, status: int) -> None:
    proxy = Proxy((status, {"status": "healthy", "db": db}), (200, readiness_details("1.84.0")))
    ready, detail = check(proxy, master_key=KEY)
    assert not ready and detail.startswith(f"db: {db}")
    assert ("HTTP 503" in detail) == (status == 503)


def test_1_108_7_a_stalled_database_is_not_ready() -> None:
    proxy = Proxy((503, {"status": "healthy", "db": "stalled"}), (200, readiness_details("1.108.7")))
    assert check(proxy, master_key=KEY) == (False, "db: stalled; HTTP 503")


@pytest.mark.parametrize("version", ["1.89.1", "1.90.0", "1.108.7"])
def test_a_replica_shutting_down_is_not_ready(version: str) -> None:
    proxy = Proxy((503, {"status": "shutting_down"}), (200, readiness_details(version)))
    assert check(proxy, master_key=KEY) == (False, "status: shutting_down; HTTP 503")
    assert [path for path, _ in proxy.asked] == [READINESS_PATH]


def test_without_the_master_key_the_cache_of_a_newer_release_is_unknown_not_ready() -> None:
    proxy = Proxy((200, {"status": "healthy", "db": "connected"}), (200, readiness_details("1.84.0")))
    ready, detail = check(proxy)
    assert not ready and detail.startswith("cache: unknown") and DETAILS_PATH in detail


def test_a_wrong_master_key_says_what_litellm_answered() -> None:
    proxy = Proxy((200, {"status": "healthy", "db": "connected"}), (200, readiness_details("1.84.0")))
    assert check(proxy, master_key="sk-wrong") == (False, "Authentication Error, No api key passed in.; HTTP 401")


def test_details_without_a_cache_field_are_not_ready() -> None:
    shape = readiness_details("1.108.7")
    del shape["cache"]
    proxy = Proxy((200, {"status": "healthy", "db": "connected"}), (200, shape))
    assert check(proxy, master_key=KEY) == (False, "cache: not reported (expected redis)")


def test_public_details_opt_in_needs_no_second_request() -> None:
    proxy = Proxy((200, readiness_details("1.90.0")))     # general_settings.allow_public_health_readiness_details: true
    assert check(proxy, master_key=KEY) == (True, "ready")
    assert proxy.asked == [(READINESS_PATH, None)]


# -- whatever the release: errors, non-JSON, no answer ----------------------------------------------------------
def test_an_exception_in_the_handler_is_not_ready() -> None:
    proxy = Proxy((503, {"detail": "Service Unhealthy (boom)"}))
    assert check(proxy, master_key=KEY) == (False, "Service Unhealthy (boom); HTTP 503")


def test_a_non_json_answer_is_not_ready() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        state = readiness(client.get, URL, master_key=KEY)
    assert (state.ready, state.detail) == (False, f"{READINESS_PATH}: HTTP 502 <html>Bad Gateway</html>")


def test_no_answer_is_not_ready_and_never_raises() -> None:
    def refused(url: str, *, headers: dict[str, str]) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    state = readiness(refused, URL, master_key=KEY)
    assert not state.ready
    assert state.detail == f"{READINESS_PATH}: no answer (ConnectError: [Errno 111] Connection refused)"


def test_the_harness_proxy_config_expects_redis_and_an_override_can_turn_it_off() -> None:
    spec = StackSpec(version="1.84.0", replicas=1)
    config = render_proxy_config(spec, mock_api_base="http://m/v1", redis_host="127.0.0.1", redis_port=6379)
    assert proxy_cache_is_redis(config)
    spec.litellm_settings = {"extra": {"litellm_settings": {"cache": False}}}
    config = render_proxy_config(spec, mock_api_base="http://m/v1", redis_host="127.0.0.1", redis_port=6379)
    assert not proxy_cache_is_redis(config)


# -- the local backend's wait loops use it ---------------------------------------------------------------------
def local_stack(tmp_path: Path, proxy: Proxy, monkeypatch: pytest.MonkeyPatch, alive: bool) -> LocalStack:
    stack = LocalStack("t", state_dir=tmp_path / "state", http=proxy.client())
    monkeypatch.setattr(stack._group, "alive", lambda name: alive)
    monkeypatch.setattr(stack._group, "log_tail", lambda name, n=25: f"(log of {name})")
    return stack


def test_local_wait_returns_once_every_replica_is_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = Proxy((200, {"status": "healthy", "db": "connected"}), (200, readiness_details("1.84.0")))
    stack = local_stack(tmp_path, proxy, monkeypatch, alive=True)
    stack._wait_proxies([URL, URL], KEY, expect_redis=True)
    assert [path for path, _ in proxy.asked] == [READINESS_PATH, DETAILS_PATH] * 2
    assert stack._wait_proxy(0, URL, KEY, expect_redis=True) >= 0.0


def test_local_wait_times_out_saying_what_is_not_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.stack.local.PROXY_START_DEADLINE_S", 0.0)
    stack = local_stack(tmp_path, Proxy((200, readiness_details("1.83.14", db="Not connected"))), monkeypatch,
                        alive=True)
    with pytest.raises(StackError) as info:
        stack._wait_proxies([URL], KEY, expect_redis=True)
    assert "not ready yet: replica(s) 0 (db: Not connected)" in info.value.problem
    with pytest.raises(StackError) as one:
        stack._wait_proxy(0, URL, KEY, expect_redis=True)
    assert one.value.problem.startswith("replica 0 failed to start: LiteLLM replica 0")
    assert "not ready: db: Not connected" in one.value.problem


def test_local_wait_fails_fast_when_the_replica_died(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = local_stack(tmp_path, Proxy((503, {"status": "healthy", "db": "disconnected"})), monkeypatch, alive=False)
    with pytest.raises(StackError) as info:          # the deadline is 300 s: only the dead process ends it
        stack._wait_proxies([URL], KEY, expect_redis=True)
    assert "exited before it became ready" in info.value.problem and "(log of proxy-0)" in info.value.problem
    with pytest.raises(StackError) as one:
        stack._wait_proxy(0, URL, KEY, expect_redis=True)
    assert "exited before it became healthy" in one.value.problem
