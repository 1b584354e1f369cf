"""The aiohttp application: OpenAI chat completions and Anthropic Messages with injected faults, plus control routes.

Both routes share one handler: the same token arithmetic, fault decisions, stream shape and ledger rows; only the
wire format differs (`Wire`: responses.OpenAIWire, anthropic.AnthropicWire).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web

from harness.mockllm import responses as wire
from harness.mockllm.anthropic import AnthropicWire
from harness.mockllm.config import ConfigError, apply_patch
from harness.mockllm.injection import FaultPlan, decide, from_header
from harness.mockllm.ledger import EventLog, Ledger, export_rows
from harness.mockllm.responses import OpenAIWire
from harness.mockllm.tokens import completion_tokens, prompt_tokens, requested_tokens, spread
from harness.util.netutil import abort_with_rst

REQUEST_ID_HEADER = "x-harness-request-id"
FAULT_HEADER = "x-mock-fault"
END_USER_HEADERS = ("x-litellm-end-user-id", "x-litellm-customer-id")
JSON = "application/json"


class Wire(Protocol):
    """One API's wire format: what differs between the chat completions and the Messages route."""

    name: str
    id_prefix: str     # the response id is <id_prefix><request id> (the analyzer joins LiteLLM's spend logs by it)

    def end_user(self, body: dict[str, Any]) -> str: ...
    def error(self, status: int, message: str) -> bytes: ...
    def body(self, cid: str, created: int, model: str, prompt: int, completion: int, capped: bool) -> bytes: ...
    def with_usage(self, mode: str, body: dict[str, Any]) -> bool: ...
    def stream_head(self, cid: str, created: int, model: str, prompt: int, completion: int) -> bytes: ...
    def content(self, cid: str, created: int, model: str, tokens: int, first: bool) -> bytes: ...
    def stream_tail(self, cid: str, created: int, model: str, prompt: int, completion: int, capped: bool,
                    with_usage: bool) -> bytes: ...
    def malformed_json(self, cid: str) -> bytes: ...
    def malformed_sse(self) -> bytes: ...


OPENAI: Wire = OpenAIWire()
ANTHROPIC: Wire = AnthropicWire()


@dataclass(slots=True)
class Call:
    """One upstream call as it happens; becomes one ledger row."""

    t_start: float
    request_id: str
    model: str
    end_user: str
    stream: bool
    prompt: int
    promised: int
    capped: bool = False    # the request set max_tokens (the answer is that long)
    delivered: int = 0
    chunks: int = 0
    outcome: str = ""


