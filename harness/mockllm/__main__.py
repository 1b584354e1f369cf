"""`python -m harness.mockllm --host H --port P --ledger L --events E --seed N [--config JSON-or-file]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from aiohttp import web

from harness.mockllm.config import ConfigError, apply_patch, default_config, load_config_arg
from harness.mockllm.ledger import FLUSH_S, EventLog, Ledger
from harness.mockllm.server import MockServer

SHUTDOWN_TIMEOUT_S = 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.mockllm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ledger", type=Path, required=True, help="ledger CSV (appended)")
    parser.add_argument("--events", type=Path, required=True, help="control events CSV (appended)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=None, help="JSON object, or a path to a JSON file")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace, config: dict[str, object]) -> None:
    ledger = Ledger(args.ledger)
    events = EventLog(args.events)
    server = MockServer(args.seed, config, ledger, events)
    runner = web.AppRunner(server.app(), handler_cancellation=True, access_log=None,
                           shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port, backlog=4096, reuse_address=True)
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        ledger.close()
        events.close()
        raise SystemExit(f"mockllm: cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    events.record("start", "config", {"seed": args.seed, "port": args.port}, config)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def flusher() -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            ledger.flush()

    flush_task = asyncio.create_task(flusher())
    try:
        await stop.wait()
    finally:
        server.begin_stop()
        await runner.cleanup()
        flush_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flush_task
        ledger.close()
        events.record("stop", "signal", None, server.config)
        events.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = apply_patch(default_config(), load_config_arg(args.config))
    except (ConfigError, ValueError, OSError) as exc:
        print(f"mockllm: bad --config: {exc}", file=sys.stderr)
        return 2
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        asyncio.run(serve(args, config))
    else:
        uvloop.run(serve(args, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
