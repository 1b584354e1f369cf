"""Runs INSIDE a LiteLLM version's venv (its python): drives LiteLLM's own database code.

    <venv>/bin/python driver.py --reply-fd N

One long-lived process per LiteLLM version per test session: importing litellm's proxy takes 20-40 s, which
used to be paid by every test. It imports once, writes `{"ready": true}` on fd N, then serves requests
read from stdin, one JSON object a line: `{"scenario": name, "dsn": postgres dsn, "params": {...}}`; each
answer is one JSON line on fd N: `{"ok": true, "result": ...}` or `{"ok": false, "error": ..., "traceback":
...}`. stdout is redirected to stderr (LiteLLM prints there), so fd N carries nothing but answers. Every
request runs on the same event loop, with its own PrismaClient (and so its own query engine) connected to
the database the request names; scenarios restore any litellm module global they set.

Only the standard library, litellm and the generated prisma client are importable here (the harness is
not installed in that venv). Each scenario calls the functions LiteLLM itself calls on that path
(PrismaClient, the endpoint functions, the spend writer), through the real generated Prisma client and
whatever query engine PRISMA_QUERY_ENGINE_BINARY names, and returns a JSON result for the test to compare
with the rows it reads from Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import inspect
import json
import os
import sys
import traceback
import uuid
from collections.abc import Callable
from typing import Any

SCENARIOS: dict[str, Callable[..., Any]] = {}


def scenario(fn: Callable[..., Any]) -> Callable[..., Any]:
    SCENARIOS[fn.__name__] = fn
    return fn


def _kw(fn: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """Only the keyword arguments `fn` accepts (signatures drift between LiteLLM versions)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


async def call(fn: Callable[..., Any], **kwargs: Any) -> Any:
    result = fn(**_kw(fn, **kwargs))
    if inspect.isawaitable(result):
        result = await result
    return result


def jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump()
    elif hasattr(obj, "dict") and callable(obj.dict) and not isinstance(obj, dict):
        obj = obj.dict()
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [jsonable(v) for v in obj]
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, int | float | str | bool) or obj is None:
        return obj
    return repr(obj)


