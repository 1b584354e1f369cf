"""A target file for a stack the harness started: `harness status --name N --format target`.

So the external backend can be pointed at any running stack (and is tested end to end against a local one):
the proxies' URLs (each replica), Redis itself (not the fault relay), Postgres, the mock; the master key in a
0600 file in the stack's own state folder (`target-master-key`, deleted by `harness down`); a Postgres
password, if the DSN has one, in another such file — never in the printed target. A Compose stack's Toxiproxy
becomes the `toxiproxy_url` capability (the local backend's relay speaks its own API, not Toxiproxy's).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from harness.errors import HarnessError
from harness.stack.base import Stack, target_key_file, target_pg_password_file
from harness.stack.external.target import Target, is_loopback, parse_target
from harness.util.fsutil import write_secret


def _without_password(dsn: str) -> tuple[str, str | None]:
    parts = urlsplit(dsn)
    if not parts.password:
        return dsn, None
    host = parts.hostname or ""
    netloc = (parts.username or "") + "@" + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), parts.password


def target_for(stack: Stack) -> Target:
    """The target of a running stack (writes its secret files, 0600). HarnessError when it is not running."""
    endpoints = stack.endpoints() if stack.is_running() else None
    if endpoints is None or not endpoints.master_key:
        raise HarnessError(f"stack '{stack.name}' is not running", "start it with `harness up` first")
    if stack.backend == "external":
        raise HarnessError(f"stack '{stack.name}' is a run on an external target", "use that target file")
    key_file = target_key_file(stack.name)
    write_secret(key_file, endpoints.master_key)
    dsn, pg_password = _without_password(endpoints.postgres_dsn)
    postgres: dict[str, str] = {"dsn": dsn}
    if pg_password:
        pg_file = target_pg_password_file(stack.name)
        write_secret(pg_file, pg_password)
        postgres["password_file"] = str(pg_file)
    data: dict[str, object] = {
        "name": stack.name,
        # proxies bound to a test host's address (`harness up --proxy-host`): the user chose that address
        "allow_remote": not all(is_loopback(urlsplit(u).hostname or "") for u in endpoints.proxy_urls),
        "proxy": {"url": endpoints.proxy_urls[0], "replicas": list(endpoints.proxy_urls),
                  "master_key_file": str(key_file)},
        "redis": {"url": endpoints.redis_direct_url, **({"namespace": endpoints.redis_namespace}
                                                       if endpoints.redis_namespace else {})},
        "postgres": postgres,
        "mock": {"url": endpoints.mock_url},
    }
    if stack.backend == "compose" and endpoints.redis_fault_url:
        data["capabilities"] = {"toxiproxy_url": endpoints.redis_fault_url}
    return parse_target(data)


def target_yaml(stack: Stack) -> str:
    header = (f"# harness target file for the {stack.backend} stack '{stack.name}' (harness status --format target).\n"
              "# The master key is in the 0600 file named below; `harness down` deletes it.\n")
    return header + target_for(stack).to_yaml()
