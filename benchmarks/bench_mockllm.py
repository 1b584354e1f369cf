"""Throughput of the mock LLM on one core, next to a minimal FastAPI + uvicorn server of the same endpoint.

    .venv/bin/python benchmarks/bench_mockllm.py [--duration 10] [--conns 64] [--streams 2000]

Each server runs pinned to core 0 (`taskset -c 0`); the load tool (`wrk`, pinned to core 1) drives it over
loopback: non-streaming chat completions with `--conns` keep-alive connections, then streaming ones with
`--streams` concurrent streams of `--chunks` chunks `--chunk-delay` seconds apart. Without `wrk` a
separate aiohttp client process is the load tool. The mock writes its ledger as in a real run.
"""

# No `from __future__ import annotations`: FastAPI must see the real `Request` class in the baseline.
import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.mockllm import mock_command  # noqa: E402
from harness.util.ports import free_port  # noqa: E402
from harness.util.procs import http_ok, stop_group, wait_until  # noqa: E402

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say something about load tests."}],
        "max_tokens": 32, "user": "bench-user"}


# -- the baseline: a minimal FastAPI + uvicorn implementation of the same endpoint --------------------
def serve_baseline(port: int, chunks: int, delay: float) -> None:
    import orjson
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import Response, StreamingResponse

    from harness.mockllm import responses as wire
    from harness.mockllm.tokens import completion_tokens, prompt_tokens, spread

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        prompt, completion = prompt_tokens(body), completion_tokens(body, 64)
        model, created = body.get("model", ""), int(time.time())
        if not body.get("stream"):
            return Response(wire.completion_body("chatcmpl-1", created, model, prompt, completion),
                            media_type="application/json")

        async def frames():  # type: ignore[no-untyped-def]
            for i, n in enumerate(spread(completion, chunks)):
                if i and delay > 0:
                    await asyncio.sleep(delay)
                yield wire.content_frame("chatcmpl-1", created, model, n, i == 0)
            yield wire.finish_frame("chatcmpl-1", created, model) + wire.DONE_FRAME

        return StreamingResponse(frames(), media_type="text/event-stream")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="uvloop")


# -- load tools ---------------------------------------------------------------------------------------
def pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > core else []


WRK_LUA = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
"""


def run_wrk(url: str, body: dict[str, object], conns: int, duration: float, workdir: Path) -> dict[str, float]:
    script = workdir / f"post-{conns}-{int(bool(body.get('stream')))}.lua"
    script.write_text(WRK_LUA % json.dumps(body))
    threads = min(2, conns)
    cmd = pin(1) + ["wrk", f"-t{threads}", f"-c{conns}", f"-d{int(duration)}s", "--latency", "--timeout", "10s",
                    "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": _ms(p50), "p99_ms": _ms(p99),
            "errors": (sum(int(x) for x in errors.groups()) if errors else 0) + (int(non2xx.group(1)) if non2xx else 0)}


def _ms(match: re.Match[str] | None) -> float:
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


CLIENT = r"""
import asyncio, json, sys, time
import aiohttp
url, body, conns, duration = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
async def worker(session, end, lat, errs):
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            async with session.post(url, json=body) as r:
                await r.read()
                if r.status != 200: errs.append(1)
        except Exception:
            errs.append(1)
        lat.append(time.monotonic() - t)