def typed(obj: Any) -> Any:
    """Python type names of a raw-query result (shapes differ between engines)."""
    if isinstance(obj, dict):
        return {k: typed(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [typed(v) for v in obj]
    return type(obj).__name__


class Proxy:
    """The pieces of proxy_server that LiteLLM's endpoint and spend code read from module globals."""

    def __init__(self, dsn: str) -> None:
        from litellm.caching.caching import DualCache
        from litellm.proxy import proxy_server
        from litellm.proxy.utils import PrismaClient, ProxyLogging

        self.server = proxy_server
        self.cache = DualCache()
        self.logging = ProxyLogging(user_api_key_cache=self.cache)
        self.prisma = PrismaClient(**_kw(PrismaClient.__init__, database_url=dsn, proxy_logging_obj=self.logging))
        proxy_server.prisma_client = self.prisma
        proxy_server.proxy_logging_obj = self.logging
        proxy_server.user_api_key_cache = self.cache
        if hasattr(proxy_server, "master_key"):
            proxy_server.master_key = "sk-conformance-master"

    async def __aenter__(self) -> Proxy:
        await self.prisma.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.prisma.disconnect()

    def admin(self) -> Any:
        from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

        return UserAPIKeyAuth(api_key="sk-conformance-master", user_id="conformance-admin",
                              user_role=LitellmUserRoles.PROXY_ADMIN)


# -- start-up ------------------------------------------------------------------------------------
@scenario
async def startup(dsn: str, params: dict[str, Any]) -> dict[str, Any]:
    async with Proxy(dsn) as p:
        out: dict[str, Any] = {}
        out["health_check"] = jsonable(await p.prisma.health_check())
        await p.prisma.check_view_exists()  # creates the spend views through execute_raw when missing
        # a second run takes the "views exist" branch (query_raw with ARRAY_AGG of `name`)
        await p.prisma.check_view_exists()
        if hasattr(p.prisma, "get_generic_data"):
            row = await call(p.prisma.get_generic_data, key="param_name", value="general_settings",
                             table_name="config")
            out["config_row"] = jsonable(row)
        rows = await p.prisma.db.query_raw(
            "SELECT viewname, NULL AS nothing, ARRAY_AGG(viewname) OVER () AS all_views FROM pg_views "
            "WHERE schemaname = 'public' ORDER BY viewname")
        out["views"] = [r["viewname"] for r in rows]
        out["raw_types"] = typed(rows[:1])
        return out


# -- budgets and customers -----------------------------------------------------------------------
@scenario
async def budget_new(dsn: str, params: dict[str, Any]) -> dict[str, Any]:
    from litellm.proxy._types import BudgetNewRequest
    from litellm.proxy.management_endpoints.budget_management_endpoints import new_budget

    async with Proxy(dsn) as p:
        req = BudgetNewRequest(**params["budget"])
        created = await call(new_budget, budget_obj=req, user_api_key_dict=p.admin())
        return {"created": jsonable(created)}


@scenario
async def customer_new(dsn: str, params: dict[str, Any]) -> dict[str, Any]:
    from litellm.proxy._types import NewCustomerRequest
    from litellm.proxy.management_endpoints.customer_endpoints import new_end_user

    async with Proxy(dsn) as p:
        out = []
        for body in params["customers"]:
            created = await call(new_end_user, data=NewCustomerRequest(**body), user_api_key_dict=p.admin())
            out.append(jsonable(created))
        return {"created": out}


# -- the request path: auth lookups --------------------------------------------------------------
@scenario
async def auth_lookups(dsn: str, params: dict[str, Any]) -> dict[str, Any]:
    import litellm

    before = getattr(litellm, "max_end_user_budget_id", None)
    if params.get("default_budget_id"):
        litellm.max_end_user_budget_id = params["default_budget_id"]
    try:
        return await _auth_lookups(dsn, params)
    finally:  # the driver serves every later test from this process
        litellm.max_end_user_budget_id = before


async def _auth_lookups(dsn: str, params: dict[str, Any]) -> dict[str, Any]:
    from litellm.proxy.auth import auth_checks

    async with Proxy(dsn) as p:
        out: dict[str, Any] = {"end_users": {}}
        for end_user_id in params["end_users"]:
            obj = await call(auth_checks.get_end_user_object, end_user_id=end_user_id, prisma_client=p.prisma,
                             user_api_key_cache=p.cache, route="/chat/completions", parent_otel_span=None,
                             proxy_logging_obj=p.logging)
            out["end_users"][end_user_id] = jsonable(obj)
        token = params.get("hashed_token")
        if token:
            view = await call(p.prisma.get_data, token=token, table_name="combined_view", query_type="find_unique")
            out["key_view"] = jsonable(view)
            key_obj = await call(auth_checks.get_key_object, hashed_token=token, prisma_client=p.prisma,
                                 user_api_key_cache=p.cache, parent_otel_span=None, proxy_logging_obj=p.logging)
            out["key_object"] = jsonable(key_obj)
        if params.get("user_id"):
            user = await call(auth_checks.get_user_object, user_id=params["user_id"], prisma_client=p.prisma,
                              user_api_key_cache=p.cache, user_id_upsert=False, parent_otel_span=None,
                              proxy_logging_obj=p.logging)
            out["user_object"] = jsonable(user)
        if params.get("budget_id"):
            rows = await p.prisma.db.litellm_budgettable.find_many(where={"budget_id": params["budget_id"]})
            out["budget_rows"] = jsonable(rows)
        return out


# -- the spend writer ----------------------------------------------------------------------------
class _Capture:
    """A litellm CustomLogger (registered once) that keeps the success kwargs LiteLLM hands its cost
    callbacks, by litellm_call_id."""

    _instance: _Capture | None = None

    def __init__(self) -> None:
        import litellm
        from litellm.integrations.custom_logger import CustomLogger

        events: dict[str, tuple[dict[str, Any], Any, Any, Any]] = {}

        class Capture(CustomLogger):
            async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # noqa: ANN001
                events[str(kwargs.get("litellm_call_id"))] = (kwargs, response_obj, start_time, end_time)

        self.events = events
        self.logger = Capture()
        litellm.callbacks = [self.logger]

    @classmethod
    def get(cls) -> _Capture:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance


async def _completion_event(end_user: str, request_id: str) -> tuple[dict[str, Any], Any, Any, Any]:
    """One real (mocked upstream) completion; returns what the success callbacks receive."""
    import litellm

    cap = _Capture.get()
    await litellm.acompletion(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": f"hello {request_id}"}],
        mock_response="hi there", user=end_user, litellm_call_id=request_id,
        metadata={"user_api_key_end_user_id": end_user, "user_api_key": "conformance-key-hash",
                  "user_api_key_user_id": None, "user_api_key_team_id": None})
    deadline = asyncio.get_running_loop().time() + 30
    while request_id not in cap.events:  # success logging runs as a task after the response
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"litellm did not call the success callback for {request_id} within 30 s")
        await asyncio.sleep(0.02)
    return cap.events.pop(request_id)


class _TaskCollector:
    """Collects the tasks LiteLLM spawns (asyncio.create_task) so they can be awaited, not slept on."""

    def __enter__(self) -> _TaskCollector:
        self.tasks: list[asyncio.Task[Any]] = []
        self._orig = asyncio.create_task

        def create_task(coro: Any, **kw: Any) -> asyncio.Task[Any]:
            task = self._orig(coro, **kw)
            self.tasks.append(task)
            return task

        asyncio.create_task = create_task  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.create_task = self._orig  # type: ignore[assignment]

    async def wait(self) -> None:
        while self.tasks:
            pending, self.tasks = self.tasks, []
            await asyncio.gather(*pending, return_exceptions=True)


@scenario
async def spend_write(dsn: str, params: dict[str, Any]) -> dict[str, Any]:
    from litellm.proxy import utils as proxy_utils

    async with Proxy(dsn) as p:
        writer = p.logging.db_spend_update_writer
        sent = []
        for round_no, batch in enumerate(params["rounds"]):
            for item in batch:
                request_id = f"conf-{uuid.uuid4()}"
                kwargs, response, start, end = await _completion_event(item["end_user"], request_id)
                with _TaskCollector() as tasks:
                    await call(writer.update_database, token=item.get("token"), user_id=item.get("user_id"),
                               end_user_id=item["end_user"], team_id=None, org_id=None, kwargs=kwargs,
                               completion_response=response, start_time=start, end_time=end,
                               response_cost=item["cost"])
                    await tasks.wait()
                sent.append({"round": round_no, "request_id": request_id, **item})
            # the scheduler job the proxy runs every proxy_batch_write_at seconds
            with _TaskCollector() as tasks:
                await call(proxy_utils.update_spend, prisma_client=p.prisma, db_writer_client=None,
                           proxy_logging_obj=p.logging)
                await tasks.wait()
        return {"sent": sent}


# -- raw query shapes ----------------------------------------------------------------------------
@scenario
async def raw_shapes(dsn: str, params: dict[str, Any]) -> dict[str, Any]:
    async with Proxy(dsn) as p:
        db = p.prisma.db
        rows = await db.query_raw(
            'SELECT user_id, spend, NULL AS nothing, budget_id, ARRAY_AGG(user_id) OVER () AS everyone, '
            "'{\"a\": [1, 2.5]}'::jsonb AS doc, 2::bigint AS big, 1.0::float8 AS one "
            'FROM "LiteLLM_EndUserTable" ORDER BY user_id')
        affected = await db.execute_raw('UPDATE "LiteLLM_EndUserTable" SET spend = spend + $1 WHERE user_id = $2',
                                        0.5, params["user_id"])
        first = await db.query_first('SELECT spend FROM "LiteLLM_EndUserTable" WHERE user_id = $1', params["user_id"])
        grouped = await db.litellm_endusertable.group_by(by=["budget_id"], sum={"spend": True},
                                                         order={"budget_id": "asc"})
        count = await db.litellm_endusertable.count()
        return {"rows": jsonable(rows), "types": typed(rows), "affected": affected,
                "affected_type": type(affected).__name__,
                "first": jsonable(first), "first_types": typed(first), "grouped": jsonable(grouped),
                "grouped_types": typed(grouped), "count": count}


async def _answer(request: dict[str, Any]) -> dict[str, Any]:
    # Prisma() without a datasource reads DATABASE_URL when it spawns its engine: point it at this request's db.
    os.environ["DATABASE_URL"] = request["dsn"]
    try:
        result = await SCENARIOS[request["scenario"]](request["dsn"], request.get("params") or {})
        return {"ok": True, "result": result}
    except BaseException as exc:  # report every failure to the test as data
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


async def serve(reply: Any) -> None:
    from litellm.proxy import proxy_server  # noqa: F401  (the slow import, paid once)

    _Capture.get()
    reply.write(json.dumps({"ready": True}) + "\n")
    reply.flush()
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        answer = await _answer(json.loads(line))
        reply.write(json.dumps(answer, default=repr) + "\n")
        reply.flush()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reply-fd", type=int, required=True)
    args = ap.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    reply = os.fdopen(args.reply_fd, "w")
    os.dup2(2, 1)  # whatever LiteLLM prints goes to the log, never into an answer
    asyncio.run(serve(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
