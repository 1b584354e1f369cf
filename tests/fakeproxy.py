"""A tiny LiteLLM-like proxy for the load tests and the load benchmark (aiohttp; run as a subprocess).

    python -m tests.fakeproxy --port P --key-file F --log L [--chunks 8] [--chunk-delay 0.02]

Behaviour by end user (body `user`): `over-*` 400 with the reservation wording, `readtime-*` 429 with the
read-time wording, `flaky-*` 503 on the first attempt of a request id, `slow-*` 1.5 s before the first chunk;
everyone else gets a normal answer. With --log, one JSON line per request: what arrived and whether the
client went away mid-stream (`client_gone`, `chunks_sent`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web


def _frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _chunk(i: int, content: str | None) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta,
                                                                      "finish_reason": None}]}


class Fake:
    def __init__(self, key: str, chunks: int, delay: float, log: Path | None) -> None:
        self.key, self.chunks, self.delay = key, chunks, delay
        self.log = open(log, "a", buffering=1) if log else None  # noqa: SIM115
        self.seen: dict[str, int] = {}

    def record(self, entry: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write(json.dumps(entry) + "\n")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        rid = request.headers.get("x-harness-request-id", "")
        user = body.get("user", "")
        self.seen[rid] = self.seen.get(rid, 0) + 1
        entry: dict[str, Any] = {
            "t": time.time(), "request_id": rid, "user": user, "attempt": self.seen[rid] - 1,
            "header_user": request.headers.get("x-litellm-end-user-id"),
            "auth_ok": request.headers.get("Authorization") == f"Bearer {self.key}",
            "stream": body.get("stream"), "stream_options": body.get("stream_options"),
            "max_tokens": body.get("max_tokens"), "prompt": body["messages"][0]["content"],
            "client_gone": False, "chunks_sent": 0}
        try:
            if not entry["auth_ok"]:
                return web.json_response({"error": {"message": "Authentication Error, invalid key"}}, status=401)
            if user.startswith("over-"):
                return web.json_response({"error": {"message": f"Budget has been exceeded! EndUser={user} "
                                                    "Current cost: 2.5, Max budget: 2.0",
                                                    "type": "budget_exceeded", "param": None, "code": "400"}},
                                         status=400)
            if user.startswith("readtime-"):
                return web.json_response({"error": {"message": f"ExceededBudget: End User={user} over budget. "
                                                    "Spend=3.1, Budget=2.0", "type": "budget_exceeded"}},
                                         status=429)
            if user.startswith("flaky-") and self.seen[rid] == 1:
                return web.json_response({"error": {"message": "upstream unavailable"}}, status=503)
            if not body.get("stream"):
                return web.json_response({"id": "c", "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "hello " * self.chunks},
                     "finish_reason": "stop"}], "usage": {"prompt_tokens": 10, "completion_tokens": self.chunks}})
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            try:
                if user.startswith("slow-"):
                    await asyncio.sleep(1.5)
                for i in range(self.chunks):
                    if request.transport is None or request.transport.is_closing():
                        raise ConnectionResetError("client gone")
                    await resp.write(_frame(_chunk(i, f"tok{i} ")))
                    entry["chunks_sent"] += 1
                    if self.delay:
                        await asyncio.sleep(self.delay)
                await resp.write(_frame(_chunk(self.chunks, None)))
                if (body.get("stream_options") or {}).get("include_usage"):
                    await resp.write(_frame({"id": "c", "choices": [], "usage": {"prompt_tokens": 10,
                                                                                 "completion_tokens": self.chunks}}))
                await resp.write(b"data: [DONE]\n\n")
                await resp.write_eof()
            except ConnectionResetError:
                entry["client_gone"] = True
            except asyncio.CancelledError:
                entry["client_gone"] = True
                raise
            return resp
        finally:
            self.record(entry)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--chunk-delay", type=float, default=0.02)
    args = parser.parse_args()
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    fake = Fake(args.key_file.read_text().strip(), args.chunks, args.chunk_delay, args.log)
    app = web.Application()
    app.router.add_post("/chat/completions", fake.chat)
    app.router.add_post("/v1/chat/completions", fake.chat)
    app.router.add_get("/health", lambda _: web.json_response({"ok": True}))
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, handler_cancellation=True)


if __name__ == "__main__":
    main()
