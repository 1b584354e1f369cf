"""The target file: an existing deployment the external backend drives but never starts or stops.

    harness run scenarios/minimal.yaml --backend external --target target.yaml
    harness target check target.yaml          # what is reachable, which capabilities exist; no load

Shape (YAML; `harness status --name N --format target` prints one for a stack the harness started):

    name: staging                       # a label for reports
    allow_remote: false                 # any host that is not loopback needs true (load goes there)
    proxy:
      url: http://127.0.0.1:4000        # the load balancer (or the only replica)
      replicas: []                      # optional per-replica URLs: the load spreads over them instead
      master_key_env: LITELLM_MASTER_KEY   # or master_key_file: /path/to/0600/file — never the key itself
    redis:                              # read-only sampling: SCAN / GET / PTTL, never a write or a flush
      url: redis://127.0.0.1:6379/0     # rediss:// for TLS
      password_env: REDIS_PASSWORD      # optional; or password_file
      tls_ca_file: null                 # optional CA bundle for rediss://
      namespace: null                   # litellm cache_params.namespace, if the deployment sets one
    postgres:                           # read-only spend queries
      dsn: postgresql://litellm@127.0.0.1:5432/litellm
      password_env: PGPASSWORD          # optional; or password_file
    mock:
      url: http://127.0.0.1:8000        # the harness's mock upstream, deployed next to the proxies; its
                                        # ledger (the ground truth) is read over HTTP (/control/ledger)
    capabilities:                       # optional; a scenario needing one the target lacks is refused
      kill_replica: [kubectl, delete, pod, "litellm-{index}", --grace-period=0, --force]
      toxiproxy_url: http://127.0.0.1:8474   # a Toxiproxy whose proxy `redis` sits between proxies and Redis
      toxiproxy_proxy: redis
    load:                               # optional: Locust's master and workers on other hosts
      master_host: 10.0.0.2             # the address workers connect to (the master binds it)
      master_command: [ip, netns, exec, h1]   # prefix that starts a process on the master's host
      workers:
        - {command: [ip, netns, exec, h2], count: 1}
        - {command: [ssh, loadgen-2], count: 2}

Secrets never live in this file: the master key and passwords come from an environment variable or a file
(`*_env` / `*_file`); a DSN or URL with a password in it is refused. Every URL's host must be loopback unless
`allow_remote: true`. The version the deployment runs is read from the proxy itself.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import HarnessError

KILL_INDEX = "{index}"      # placeholder in kill_replica for the replica's index


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _secret(env: str | None, file: str | None, what: str, base: Path | None) -> str | None:
    """The secret named by an env var or a file (relative to the target file's folder); None if neither."""
    if env:
        value = os.environ.get(env, "").strip()
        if not value:
            raise HarnessError(f"target: {what} comes from ${env}, which is not set",
                               f"export {env}=… before running the harness")
        return value
    if file:
        path = Path(file) if Path(file).is_absolute() or base is None else base / file
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise HarnessError(f"target: {what} file {path} cannot be read ({exc.strerror})",
                               "point the *_file entry at a readable file") from None
        if not value:
            raise HarnessError(f"target: {what} file {path} is empty", "write the secret into it")
        return value
    return None


def _no_password_in(url: str) -> str:
    if urlsplit(url).password:
        raise ValueError("must not carry a password: use password_env or password_file")
    return url


class Proxy(_Strict):
    url: str = Field(description="the load balancer's URL (or the only replica's)")
    replicas: list[str] = Field(default_factory=list, description="per-replica URLs (optional)")
    master_key_env: str | None = None
    master_key_file: str | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> Proxy:
        if bool(self.master_key_env) == bool(self.master_key_file):
            raise ValueError("name exactly one of master_key_env or master_key_file")
        return self

    @property
    def load_urls(self) -> list[str]:
        """Where the load goes: every replica when named, else the load balancer."""
        return [u.rstrip("/") for u in (self.replicas or [self.url])]


class Redis(_Strict):
    url: str
    password_env: str | None = None
    password_file: str | None = None
    tls_ca_file: str | None = None
    namespace: str | None = None

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss"):
            raise ValueError("must be a redis:// or rediss:// URL")
        return _no_password_in(value)


class Postgres(_Strict):
    dsn: str
    password_env: str | None = None
    password_file: str | None = None

    @field_validator("dsn")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        return _no_password_in(value)


class Mock(_Strict):
    url: str


class Capabilities(_Strict):
    kill_replica: list[str] | None = Field(default=None, description="command; {index} = the replica's index")
    kill_timeout_s: float = Field(default=60.0, gt=0, description="deadline of the kill command and of the "
                                                                  "replica's return to health")
    toxiproxy_url: str | None = None
    toxiproxy_proxy: str = "redis"

    @field_validator("kill_replica")
    @classmethod
    def _has_index(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not any(KILL_INDEX in part for part in value)):
            raise ValueError(f"must be a non-empty command with {KILL_INDEX} in one of its words")
        return value


class Workers(_Strict):
    command: list[str] = Field(min_length=1, description="prefix that runs a process on that host")
    count: int = Field(default=1, ge=1, le=64)


class Load(_Strict):
    master_host: str = Field(description="the address the workers connect to; the master binds it")
    master_port: int = Field(default=5557, ge=1, le=65535)
    master_command: list[str] = Field(default_factory=list, description="prefix that runs the master on its host "
                                                                        "(empty: on this machine)")
    workers: list[Workers] = Field(min_length=1)

    @property
    def worker_count(self) -> int:
        return sum(w.count for w in self.workers)


class Target(_Strict):
    name: str = "external"
    allow_remote: bool = False
    proxy: Proxy
    redis: Redis
    postgres: Postgres
    mock: Mock
    capabilities: Capabilities = Field(default_factory=Capabilities)
    load: Load | None = None

    # where the file was read from (relative *_file entries are resolved against its folder)
    source: Path | None = Field(default=None, exclude=True)

    def urls(self) -> dict[str, str]:
        """Every network address the harness will talk to, by what it is."""
        found = {"proxy.url": self.proxy.url, "redis.url": self.redis.url, "postgres.dsn": self.postgres.dsn,
                 "mock.url": self.mock.url}
        found.update({f"proxy.replicas[{i}]": url for i, url in enumerate(self.proxy.replicas)})
        if self.capabilities.toxiproxy_url:
            found["capabilities.toxiproxy_url"] = self.capabilities.toxiproxy_url
        if self.load is not None:
            found["load.master_host"] = f"tcp://{self.load.master_host}"
        return found

    def remote_hosts(self) -> dict[str, str]:
        """{field: host} of every address that is not loopback."""
        out = {}
        for what, url in self.urls().items():
            host = urlsplit(url).hostname or ""
            if not is_loopback(host):
                out[what] = host
        return out

    def check_remote(self) -> None:
        remote = self.remote_hosts()
        if remote and not self.allow_remote:
            first, host = next(iter(remote.items()))
            raise HarnessError(f"target: {first} points at {host}, which is not this machine, and the target file "
                               "does not say allow_remote: true",
                               "add `allow_remote: true` to the target file if load may go there")

    # -- secrets (read on use, never stored in the model) ---------------------------------------------
    @property
    def _base(self) -> Path | None:
        return self.source.parent if self.source else None

    def master_key(self) -> str:
        key = _secret(self.proxy.master_key_env, self.proxy.master_key_file, "the master key", self._base)
        assert key is not None      # the validator demands one source
        return key

    def master_key_path(self) -> str | None:
        """The absolute path of `master_key_file` (relative entries: to the target file's folder), else None."""
        file = self.proxy.master_key_file
        if not file:
            return None
        path = Path(file) if Path(file).is_absolute() or self._base is None else self._base / file
        return str(path)

    def redis_password(self) -> str | None:
        return _secret(self.redis.password_env, self.redis.password_file, "the Redis password", self._base)

    def postgres_password(self) -> str | None:
        return _secret(self.postgres.password_env, self.postgres.password_file, "the Postgres password", self._base)

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
        return yaml.safe_dump(data, sort_keys=False)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_target(data: Any, source: Path | None = None) -> Target:
    """A Target from parsed YAML; HarnessError naming the first problem."""
    where = str(source) if source else "target"
    if not isinstance(data, dict):
        raise HarnessError(f"{where}: expected a mapping (proxy, redis, postgres, mock, …)",
                           "see harness/stack/external/target.py for the shape")
    try:
        target = Target.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top)"
        raise HarnessError(f"{where}: {loc}: {err['msg']}",
                           "fix the target file (shape: harness/stack/external/target.py)") from None
    target.source = source
    return target


def load_target(path: Path | str | None) -> Target:
    """Read and validate a target file, and refuse remote hosts without allow_remote. HarnessError if bad."""
    if path is None:
        raise HarnessError("--backend external needs a target file", "pass --target target.yaml "
                           "(`harness status --name N --format target` prints one for a stack the harness started)")
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise HarnessError(f"target file {file} does not exist", "pass the path of a target file") from None
    except yaml.YAMLError as exc:
        raise HarnessError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})", "fix the file") from None
    target = parse_target(data, file.resolve())
    target.check_remote()
    return target
