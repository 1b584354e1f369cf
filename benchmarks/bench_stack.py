"""Figures of the local stack: start-up time per replica, RSS per replica and per engine stand-in, and the
requests/s one replica serves with the DB (non-streaming chat completions, end users with a budget).

    .venv/bin/python benchmarks/bench_stack.py [--litellm 1.84.0] [--replicas 1] [--seconds 20] [--concurrency 16]

Starts its own stack (state in a temp folder) and always tears it down.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import _path  # noqa: F401 - repository root on sys.path
import httpx
import psutil

from harness.stack.base import StackSpec
from harness.stack.local import LocalStack


def rss_split(pid: int) -> tuple[float, float]:
    """(proxy python process tree without node, the Prisma engine stand-in) in MB."""
    proc = psutil.Process(pid)
    proxy, engine = proc.memory_info().rss, 0
    for child in proc.children(recursive=True):
        rss = child.memory_info().rss
        if "node" in child.name() or "server.mjs" in " ".join(child.cmdline()):
            engine += rss
        else:
            proxy += rss
    return proxy / 2**20, engine / 2**20


async def load(url: str, key: str, seconds: float, concurrency: int) -> tuple[int, int, list[float]]:
    ok = failed = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=headers) as client:
        async def worker(w: int) -> None:
            nonlocal ok, failed
            i = 0
            while time.monotonic() < deadline:
                i += 1
                t0 = time.monotonic()
                resp = await client.post(f"{url}/v1/chat/completions", json={
                    "model": "mock-gpt", "user": f"bench-{w}-{i % 50}", "max_tokens": 32,
                    "messages": [{"role": "user", "content": f"benchmark request {w}-{i}"}]})
                latencies.append(time.monotonic() - t0)
                if resp.status_code == 200:
                    ok += 1
                else:
                    failed += 1

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return ok, failed, latencies


def spend_check(endpoints, deadline_s: float = 60.0) -> str:  # noqa: ANN001 - Endpoints
    """One chat completion with user u1 through each replica; seconds until LiteLLM_EndUserTable.spend of u1
    equals their summed cost; what Redis holds for u1."""
    import psycopg
    import redis

    headers = {"Authorization": f"Bearer {endpoints.master_key}"}
    cost = 0.0
    statuses = []
    for url in endpoints.proxy_urls:
        resp = httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=120, json={
            "model": "mock-gpt", "user": "u1", "max_tokens": 40,
            "messages": [{"role": "user", "content": f"spend check via {url}"}]})
        statuses.append(resp.status_code)
        if resp.status_code == 200:
            cost += float(resp.headers.get("x-litellm-response-cost") or 0.0)
    t0 = time.monotonic()
    db = None
    while time.monotonic() - t0 < deadline_s:
        with psycopg.connect(endpoints.postgres_dsn) as conn:
            row = conn.execute('SELECT spend FROM "LiteLLM_EndUserTable" WHERE user_id = %s', ("u1",)).fetchone()
        db = None if row is None else float(row[0])
        if db is not None and abs(db - cost) < 1e-9:
            break
        time.sleep(0.5)
    waited = time.monotonic() - t0
    client = redis.Redis.from_url(endpoints.redis_direct_url)
    counter = client.get("spend:end_user:u1")
    keys = sorted(k.decode() for k in client.scan_iter(match="spend:*", count=1000))
    return (f"statuses {statuses}; summed cost ${cost:.6f}; DB spend of u1 ${db} after {waited:.1f} s "
            f"({'equal' if db is not None and abs(db - cost) < 1e-9 else 'NOT equal'}); "
            f"Redis spend:end_user:u1 = {counter.decode() if counter else 'absent'}; spend:* keys: {keys}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--litellm", default="1.84.0")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="harness-bench-stack-"))
    state.chmod(0o755)
    stack = LocalStack("bench-stack", state_dir=state)
    t0 = time.monotonic()
    try:
        endpoints = stack.up(StackSpec(version=args.litellm, replicas=args.replicas, run_dir=state / "run"))
        up_s = time.monotonic() - t0
        timings = stack.facts().timings
        print(f"LiteLLM {args.litellm}, {args.replicas} replica(s): stack up in {up_s:.1f} s "
              f"(postgres+migrations {timings.get('postgres_s', 0):.1f} s, replicas healthy after "
              f"{timings.get('proxies_s', 0):.1f} s)")
        print(spend_check(endpoints))
        ok, failed, lat = asyncio.run(load(endpoints.proxy_urls[0], endpoints.master_key, args.seconds,
                                           args.concurrency))
        lat.sort()
        print(f"replica 0, {args.concurrency} concurrent non-streaming requests for {args.seconds:.0f} s: "
              f"{ok / args.seconds:.1f} req/s ok ({failed} failed), p50 {statistics.median(lat) * 1000:.0f} ms, "
              f"p99 {lat[int(len(lat) * 0.99) - 1] * 1000:.0f} ms")
        pids = {p["name"]: p["pid"] for p in stack.facts().processes}
        for i in range(args.replicas):
            proxy_mb, engine_mb = rss_split(pids[f"proxy-{i}"])
            print(f"replica {i}: RSS {proxy_mb:.0f} MB (LiteLLM) + {engine_mb:.0f} MB (Prisma engine stand-in)")
    finally:
        stack.down()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
