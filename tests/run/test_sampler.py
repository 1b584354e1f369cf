"""The sampler against a real redis-server and a real Postgres 15 (own process groups, free ports)."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from harness.load.keys import hashed_token
from harness.run.runfolder import COUNTERS_COLUMNS, COUNTERS_FILE, SAMPLES_COLUMNS, SAMPLES_FILE
from harness.run.sampler import KIND_TABLES, Sampler, read_counters, read_kind_counters
from harness.util.procs import ProcessGroup
from tests.realservers import postgres_server, redis_server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    work = tmp_path_factory.mktemp("sampler")
    group = ProcessGroup(work / "state")
    try:
        with redis_server(group, work) as port, postgres_server(group) as dsn:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute('CREATE TABLE "LiteLLM_EndUserTable"(user_id text PRIMARY KEY, '
                             'spend double precision)')
                for table, column in KIND_TABLES.values():     # the other kinds' DB spend (Prisma schema)
                    conn.execute(f'CREATE TABLE "{table}"({column} text PRIMARY KEY, spend double precision)')
            yield port, dsn
    finally:
        group.stop_all()


@pytest.fixture
def data(servers: tuple[int, str]) -> Iterator[tuple[redis.Redis, str]]:
    port, dsn = servers
    r = redis.Redis(port=port)
    r.flushall()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('TRUNCATE "LiteLLM_EndUserTable"')
        for table, _ in KIND_TABLES.values():
            conn.execute(f'TRUNCATE "{table}"')
    yield r, dsn


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / SAMPLES_FILE, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == SAMPLES_COLUMNS
        return list(reader)


def _seed(r: redis.Redis, dsn: str, counters: dict[str, float], rows: dict[str, float | None],
          prefix: str = "spend:end_user:") -> None:
    for user, value in counters.items():
        r.incrbyfloat(prefix + user, value)
        r.expire(prefix + user, 60)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for user, spend in rows.items():
            conn.execute('INSERT INTO "LiteLLM_EndUserTable" VALUES (%s, %s)', (user, spend))


def test_sample_matches_direct_reads(data: tuple[redis.Redis, str], tmp_path: Path) -> None:
    r, dsn = data
    _seed(r, dsn, {"eu-0001": 1.25, "eu-0002": 0.1 + 0.2, "only-redis": 7.0},
          {"eu-0001": 0.5, "eu-0002": 0.3, "only-db": 2.0, "null-spend": None})
    r.set("spend:end_user:no-ttl", "3.5")               # exists without expiry
    r.set("spend:key:abc", "9")                          # other counters are not sampled
    r.set("ns1:spend:end_user:eu-0001", "100")           # another namespace's counter
    sampler = Sampler(f"redis://127.0.0.1:{r.connection_pool.connection_kwargs['port']}/0", dsn, tmp_path, 1.0)
    try:
        assert sampler.sample_once() == 6
    finally:
        sampler.stop()
    rows = {row["end_user"]: row for row in _rows(tmp_path)}
    assert set(rows) == {"eu-0001", "eu-0002", "only-redis", "only-db", "null-spend", "no-ttl"}
    for user in ("eu-0001", "eu-0002", "only-redis", "no-ttl"):
        assert float(rows[user]["redis_counter"]) == float(r.get(f"spend:end_user:{user}"))
    assert 59 <= float(rows["eu-0001"]["counter_ttl"]) <= 60
    assert float(rows["no-ttl"]["counter_ttl"]) == -1
    assert rows["only-db"]["redis_counter"] == "" and rows["only-db"]["counter_ttl"] == ""
    assert float(rows["eu-0001"]["db_spend"]) == 0.5
    assert rows["only-redis"]["db_spend"] == "" and rows["null-spend"]["db_spend"] == ""
    assert {row["sample"] for row in rows.values()} == {"0"}
    assert len({row["t"] for row in rows.values()}) == 1


def test_namespace_and_both_read_paths_agree(data: tuple[redis.Redis, str]) -> None:
    r, dsn = data
    counters = {f"eu-{i:04d}": i * 0.013 for i in range(2500)}
    _seed(r, dsn, counters, {}, prefix="team-a:spend:end_user:")
    r.set("spend:end_user:plain", "1")
    r.set("team-b:spend:end_user:x", "1")
    server = read_counters(r, "team-a")
    client = read_counters(r, "team-a", server_side=False)
    direct = {k.decode().split(":", 3)[3]: float(v) for k, v in
              zip(sorted(r.scan_iter(match="team-a:*", count=1000)),
                  r.mget(sorted(r.scan_iter(match="team-a:*", count=1000))), strict=True)}
    assert {u: v for u, (v, _) in server.items()} == direct == {u: v for u, (v, _) in client.items()}
    assert len(direct) == 2500
    assert set(read_counters(r)) == {"plain"}


def test_thread_samples_on_a_grid_and_survives_redis_down(data: tuple[redis.Redis, str], tmp_path: Path) -> None:
    r, dsn = data
    _seed(r, dsn, {"eu-1": 1.0}, {"eu-1": 0.5})
    port = r.connection_pool.connection_kwargs["port"]
    sampler = Sampler(f"redis://127.0.0.1:{port}/0", dsn, tmp_path, interval_s=0.1)
    sampler.start()
    deadline = time.monotonic() + 10
    while sampler.samples < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    sampler.stop()
    assert sampler.samples >= 5 and sampler.errors == 0
    assert sampler.max_gap is not None and sampler.max_gap < 0.5
    rows = _rows(tmp_path)
    assert [int(row["sample"]) for row in rows] == list(range(sampler.samples))

    broken = Sampler("redis://127.0.0.1:1/0", dsn, tmp_path / "broken", interval_s=0.1)
    try:
        assert broken.sample_once() == 0
    finally:
        broken.stop()
    assert broken.errors == 1 and "ConnectionError" in (broken.last_error or "")
    assert not (tmp_path / "broken" / SAMPLES_FILE).exists()


def test_stop_writes_the_other_spend_counters(data: tuple[redis.Redis, str], tmp_path: Path) -> None:
    """spend:key/user/team counters (not sampled every second) are written once at stop()."""
    from harness.run.sampler import OTHER_COUNTERS_FILE, read_other_counters

    r, dsn = data
    _seed(r, dsn, {"eu-1": 1.0}, {})
    r.set("spend:key:abc", "3.5")
    r.expire("spend:key:abc", 60)
    r.set("spend:user:u1", "2.25")
    r.set("litellm_spend_update_buffer", "x")          # not a spend counter
    assert [(k, v) for k, v, _ in read_other_counters(r)] == [("spend:key:abc", 3.5), ("spend:user:u1", 2.25)]
    port = r.connection_pool.connection_kwargs["port"]
    sampler = Sampler(f"redis://127.0.0.1:{port}/0", dsn, tmp_path)
    sampler.sample_once()
    sampler.stop()
    with open(tmp_path / OTHER_COUNTERS_FILE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(x["key"], float(x["value"])) for x in rows] == [("spend:key:abc", 3.5), ("spend:user:u1", 2.25)]
    assert 0 < float(rows[0]["ttl"]) <= 60 and float(rows[1]["ttl"]) == -1.0


def _kind_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / COUNTERS_FILE, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == COUNTERS_COLUMNS
        return list(reader)


def _seed_kinds(r: redis.Redis, dsn: str) -> tuple[str, str]:
    """A key, a team, a user and an org counter with DB rows, a key without a counter, and noise."""
    tok, tok_cold = hashed_token("sk-test-key-0"), hashed_token("sk-test-key-1")
    r.set(f"spend:key:{tok}", "3.5", ex=60)
    r.set("spend:team:team-a", "7.25", ex=60)
    r.set("spend:user:u1", "2.0")                     # no expiry
    r.set("spend:org:org-1", "1.0", ex=60)
    r.set("spend:tag:blue", "0.5", ex=60)             # a kind without a table: no DB spend
    r.set(f"spend:key:{tok}:window:1d", "3.5", ex=60)
    r.set("spend:end_user:eu-1", "9.0", ex=60)        # end users go to samples.csv only
    r.rpush("litellm_spend_update_buffer", "x")       # not a counter
    r.set("ns1:spend:key:other", "4.0")               # another namespace
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('INSERT INTO "LiteLLM_VerificationToken" VALUES (%s, 0.75), (%s, 0.0)', (tok, tok_cold))
        conn.execute('INSERT INTO "LiteLLM_TeamTable" VALUES (%s, 1.5), (%s, 0.0)', ("team-a", "team-b"))
        conn.execute('INSERT INTO "LiteLLM_UserTable" VALUES (%s, 2.0)', ("u1",))
        conn.execute('INSERT INTO "LiteLLM_OrganizationTable" VALUES (%s, 0.25)', ("org-1",))
    return tok, tok_cold


def test_every_counter_kind_is_sampled_with_its_db_spend(data: tuple[redis.Redis, str], tmp_path: Path) -> None:
    """No entities of the run's own: every counter under spend: but the end users', each with its table's spend."""
    r, dsn = data
    tok, _ = _seed_kinds(r, dsn)
    port = r.connection_pool.connection_kwargs["port"]
    sampler = Sampler(f"redis://127.0.0.1:{port}/0", dsn, tmp_path, 1.0)
    try:
        sampler.sample_once()
        sampler.sample_once()
    finally:
        sampler.stop()
    rows = _kind_rows(tmp_path)
    assert sampler.errors == 0 and sampler.last_kind_rows == 6
    first = {(x["kind"], x["id"]): x for x in rows if x["sample"] == "0"}
    assert set(first) == {("key", tok), ("team", "team-a"), ("user", "u1"), ("org", "org-1"), ("tag", "blue"),
                          ("key", f"{tok}:window:1d")}
    assert {k: (float(x["redis_counter"]), x["db_spend"]) for k, x in first.items()} == {
        ("key", tok): (3.5, "0.75"), ("team", "team-a"): (7.25, "1.5"), ("user", "u1"): (2.0, "2.0"),
        ("org", "org-1"): (1.0, "0.25"), ("tag", "blue"): (0.5, ""), ("key", f"{tok}:window:1d"): (3.5, "")}
    assert 59 <= float(first[("key", tok)]["counter_ttl"]) <= 60 and first[("user", "u1")]["counter_ttl"] == "-1.0"
    assert {x["sample"] for x in rows} == {"0", "1"}
    samples = {x["end_user"] for x in _rows(tmp_path)}
    assert samples == {"eu-1"}                       # samples.csv unchanged: end users only