async def main():
    lat, errs = [], []
    conn = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=conn) as s:
        t0 = time.monotonic(); end = t0 + duration
        await asyncio.gather(*(worker(s, end, lat, errs) for _ in range(conns)))
        el = time.monotonic() - t0
    lat.sort()
    print(json.dumps({"rps": len(lat) / el, "p50_ms": lat[len(lat)//2]*1000, "p99_ms": lat[int(len(lat)*.99)]*1000,
                      "errors": len(errs)}))
asyncio.run(main())
"""


def run_client(url: str, body: dict[str, object], conns: int, duration: float, workdir: Path) -> dict[str, float]:
    out = subprocess.run(pin(1) + [sys.executable, "-c", CLIENT, url, json.dumps(body), str(conns), str(duration)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


# -- the comparison -----------------------------------------------------------------------------------
def start(cmd: list[str], log: Path, port: int) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        proc = subprocess.Popen(pin(0) + cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=REPO)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), deadline_s=30, what=cmd[2],
               still_alive=lambda: proc.poll() is None)
    return proc


def measure(name: str, cmd: list[str], port: int, args: argparse.Namespace, workdir: Path) -> dict[str, dict]:
    load = run_wrk if shutil.which("wrk") and not args.no_wrk else run_client
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    proc = start(cmd, workdir / f"{name}.log", port)
    try:
        load(url, BODY, 8, 1, workdir)  # warm-up
        plain = load(url, BODY, args.conns, args.duration, workdir)
        streaming = load(url, {**BODY, "stream": True}, args.streams, args.duration, workdir)
    finally:
        stop_group(proc.pid)
        proc.wait(timeout=5)
    return {"non-stream": plain, "stream": streaming}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (the median is reported)")
    parser.add_argument("--conns", type=int, default=64, help="connections for non-streaming requests")
    parser.add_argument("--streams", type=int, default=2000, help="concurrent streams")
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--chunk-delay", type=float, default=0.05)
    parser.add_argument("--no-wrk", action="store_true", help="use the aiohttp client process even if wrk exists")
    parser.add_argument("--serve-baseline", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, args.chunks, args.chunk_delay)
        return 0

    tool = "wrk" if shutil.which("wrk") and not args.no_wrk else "aiohttp client process"
    print(f"load tool: {tool} (core 1); servers pinned to core 0: {bool(pin(0))}; {args.rounds} rounds of "
          f"{args.duration:g} s; non-stream conns {args.conns}; streams {args.streams} x {args.chunks} chunks, "
          f"{args.chunk_delay:g} s apart; load average before: {os.getloadavg()[0]:.2f}", flush=True)
    mock_name, base_name = "mockllm (aiohttp+uvloop)", "baseline (FastAPI+uvicorn)"
    runs: dict[str, list[dict[str, dict]]] = {mock_name: [], base_name: []}
    with tempfile.TemporaryDirectory(prefix="bench-mockllm-") as tmp:
        workdir = Path(tmp)
        config = {"stream": {"chunks": args.chunks, "chunk_delay_s": args.chunk_delay, "completion_tokens": 32}}
        for i in range(args.rounds):  # alternate, so that other load on the machine hits both alike
            port = free_port()
            cmd = mock_command(sys.executable, port, workdir / f"ledger{i}.csv", workdir / f"events{i}.csv", 1,
                               config)
            runs[mock_name].append(measure("mockllm", cmd, port, args, workdir))
            port = free_port()
            cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-baseline", str(port), "--chunks",
                   str(args.chunks), "--chunk-delay", str(args.chunk_delay)]
            runs[base_name].append(measure("baseline", cmd, port, args, workdir))
            print(f"round {i + 1}: " + "; ".join(
                f"{name.split()[0]} {r[-1]['non-stream']['rps']:.0f} req/s, {r[-1]['stream']['rps']:.0f} streams/s"
                for name, r in runs.items()), flush=True)
        rows = len((workdir / "ledger0.csv").read_bytes().splitlines()) - 1

    results = {name: {mode: _median([r[mode] for r in rs]) for mode in ("non-stream", "stream")}
               for name, rs in runs.items()}
    print(f"\nmedian of {args.rounds} rounds")
    print(f"{'server':28} {'mode':11} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, res in results.items():
        for mode, r in res.items():
            print(f"{name:28} {mode:11} {r['rps']:9.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors']:7.0f}")
    mock, base = results[mock_name], results[base_name]
    ideal = args.streams / ((args.chunks - 1) * args.chunk_delay)
    print(f"\nspeed-up non-stream: {mock['non-stream']['rps'] / base['non-stream']['rps']:.2f}x; "
          f"stream: {mock['stream']['rps'] / base['stream']['rps']:.2f}x "
          f"(streams/s if the server added no delay: {ideal:.0f}); mock ledger rows in round 1: {rows}; "
          f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


def _median(results: list[dict[str, float]]) -> dict[str, float]:
    ordered = sorted(results, key=lambda r: r["rps"])
    return ordered[len(ordered) // 2]


if __name__ == "__main__":
    sys.exit(main())
