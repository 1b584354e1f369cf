"""Sampler cost with 6000 end users and 50 virtual keys in 5 teams: real redis-server + Postgres 15 on free ports
(own process groups).

    .venv/bin/python benchmarks/bench_sampler.py [--users 6000] [--keys 50] [--samples 30]

Prints ms per sample (Redis read, DB read, the other counter kinds — by name for the run's own keys/teams and by
the bounded scan otherwise —, whole sample incl. the CSV appends); the goal is < 50 ms.
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

from harness.load.keys import hashed_token
from harness.run.sampler import KIND_TABLES, Sampler, read_counters, read_db_spend, read_kind_counters
from harness.util.procs import ProcessGroup
from tests.realservers import postgres_server, redis_server


def seed(port: int, dsn: str, users: int, keys: int, teams: int) -> dict[str, list[str]]:
    """End users, keys and teams with counters and DB rows; returns the sampler's `entities` filter."""
    r = redis.Redis(port=port)
    pipe = r.pipeline(transaction=False)
    for i in range(users):
        pipe.set(f"spend:end_user:eu-{i:05d}", repr(i * 0.001), ex=60)
    tokens = [hashed_token(f"sk-bench-{i}") for i in range(keys)]
    team_ids = [f"team-bench-{j}" for j in range(teams)]
    for i, tok in enumerate(tokens):
        pipe.set(f"spend:key:{tok}", repr(i * 0.01), ex=60)
    for j, team in enumerate(team_ids):
        pipe.set(f"spend:team:{team}", repr(j * 0.1), ex=60)
    pipe.rpush("litellm_spend_update_buffer", "x")     # not a counter: skipped
    pipe.execute()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('CREATE TABLE "LiteLLM_EndUserTable"(user_id text PRIMARY KEY, spend double precision, '
                     'budget_id text)')
        for table, column in KIND_TABLES.values():
            conn.execute(f'CREATE TABLE "{table}"({column} text PRIMARY KEY, spend double precision)')
        with conn.cursor().copy('COPY "LiteLLM_EndUserTable"(user_id, spend) FROM STDIN') as copy:
            for i in range(users):
                copy.write_row((f"eu-{i:05d}", i * 0.0009))
        for tok in tokens:
            conn.execute('INSERT INTO "LiteLLM_VerificationToken" VALUES (%s, 0.5)', (tok,))
        for team in team_ids:
            conn.execute('INSERT INTO "LiteLLM_TeamTable" VALUES (%s, 1.5)', (team,))
    return {"key": tokens, "team": team_ids}


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[int(0.95 * (len(values) - 1))]
    med = statistics.median(values)
    return f"median {med * 1000:6.1f} ms   p95 {p95 * 1000:6.1f} ms   max {values[-1] * 1000:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=6000)
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--teams", type=int, default=5)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        group = ProcessGroup(work / "state")
        try:
            with redis_server(group, work) as port, postgres_server(group) as dsn:
                entities = seed(port, dsn, args.users, args.keys, args.teams)
                n_kinds = args.keys + args.teams
                url = f"redis://127.0.0.1:{port}/0"
                client = redis.Redis(port=port)
                conn = psycopg.connect(dsn, autocommit=True)
                t_redis, t_client, t_db, t_all, t_own, t_scan, t_bare = [], [], [], [], [], [], []
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
                    t0 = time.perf_counter()
                    own, _ = read_kind_counters(client, entities=entities)
                    t_own.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    scanned, _ = read_kind_counters(client)
                    t_scan.append(time.perf_counter() - t0)
                    assert {k: v for k, (v, _) in own.items()} == {k: v for k, (v, _) in scanned.items()}
                    assert len(own) == n_kinds, (len(own), n_kinds)
                assert len(counters) == args.users and len(db) == args.users
                conn.close()
                for times, ents, run in ((t_all, entities, "run"), (t_bare, None, "run-bare")):
                    sampler = Sampler(url, dsn, work / run, interval_s=1.0, entities=ents)
                    for _ in range(args.samples):
                        t0 = time.perf_counter()
                        rows = sampler.sample_once()
                        times.append(time.perf_counter() - t0)
                    assert sampler.last_kind_rows == n_kinds
                    sampler.stop()
                assert rows == args.users
                print(f"{args.users} end users, {args.keys} keys, {args.teams} teams, {args.samples} samples each")
                print(f"  redis, SCAN step + MGET + PTTL in one Lua call:  {ms(t_redis)}")
                print(f"  redis, client-side SCAN + MGET + pipelined PTTL: {ms(t_client)}  (fallback)")
                print(f"  db, one SELECT:                                  {ms(t_db)}")
                print(f"  other kinds, the run's own keys/teams by name:   {ms(t_own)}")
                print(f"  other kinds, server-side scan (no own entities): {ms(t_scan)}")
                print(f"  whole sample, own entities ({rows} + {n_kinds} rows): {ms(t_all)}")
                print(f"  whole sample, scanned kinds ({rows} + {n_kinds} rows): {ms(t_bare)}")
                worst = max(statistics.median(t_all), statistics.median(t_bare))
                print(f"  goal < 50 ms per sample: {'met' if worst < 0.05 else 'NOT met'}")
        finally:
            group.stop_all()


if __name__ == "__main__":
    main()