def test_the_runs_own_keys_and_teams_by_name(data: tuple[redis.Redis, str], tmp_path: Path) -> None:
    """With entities: exactly those (a row before the counter exists, with its DB spend), nothing else."""
    r, dsn = data
    tok, tok_cold = _seed_kinds(r, dsn)
    port = r.connection_pool.connection_kwargs["port"]
    sampler = Sampler(f"redis://127.0.0.1:{port}/0", dsn, tmp_path, 1.0,
                      entities={"key": [tok, tok_cold], "team": ["team-a", "team-b"]})
    try:
        sampler.sample_once()
    finally:
        sampler.stop()
    rows = {(x["kind"], x["id"]): x for x in _kind_rows(tmp_path)}
    assert set(rows) == {("key", tok), ("key", tok_cold), ("team", "team-a"), ("team", "team-b")}
    assert rows[("key", tok)]["redis_counter"] == "3.5" and rows[("key", tok)]["db_spend"] == "0.75"
    assert rows[("key", tok_cold)]["redis_counter"] == "" and rows[("key", tok_cold)]["db_spend"] == "0.0"
    assert rows[("team", "team-b")]["counter_ttl"] == "" and rows[("team", "team-a")]["redis_counter"] == "7.25"


def test_kind_scan_is_bounded_and_namespaced(data: tuple[redis.Redis, str]) -> None:
    r, _ = data
    pipe = r.pipeline(transaction=False)
    for i in range(300):
        pipe.set(f"spend:key:k{i:03d}", "1", ex=60)
        pipe.set(f"spend:end_user:eu-{i:03d}", "1", ex=60)
    pipe.set("team-a:spend:team:t1", "2")
    pipe.execute()
    out, truncated = read_kind_counters(r, limit=100)
    assert truncated and len(out) == 100 and all(kind == "key" for kind, _ in out)
    full, truncated = read_kind_counters(r)
    assert not truncated and len(full) == 300
    assert read_kind_counters(r, "team-a") == ({("team", "t1"): (2.0, -1.0)}, False)


