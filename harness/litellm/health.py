"""Is a LiteLLM proxy replica ready to serve the harness's load? One answer for every backend.

`/health/liveliness` answers "I'm alive!" as soon as the web server runs, without touching Postgres or Redis.
`/health/readiness` reports the database (`db`) and, in the detailed payload, the cache (`cache`). What each
release answers (read in site-packages/litellm/proxy/health_endpoints/_health_endpoints.py of 1.83.14,
1.84.0, 1.89.1, 1.90.0 and 1.108.7):

- 1.83.14: `GET /health/readiness` is a public route (no key needed) and answers the detailed payload
  `{"status": "healthy", "db": …, "cache": …, "litellm_version": …, …}` with HTTP 200 whatever `db` says.
- 1.84.0 and newer: the public `GET /health/readiness` answers only `{"status": "healthy", "db": …}` (the
  detailed payload when `general_settings.allow_public_health_readiness_details` is set), HTTP 503 when a
  configured database is not `connected`; the detailed payload moved to `GET /health/readiness/details`,
  which needs a key (the master key).
- 1.89.1 and newer: HTTP 503 `{"status": "shutting_down"}` once a graceful shutdown began.
- 1.108.7: `db` may also be `stalled` (recent DB lookups hit their deadline), 503 as well.

`db` is `"connected"`, `"disconnected"` (Prisma client present, `SELECT 1` failed or not yet answered) or
`"Not connected"` (no Prisma client: the proxy runs without a database). `cache` is `litellm.cache.type`:
`"redis"` (a str enum) when the proxy config's `litellm_settings.cache_params.type` is redis, `null` without
a cache, `{"type": …, "index_info": …}` for the semantic caches. It says which cache is configured: LiteLLM
does not ping a plain Redis cache here. An exception inside the handler: HTTP 503 `{"detail": "Service
Unhealthy (…)"}`.

`readiness()` is transport-agnostic: pass `httpx.Client.get` (Compose backend), a client with a short
timeout (local backend), or a fake.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

READINESS_PATH = "/health/readiness"
DETAILS_PATH = "/health/readiness/details"     # 1.84.0 and newer: the detailed payload, behind a key


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...


class HttpGet(Protocol):
    """`httpx.Client.get` and `httpx.get` fit: GET `url` with `headers`, return the response."""

    def __call__(self, url: str, *, headers: dict[str, str]) -> _Response: ...


@dataclass(frozen=True)
class Readiness:
    ready: bool
    detail: str          # what is not ready ("db: Not connected; cache: None (expected redis)"), or "ready"


def readiness(http_get: HttpGet, url: str, *, master_key: str | None = None,
              expect_redis: bool = True) -> Readiness:
    """Whether the replica at `url` (its base URL) is ready: HTTP 200, `db` connected and, with `expect_redis`
    (the stack configures a Redis cache), `cache` redis. On 1.84.0 and newer the cache is only in the
    detailed payload: `master_key` is needed to see it.

    Never raises for what the replica answers or for a transport error: both are "not ready" with a detail.
    """
    base = url.rstrip("/")
    status, body, problem = _get(http_get, base + READINESS_PATH, {})
    if problem:
        return Readiness(False, problem)
    public = _judge(status, body, need_cache=expect_redis and "cache" in body)
    if not public.ready or not expect_redis or "cache" in body:
        return public
    if not master_key:
        return Readiness(False, f"cache: unknown ({READINESS_PATH} has no cache field and no master key "
                                f"was given for {DETAILS_PATH})")
    status, body, problem = _get(http_get, base + DETAILS_PATH, {"Authorization": f"Bearer {master_key}"})
    if problem:
        return Readiness(False, problem)
    return _judge(status, body, need_cache=expect_redis)


def _get(http_get: HttpGet, url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    """(HTTP status, JSON object, "") or (status, {}, what went wrong) when there is no JSON object to judge."""
    path = url[url.find("/health"):]
    try:
        resp = http_get(url, headers=headers)
    except (httpx.HTTPError, OSError) as exc:
        return 0, {}, f"{path}: no answer ({type(exc).__name__}: {_short(str(exc)) or 'no detail'})"
    try:
        body = json.loads(resp.text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        return resp.status_code, body, ""
    return resp.status_code, {}, f"{path}: HTTP {resp.status_code} {_short(resp.text)}"


def _judge(status: int, body: Mapping[str, Any], *, need_cache: bool) -> Readiness:
    problems: list[str] = []
    state = body.get("status")
    if state is None:       # {"detail": "Service Unhealthy (…)"}, LiteLLM's {"error": {"message": …}}, …
        error = body.get("error")
        said = body.get("detail") or (error.get("message") if isinstance(error, dict) else None) or json.dumps(body)
        problems.append(_short(str(said)))
    elif state != "healthy":
        problems.append(f"status: {_short(str(state))}")
    if state == "healthy" or "db" in body:
        db = body.get("db", "not reported")
        if db != "connected":
            problems.append(f"db: {db}")
    if need_cache and state == "healthy":
        cache = body.get("cache", "not reported")
        kind = cache.get("type") if isinstance(cache, dict) else cache
        if kind != "redis":
            problems.append(f"cache: {kind} (expected redis)")
    if status != 200:
        problems.append(f"HTTP {status}")
    return Readiness(not problems, "; ".join(problems) if problems else "ready")


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
