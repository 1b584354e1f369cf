"""Relay overhead: redis-server direct vs through harness.stack.redis_relay (no fault).

    .venv/bin/python benchmarks/bench_relay.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import _path  # noqa: F401
import redis

from harness.util.procs import ProcessGroup
from tests.realservers import redis_server, relay_process


def bench(port: int, label: str) -> tuple[float, float]:
    c = redis.Redis(port=port)
    c.ping()
    n = 5000
    t0 = time.perf_counter()
    for i in range(n):
        c.incrbyfloat("bench:k", 0.001) if i % 2 else c.get("bench:k")
    rtt_us = (time.perf_counter() - t0) / n * 1e6
    pipe = c.pipeline(transaction=False)
    for i in range(20000):
        pipe.get(f"bench:{i % 100}")
    t0 = time.perf_counter()
    pipe.execute()
    pipelined = 20000 / (time.perf_counter() - t0)
    print(f"{label:>8}: sequential round trip {rtt_us:7.1f} µs   pipelined {pipelined:9.0f} cmd/s")
    return rtt_us, pipelined


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        group = ProcessGroup(work / "state")
        try:
            with redis_server(group, work) as rport, relay_process(group, work, rport) as (lport, _):
                direct = bench(rport, "direct")
                relayed = bench(lport, "relay")
                print(f"overhead: +{relayed[0] - direct[0]:.1f} µs per round trip "
                      f"({relayed[0] / direct[0]:.2f}x), pipelined {relayed[1] / direct[1]:.2f}x of direct")
        finally:
            group.stop_all()


if __name__ == "__main__":
    main()