def test_a_shared_deployment_is_read_with_plain_commands_and_only_the_runs_users(
        data: tuple[redis.Redis, str], tmp_path: Path) -> None:
    """The external backend's sampler (shared=True): no Lua (SCAN/GET/PTTL only), only the run's end users
    (user_prefix), no other counter kind and no final dump of other people's counters."""
    r, dsn = data
    _seed(r, dsn, {"rABC-eu-0000": 2.0, "rABC-eu-0001": 1.0, "someone-else": 9.0},
          {"rABC-eu-0000": 0.5, "someone-else": 8.0})
    r.incrbyfloat("spend:key:other-tenant", 3.0)
    r.config_resetstat()
    run = tmp_path / "shared"
    sampler = Sampler(f"redis://127.0.0.1:{r.connection_pool.connection_kwargs['port']}/0", dsn, run,
                      user_prefix="rABC-", shared=True)
    assert sampler.sample_once() == 2
    sampler.stop()
    assert sorted(row["end_user"] for row in _rows(run)) == ["rABC-eu-0000", "rABC-eu-0001"]
    stats = r.info("commandstats")
    assert not any(name.startswith(("cmdstat_eval", "cmdstat_script")) for name in stats), sorted(stats)
    assert "cmdstat_scan" in stats
    assert not (run / COUNTERS_FILE).exists() and not (run / "spend-counters-final.csv").exists()


def test_counters_in_memory_read_no_redis_and_only_db_spend(data: tuple[redis.Redis, str], tmp_path: Path) -> None:
    """counters: memory — the proxies' counters live in their own processes: the sampler reads no Redis (a dead
    Redis URL does no harm), samples.csv has DB spend with an empty counter, no counters.csv / final dump."""
    r, dsn = data
    _seed(r, dsn, {"eu-0001": 9.0}, {"eu-0001": 0.5, "eu-0002": 1.5})
    r.set("spend:key:abc", "9")
    sampler = Sampler("redis://127.0.0.1:1/0", dsn, tmp_path, 1.0, entities={"key": ["abc"]}, in_memory=True)
    try:
        assert sampler.sample_once() == 2
    finally:
        sampler.stop()
    assert sampler.errors == 0 and sampler.status()["in_memory"] is True
    rows = {row["end_user"]: row for row in _rows(tmp_path)}
    assert {u: (row["redis_counter"], row["counter_ttl"], row["db_spend"]) for u, row in rows.items()} == \
        {"eu-0001": ("", "", "0.5"), "eu-0002": ("", "", "1.5")}
    assert not (tmp_path / COUNTERS_FILE).exists() and not (tmp_path / "spend-counters-final.csv").exists()
