"""What a target answers, without sending load: reachability of each part, the LiteLLM version, the model's
pricing and which capabilities exist. Used by `harness target check` and by the external backend's preflight.

Everything here only reads: HTTP GETs on the proxy (health, model info) and the mock (health), PING / INFO /
one SCAN step on Redis, `SELECT` on Postgres, GETs on Toxiproxy, and `true` through a load host's command
prefix.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.errors import HarnessError
from harness.stack.external.target import KILL_INDEX, Target

TIMEOUT_S = 5.0


@dataclass
class Check:
    what: str
    ok: bool
    detail: str
    required: bool = True


@dataclass
class Probe:
    """The answers of one look at a target."""

    checks: list[Check] = field(default_factory=list)
    version: str | None = None                     # LiteLLM's own, from the proxy
    pricing: dict[str, dict[str, float]] = field(default_factory=dict)   # model -> {input/output_cost_per_token}
    redis_version: str | None = None
    postgres_version: str | None = None
    capabilities: dict[str, bool] = field(default_factory=dict)

    def add(self, what: str, ok: bool, detail: str, required: bool = True) -> None:
        self.checks.append(Check(what, ok, detail, required))

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.required and not c.ok]

    def table(self) -> str:
        width = max((len(c.what) for c in self.checks), default=10)
        lines = [f"  {'ok ' if c.ok else ('NO ' if c.required else '-- ')} {c.what:<{width}}  {c.detail}"
                 for c in self.checks]
        return "\n".join(lines)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _version_of(http: httpx.Client, url: str, key: str) -> tuple[str | None, str]:
    """(litellm_version, detail) from /health/readiness/details (1.84.0+, with the key) or /health/readiness."""
    for path, headers in (("/health/readiness/details", _auth(key)), ("/health/readiness", {})):
        try:
            resp = http.get(url + path, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"unreachable ({type(exc).__name__})"
        if resp.status_code in (401, 403):
            return None, f"HTTP {resp.status_code} on {path}: the master key is not accepted"
        try:
            data = resp.json()
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("litellm_version"):
            db = data.get("db")
            return str(data["litellm_version"]), f"HTTP {resp.status_code}, db {db}, cache {data.get('cache')}"
    return None, "answers, but names no litellm_version"


def _pricing(http: httpx.Client, url: str, key: str) -> dict[str, dict[str, float]]:
    resp = http.get(url + "/model/info", headers=_auth(key))
    resp.raise_for_status()
    out: dict[str, dict[str, float]] = {}
    for entry in resp.json().get("data", []):
        name = entry.get("model_name")
        prices: dict[str, float] = {}
        for source in (entry.get("model_info") or {}, entry.get("litellm_params") or {}):
            for field_name in ("input_cost_per_token", "output_cost_per_token", "max_output_tokens"):
                value = source.get(field_name)
                if isinstance(value, int | float) and field_name not in prices:
                    prices[field_name] = float(value)
        if name:
            out[str(name)] = prices
    return out


def probe(target: Target, *, http: httpx.Client | None = None) -> Probe:
    """Look at every part of `target` (never raises for an unreachable part: it becomes a failed check)."""
    out = Probe()
    client = http or httpx.Client(timeout=TIMEOUT_S)
    try:
        _probe_proxy(target, client, out)
        _probe_redis(target, out)
        _probe_postgres(target, out)
        _probe_mock(target, client, out)
        _probe_capabilities(target, client, out)
        _probe_load_hosts(target, out)
    finally:
        if http is None:
            client.close()
    return out


def _probe_proxy(target: Target, http: httpx.Client, out: Probe) -> None:
    try:
        key = target.master_key()
    except HarnessError as exc:
        out.add("proxy master key", False, exc.line())
        return
    urls = [("proxy", target.proxy.url.rstrip("/"))]
    urls += [(f"proxy replica {i}", u.rstrip("/")) for i, u in enumerate(target.proxy.replicas)]
    for what, url in urls:
        version, detail = _version_of(http, url, key)
        out.add(f"{what} {url}", version is not None, f"LiteLLM {version}; {detail}" if version else detail)
        if version and out.version is None:
            out.version = version
        elif version and version != out.version:
            out.add(f"{what} version", False, f"runs {version}, the load balancer {out.version}: mixed versions")
    if out.version is not None:
        try:
            out.pricing = _pricing(http, urls[0][1], key)
            models = ", ".join(f"{m} (in {p.get('input_cost_per_token')}, out {p.get('output_cost_per_token')})"
                               for m, p in out.pricing.items()) or "none"
            out.add("proxy models", bool(out.pricing), models)
        except (httpx.HTTPError, ValueError) as exc:
            out.add("proxy models", False, f"/model/info failed: {exc}")


def _probe_redis(target: Target, out: Probe) -> None:
    import redis

    try:
        client = redis.Redis.from_url(target.redis.url, **redis_options(target), socket_timeout=TIMEOUT_S,
                                      socket_connect_timeout=TIMEOUT_S)
        client.ping()
        info: dict[str, Any] = client.info("server")  # type: ignore[assignment]  # sync client: a dict
        out.redis_version = str(info.get("redis_version"))
        prefix = f"{target.redis.namespace}:spend:" if target.redis.namespace else "spend:"
        _, keys = client.scan(0, match=prefix + "*", count=1000)  # type: ignore[misc]  # sync client: a tuple
        client.close()
        out.add(f"redis {target.redis.url}", True, f"Redis {out.redis_version}; SCAN allowed "
                                                   f"({len(keys)} spend keys in the first step)")
    except (redis.RedisError, OSError, HarnessError) as exc:
        out.add(f"redis {target.redis.url}", False, f"{type(exc).__name__}: {exc}")


def _probe_postgres(target: Target, out: Probe) -> None:
    import psycopg

    try:
        with psycopg.connect(target.postgres.dsn, autocommit=True, connect_timeout=int(TIMEOUT_S),
                             **postgres_options(target)) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            row = cur.fetchone()
            out.postgres_version = str(row[0]) if row else None
            cur.execute('SELECT count(*) FROM "LiteLLM_EndUserTable"')
            users = cur.fetchone()
        out.add(f"postgres {target.postgres.dsn}", True,
                f"PostgreSQL {out.postgres_version}; LiteLLM_EndUserTable readable ({users[0] if users else 0} rows)")
    except (psycopg.Error, OSError, HarnessError) as exc:
        out.add(f"postgres {target.postgres.dsn}", False, f"{type(exc).__name__}: {str(exc).strip()[:200]}")


def _probe_mock(target: Target, http: httpx.Client, out: Probe) -> None:
    url = target.mock.url.rstrip("/")
    try:
        health = http.get(url + "/health").json()
        ledger = http.get(url + "/control/ledger", params={"since": "9e18"})
        ok = ledger.status_code == 200 and ledger.text.startswith("t_start")
        out.add(f"mock {url}", ok, f"{health.get('requests')} requests served; ledger export "
                                   f"{'available' if ok else f'missing (HTTP {ledger.status_code})'}")
    except (httpx.HTTPError, ValueError) as exc:
        out.add(f"mock {url}", False, f"{type(exc).__name__}: {exc}")


def _probe_capabilities(target: Target, http: httpx.Client, out: Probe) -> None:
    caps = target.capabilities
    if caps.kill_replica:
        program = shutil.which(caps.kill_replica[0])
        out.capabilities["kill_replica"] = program is not None
        example = " ".join(caps.kill_replica).replace(KILL_INDEX, "0")
        out.add("capability kill_replica", program is not None,
                f"`{example}`" + ("" if program else f" — {caps.kill_replica[0]} is not on PATH"), required=False)
    else:
        out.capabilities["kill_replica"] = False
        out.add("capability kill_replica", False, "not configured (replica-kill scenarios are refused)",
                required=False)
    if caps.toxiproxy_url:
        url = caps.toxiproxy_url.rstrip("/")
        try:
            resp = http.get(f"{url}/proxies/{caps.toxiproxy_proxy}")
            ok = resp.status_code == 200
            detail = (f"proxy '{caps.toxiproxy_proxy}' listens {resp.json().get('listen')} -> "
                      f"{resp.json().get('upstream')}") if ok else f"HTTP {resp.status_code}: {resp.text[:100]}"
        except (httpx.HTTPError, ValueError) as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        out.capabilities["redis_faults"] = ok
        out.add(f"capability redis faults (Toxiproxy {url})", ok, detail, required=False)
    else:
        out.capabilities["redis_faults"] = False
        out.add("capability redis faults", False, "no toxiproxy_url (Redis-fault scenarios are refused)",
                required=False)


def _probe_load_hosts(target: Target, out: Probe) -> None:
    load = target.load
    if load is None:
        out.add("load hosts", True, "Locust runs on this machine", required=False)
        return
    prefixes = [("master", load.master_command)] + [(f"workers[{i}]", w.command) for i, w in enumerate(load.workers)]
    for what, prefix in prefixes:
        if not prefix:
            out.add(f"load {what}", True, "this machine")
            continue
        try:
            proc = subprocess.run([*prefix, "true"], capture_output=True, timeout=30, check=False)  # noqa: S603
            ok, detail = proc.returncode == 0, f"`{' '.join(prefix)} true` exit {proc.returncode}" + (
                f": {proc.stderr.decode(errors='replace').strip()[:120]}" if proc.returncode else "")
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, detail = False, f"`{' '.join(prefix)}`: {exc}"
        out.add(f"load {what}", ok, detail)


def redis_options(target: Target) -> dict[str, Any]:
    """redis.Redis.from_url keyword arguments for the target's password and TLS CA (never in a URL)."""
    opts: dict[str, Any] = {}
    password = target.redis_password()
    if password:
        opts["password"] = password
    if target.redis.tls_ca_file:
        opts["ssl_ca_certs"] = target.redis.tls_ca_file
    return opts


def postgres_options(target: Target) -> dict[str, Any]:
    """psycopg.connect keyword arguments for the target's password (never in the DSN)."""
    password = target.postgres_password()
    return {"password": password} if password else {}