class MockServer:
    def __init__(self, seed: int, config: dict[str, Any], ledger: Ledger, events: EventLog) -> None:
        self.seed = seed
        self.initial = config
        self.config = config
        self.ledger = ledger
        self.events = events
        self.seq = 0
        self.seen: dict[str, int] = {}
        self.stopping = False
        self._stop = asyncio.Event()

    # -- application --------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/messages", self.messages)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/control/faults", self.get_faults)
        app.router.add_post("/control/faults", self.set_faults)
        app.router.add_post("/control/reset", self.reset)
        app.router.add_get("/control/ledger", self.export_ledger)
        app.router.add_get("/control/events", self.export_events)
        return app

    def begin_stop(self) -> None:
        """Shutdown started: hanging calls end, calls cancelled from now on are `fault:shutdown`."""
        self.stopping = True
        self._stop.set()

    # -- small routes -------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "ok", "requests": self.seq, "ledger_rows": self.ledger.count,
                           "seed": self.seed})

    async def models(self, request: web.Request) -> web.Response:
        return web.Response(body=wire.models_body(self.config["models"], int(time.time())), content_type=JSON)

    async def get_faults(self, request: web.Request) -> web.Response:
        return _json(200, self.config)

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            patch = orjson.loads(await request.read())
            if not isinstance(patch, dict):
                raise ConfigError("expected a JSON object")
            self.config = apply_patch(self.config, patch)
        except (ConfigError, orjson.JSONDecodeError) as exc:
            return _json(400, {"error": str(exc)})
        self.events.record("set_faults", "control", patch, self.config)
        return _json(200, self.config)

    async def reset(self, request: web.Request) -> web.Response:
        self.config = self.initial
        self.events.record("reset", "control", None, self.config)
        return _json(200, self.config)

    async def export_ledger(self, request: web.Request) -> web.StreamResponse:
        """The ledger as CSV, for a harness that does not share this disk (the external backend):
        `?since=<unix time>` (rows that started then or later; default all) and `&end_user_prefix=<p>`."""
        self.ledger.flush()
        return await self._export(request, self.ledger.path, request.query.get("end_user_prefix"))

    async def export_events(self, request: web.Request) -> web.StreamResponse:
        """mock-events.csv as CSV, `?since=<unix time>`."""
        return await self._export(request, self.events.path, None)

    async def _export(self, request: web.Request, path: Path, prefix: str | None) -> web.StreamResponse:
        try:
            since = float(request.query.get("since", "0"))
        except ValueError:
            return _json(400, {"error": "since must be a Unix time"})
        pieces = export_rows(path, since, prefix)
        resp = web.StreamResponse(headers={"Content-Type": "text/csv"})
        await resp.prepare(request)
        while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
            await resp.write(piece)
        await resp.write_eof()
        return resp

    # -- chat completions and messages ---------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, OPENAI)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """Anthropic Messages. Any `x-api-key` or `Authorization` is accepted, as on the chat route."""
        return await self._serve(request, ANTHROPIC)

    async def _serve(self, request: web.Request, api: Wire) -> web.StreamResponse:
        t_start = time.time()
        self.seq += 1
        seq = self.seq
        headers = request.headers
        raw = await request.read()
        try:
            body = orjson.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            self.ledger.record(t_start, time.time(), headers.get(REQUEST_ID_HEADER) or f"mock-{seq}", "", "",
                               False, 0, 0, 0, 0, "bad_request")
            return web.Response(status=400, content_type=JSON,
                                body=api.error(400, "request body is not a JSON object"))
        config = self.config
        rid = headers.get(REQUEST_ID_HEADER)
        if rid:
            n = self.seen.get(rid, 0)
            self.seen[rid] = n + 1
            key = f"{rid}#{n}"
        else:
            rid = f"mock-{seq}"
            key = f"#{seq}"
        forced = headers.get(FAULT_HEADER)
        try:
            plan = from_header(forced, config) if forced else decide(config, self.seed, key)
        except ConfigError as exc:
            return web.Response(status=400, content_type=JSON, body=api.error(400, str(exc)))
        user = api.end_user(body) or headers.get(END_USER_HEADERS[0]) or headers.get(END_USER_HEADERS[1]) or ""
        model = body.get("model")
        call = Call(t_start=t_start, request_id=rid, model=model if isinstance(model, str) else "",
                    end_user=user, stream=body.get("stream") is True, prompt=prompt_tokens(body),
                    promised=completion_tokens(body, int(config["stream"]["completion_tokens"])),
                    capped=requested_tokens(body) is not None)
        try:
            if call.stream:
                return await self._stream(request, api, body, plan, call, config)
            return await self._complete(request, api, plan, call)
        except asyncio.CancelledError:
            if not call.outcome.startswith("fault:"):
                call.outcome = "fault:shutdown" if self.stopping else "client_gone"
            raise
        except ConnectionError:
            if not call.outcome.startswith("fault:"):
                call.outcome = "client_gone"
            raise
        finally:
            self.ledger.record(call.t_start, time.time(), call.request_id, call.model, call.end_user, call.stream,
                               call.prompt, call.promised, call.delivered, call.chunks, call.outcome or "ok")

    async def _before_response(self, request: web.Request, api: Wire, plan: FaultPlan,
                               call: Call) -> web.StreamResponse | None:
        """Latency, then the faults that replace the response. None: go on and answer."""
        if plan.latency_s > 0:
            await asyncio.sleep(plan.latency_s)
        kind = plan.kind
        if kind is None:
            return None
        if kind == "rate_limit":
            call.outcome = "fault:rate_limit"
            return web.Response(status=429, content_type=JSON,
                                headers={"Retry-After": _retry_after(plan.retry_after_s)},
                                body=api.error(429, "Rate limit reached (mock)"))
        if kind in ("error_500", "error_503"):
            call.outcome = f"fault:{kind}"
            status = 500 if kind == "error_500" else 503
            return web.Response(status=status, content_type=JSON,
                                body=api.error(status, f"Injected upstream error {status} (mock)"))
        if kind == "hang":
            call.outcome = "fault:hang"
            await self._stop.wait()
            _close(request)
            return web.Response(status=503)
        if kind == "reset":
            call.outcome = "fault:reset"
            _reset(request)
            return web.Response(status=503)
        return None

    async def _complete(self, request: web.Request, api: Wire, plan: FaultPlan, call: Call) -> web.StreamResponse:
        early = await self._before_response(request, api, plan, call)
        if early is not None:
            return early
        body = api.body(f"{api.id_prefix}{call.request_id}", int(call.t_start), call.model, call.prompt,
                        call.promised, call.capped)
        if plan.kind in ("malformed_json", "malformed_sse"):
            call.outcome = f"fault:{plan.kind}"
            return web.Response(body=body[: len(body) // 2], content_type=JSON)
        if plan.kind == "stream_cut":
            resp = web.StreamResponse(headers={"Content-Type": JSON})
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
            call.outcome = "fault:stream_cut"
            _close(request)
            return resp
        call.delivered = call.promised
        return web.Response(body=body, content_type=JSON)

    async def _stream(self, request: web.Request, api: Wire, body: dict[str, Any], plan: FaultPlan, call: Call,
                      config: dict[str, Any]) -> web.StreamResponse:
        early = await self._before_response(request, api, plan, call)
        if early is not None:
            return early
        shape = config["stream"]
        with_usage = api.with_usage(shape["usage"], body)
        parts = spread(call.promised, int(shape["chunks"]))
        delay = float(shape["chunk_delay_s"])
        cid = f"{api.id_prefix}{call.request_id}"
        created = int(call.t_start)
        kind = plan.kind
        at = plan.after_chunks if kind in ("stream_cut", "malformed_json", "malformed_sse") else -1

        resp = web.StreamResponse(headers=wire.SSE_HEADERS)
        await resp.prepare(request)
        head = api.stream_head(cid, created, call.model, call.prompt, call.promised)
        if head:
            await resp.write(head)
        if plan.first_token_delay_s > 0:
            await asyncio.sleep(plan.first_token_delay_s)
        for i in range(len(parts) + 1):
            if i == at:
                if kind == "stream_cut":
                    call.outcome = "fault:stream_cut"
                    _close(request)
                    return resp
                call.outcome = f"fault:{kind}"
                await resp.write(api.malformed_json(cid) if kind == "malformed_json" else api.malformed_sse())
            if i == len(parts):
                break
            if i and delay > 0:
                await asyncio.sleep(delay)
            await resp.write(api.content(cid, created, call.model, parts[i], i == 0))
            call.chunks += 1
            call.delivered += parts[i]
        await resp.write(api.stream_tail(cid, created, call.model, call.prompt, call.promised, call.capped,
                                         with_usage))
        await resp.write_eof()
        return resp


def _json(status: int, obj: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), content_type=JSON)


def _retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _close(request: web.Request) -> None:
    """Close the connection after what was written so far (FIN): the client sees a truncated body."""
    transport = request.transport
    if transport is not None:
        transport.close()


def _reset(request: web.Request) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0) before anything is sent."""
    abort_with_rst(request.transport)
