"""Sampler cost with 6000 end users: real redis-server + Postgres 15 on free ports (own process groups).

    .venv/bin/python benchmarks/bench_sampler.py [--users 6000] [--samples 30]

Prints ms per sample (Redis read, DB read, whole sample incl. the CSV append); the goal is < 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import _path  # noqa: F401
import psycopg
import redis

from harness.run.sampler import Sampler, read_counters, read_db_spend
from harness.util.procs import ProcessGroup
from tests.realservers import postgres_server, redis_server


def seed(port: int, dsn: str, users: int) -> None:
    r = redis.Redis(port=port)
    pipe = r.pipeline(transaction=False)
    for i in range(users):
        pipe.set(f"spend:end_user:eu-{i:05d}", repr(i * 0.001), ex=60)
    pipe.set("spend:key:abc", "1.0")       # other counters must not be sampled
    pipe.execute()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('CREATE TABLE "LiteLLM_EndUserTable"(user_id text PRIMARY KEY, spend double precision, '
                     'budget_id text)')
        with conn.cursor().copy('COPY "LiteLLM_EndUserTable"(user_id, spend) FROM STDIN') as copy:
            for i in range(users):
                copy.write_row((f"eu-{i:05d}", i * 0.0009))


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[int(0.95 * (len(values) - 1))]
    med = statistics.median(values)
    return f"median {med * 1000:6.1f} ms   p95 {p95 * 1000:6.1f} ms   max {values[-1] * 1000:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=6000)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        group = ProcessGroup(work / "state")
        try:
            with redis_server(group, work) as port, postgres_server(group) as dsn:
                seed(port, dsn, args.users)
                url = f"redis://127.0.0.1:{port}/0"
                client = redis.Redis(port=port)
                conn = psycopg.connect(dsn, autocommit=True)
                t_redis, t_client, t_db, t_all = [], [], [], []
                for _ in range(args.samples):
                    t0 = time.perf_counter()
                    counters = read_counters(client)
                    t_redis.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    slow = read_counters(client, server_side=False)
                    assert {u: v for u, (v, _) in slow.items()} == {u: v for u, (v, _) in counters.items()}
                    t_client.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    db = read_db_spend(conn)
                    t_db.append(time.perf_counter() - t0)
                assert len(counters) == args.users and len(db) == args.users
                conn.close()
                sampler = Sampler(url, dsn, work / "run", interval_s=1.0)
                for _ in range(args.samples):
                    t0 = time.perf_counter()
                    rows = sampler.sample_once()
                    t_all.append(time.perf_counter() - t0)
                sampler.stop()
                assert rows == args.users
                print(f"{args.users} end users, {args.samples} samples each")
                print(f"  redis, SCAN step + MGET + PTTL in one Lua call:  {ms(t_redis)}")
                print(f"  redis, client-side SCAN + MGET + pipelined PTTL: {ms(t_client)}  (fallback)")
                print(f"  db, one SELECT:                                  {ms(t_db)}")
                print(f"  whole sample (both + {rows} CSV rows appended): {ms(t_all)}")
                print(f"  goal < 50 ms per sample: {'met' if statistics.median(t_all) < 0.05 else 'NOT met'}")
        finally:
            group.stop_all()


if __name__ == "__main__":
    main()
