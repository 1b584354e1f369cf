"""The stack interface every backend (local, compose, external) implements."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rich.console import Console

from harness.paths import state_root
from harness.util.fsutil import write_secret

if TYPE_CHECKING:
    from harness.litellm.candidate import Candidate
    from harness.load.config import LoadConfig
    from harness.stack.external.target import Load

MASTER_KEY_FILE = "master-key"
TARGET_KEY_FILE = "target-master-key"
TARGET_PG_PASSWORD_FILE = "target-postgres-password"


def replica_name(index: int) -> str:
    """Replica `index`'s name everywhere: process name, Compose service, log file stem (proxy-0.log)."""
    return f"proxy-{index}"


def state_dir_of(stack_name: str) -> Path:
    """A stack's state folder (`.state/<name>/`), whatever its backend."""
    return state_root() / stack_name


def master_key_file(stack_name: str) -> Path:
    """The 0600 file a process started next to the stack (Locust) reads the master key from.

    It lives in the stack's own state folder, never in the system temp folder: every backend's `down()`
    deletes it and `forget()` removes the folder, so a SIGKILLed run leaves it only until `harness down`.
    """
    return state_dir_of(stack_name) / MASTER_KEY_FILE


def target_key_file(stack_name: str) -> Path:
    """The 0600 file a target file printed by `harness status --format target` names for the master key (in the
    stack's own state folder; every backend's `down()` deletes it)."""
    return state_dir_of(stack_name) / TARGET_KEY_FILE


def target_pg_password_file(stack_name: str) -> Path:
    """Likewise for a Postgres password the stack's DSN carries (never printed in the target file)."""
    return state_dir_of(stack_name) / TARGET_PG_PASSWORD_FILE


def remove_target_secrets(stack_name: str) -> None:
    """Delete the secret files `harness status --format target` wrote (every backend's `down()` calls it)."""
    target_key_file(stack_name).unlink(missing_ok=True)
    target_pg_password_file(stack_name).unlink(missing_ok=True)


def write_master_key_file(stack_name: str, key: str) -> Path:
    """Write `key` to master_key_file(stack_name) (mode 0600 from the first byte); returns the path."""
    path = master_key_file(stack_name)
    write_secret(path, key)
    return path


# the Anthropic model a deployment with upstream_api anthropic names when the scenario names no cost-map model
ANTHROPIC_UPSTREAM_MODEL = "claude-sonnet-4-5"


@dataclass
class StackSpec:
    """What to bring up. Built from a scenario (`StackSpec.from_scenario`) or from `harness up` options."""

    version: str
    replicas: int = 2
    default_budget: float | None = 50.0
    base_port: int | None = None
    model: str = "mock-gpt"
    upstream_model: str = "gpt-4o-mini"   # what the deployment calls the model at the mock (upstream_api openai)
    upstream_api: str = "openai"          # openai | anthropic: the API the deployment speaks to the mock
    input_cost_per_token: float = 0.000001
    output_cost_per_token: float = 0.00001
    max_output_tokens: int | None = None
    cost_map_model: str | None = None     # a real model of LiteLLM's cost map: the proxy prices it itself
    # general_settings / litellm_settings knobs: disable_budget_reservation, use_redis_transaction_buffer,
    # namespace, proxy_batch_write_at, extra
    litellm_settings: dict[str, Any] = field(default_factory=dict)
    mock_config: dict[str, Any] = field(default_factory=dict)
    seed: int = 42
    # where logs, the mock's ledger and data dirs go (a run folder); None = the stack's state folder
    run_dir: Path | None = None
    # the LiteLLM build when it is a candidate (a local wheel / source tree: harness/litellm/candidate.py) or a
    # parsed release; None = the release `version`. `version` is always the (declared) version.
    candidate: Candidate | None = None
    # the address the proxies listen on (local backend): loopback, or a test host's own address so that Locust on
    # other (network-namespace) hosts can reach them — Redis, Postgres and the mock stay on loopback
    proxy_host: str = "127.0.0.1"
    # where LiteLLM keeps its spend counters: "redis" (the proxy config has a Redis cache) or "memory" (no cache:
    # each proxy process counts in its own memory; scenario `counters`). Redis still runs (harmless, unused).
    counters: str = "redis"

    @classmethod
    def from_scenario(cls, scenario: Any, run_dir: Path | None = None) -> StackSpec:
        s = scenario
        mock = {"stream": {"chunks": s.mock.chunks, "chunk_delay_s": s.mock.chunk_delay_s,
                           "first_token_delay_s": s.mock.first_token_delay_s,
                           "completion_tokens": s.mock.default_completion_tokens},
                "faults": dict(s.mock.faults),
                "models": [s.model, "gpt-4o-mini", *([s.pricing.cost_map_model] if s.pricing.cost_map_model else []),
                           *([ANTHROPIC_UPSTREAM_MODEL] if s.upstream_api == "anthropic"
                             and not s.pricing.cost_map_model else [])]}
        return cls(
            version=s.litellm, replicas=s.replicas, default_budget=s.budget.default_max_budget,
            model=s.model, input_cost_per_token=s.pricing.input_cost_per_token,
            output_cost_per_token=s.pricing.output_cost_per_token, max_output_tokens=s.pricing.max_output_tokens,
            cost_map_model=s.pricing.cost_map_model, upstream_api=s.upstream_api,
            litellm_settings=s.litellm_settings.model_dump(), mock_config=mock, seed=s.seed, run_dir=run_dir,
            counters=s.counters)


@dataclass
class Endpoints:
    """Where the running stack answers. `master_key` is a secret: never print or write it to results."""

    proxy_urls: list[str]
    redis_url: str                 # what the proxies use (through the fault relay when there is one)
    redis_direct_url: str          # Redis itself, for the sampler and for flushes
    postgres_dsn: str
    mock_url: str
    master_key: str = field(repr=False)
    version: str = ""
    backend: str = "local"
    redis_fault_url: str | None = None   # control endpoint of the Redis fault relay / Toxiproxy
    budget_id: str | None = None         # the default end-user budget's id
    redis_namespace: str | None = None   # cache_params.namespace: counters are "<namespace>:spend:end_user:<id>"
    build: str = ""                      # the LiteLLM environment's name: the release, or a candidate's label
    # the external backend: a deployment the harness did not start. Redis and Postgres are read, never written
    # (no flush, no SQL insert: end users are created through the proxy's API), and the run's end users carry
    # the run's own id prefix so a run never touches anyone else's.
    read_only: bool = False
    # secrets for Redis / Postgres clients (a password, a TLS CA): keyword arguments, never in a URL or DSN
    redis_options: dict[str, Any] = field(default_factory=dict, repr=False)
    postgres_options: dict[str, Any] = field(default_factory=dict, repr=False)
    # where the proxies keep their spend counters: "redis", or "memory" (their config has no cache: Redis runs but
    # holds no counter; StackSpec.counters)
    counters: str = "redis"

    def public(self) -> dict[str, Any]:
        """Everything but the secrets (for meta.json and the console)."""
        data = asdict(self)
        for secret in ("master_key", "redis_options", "postgres_options"):
            data.pop(secret)
        return data

    def describe(self) -> str:
        lines = [f"LiteLLM {self.build or self.version} ({self.backend}), {len(self.proxy_urls)} replica(s):"]
        lines += [f"  proxy[{i}]  {url}" for i, url in enumerate(self.proxy_urls)]
        lines += [f"  redis     {self.redis_url}" + (f"  (direct: {self.redis_direct_url})"
                                                     if self.redis_direct_url != self.redis_url else "")
                  + ("  (not used by the proxies: counters in process memory)" if self.counters == "memory" else ""),
                  f"  postgres  {self.postgres_dsn}",
                  f"  mock llm  {self.mock_url}",
                  "  master key: kept in the stack's state folder (0600), not printed"]
        return "\n".join(lines)


@dataclass
class StackFacts:
    """What a running stack knows about itself, for meta.json and the report (never secrets)."""

    redis_version: str | None = None
    postgres_version: str | None = None
    images: str | None = None     # which images ran (container backends): kind, reason, tag (id) of each
    timings: dict[str, float] = field(default_factory=dict)      # seconds per start-up step
    processes: list[dict[str, Any]] = field(default_factory=list)  # name, pid/container, port, rss_mb, alive


@runtime_checkable
class Stack(Protocol):
    """The core every backend implements: one named stack, started, described, stopped.

    Optional capabilities are separate protocols (ReplicaControl, RedisControl, RedisFaults, LogSource,
    LoadRunner); callers check them with isinstance() before the load starts, never by probing attributes.
    """

    name: str
    backend: str

    def preflight(self, spec: StackSpec) -> None:
        """Raise HarnessError when this backend cannot bring `spec` up on this machine (a missing binary, no
        engine): called before the run folder exists. Starts nothing, writes nothing."""
        ...

    def up(self, spec: StackSpec, console: Console | None = None) -> Endpoints:
        """Start everything; raises HarnessError/StackError (after stopping what it started) when it cannot."""
        ...

    def down(self) -> int:
        """Stop everything this stack recorded (processes/containers, extra tracked ones) and wait until it is
        gone; delete its secrets (master_key_file too). Returns how many were stopped; 0 when not running."""
        ...

    def is_running(self) -> bool: ...

    def endpoints(self) -> Endpoints | None:
        """Where the running stack answers (None when it is not up)."""
        ...

    def facts(self) -> StackFacts: ...

    def track(self, name: str, pid: int) -> None:
        """Record a process the run started next to the stack (Locust), so `down` stops it too."""
        ...

    def forget(self) -> None:
        """Remove the stack's state (after down), so listings no longer show it."""
        ...

    def status(self) -> str:
        """A human-readable table of what runs, for `harness status`."""
        ...


@runtime_checkable
class ReplicaControl(Protocol):
    def kill_replica(self, index: int) -> None:
        """SIGKILL replica `index` (in-flight requests die)."""
        ...

    def restart_replica(self, index: int) -> float:
        """Start replica `index` again; returns seconds until healthy."""
        ...


@runtime_checkable
class RedisControl(Protocol):
    def restart_redis(self, flush: bool = False) -> float:
        """Stop and start Redis (from its snapshot, or empty with flush=True); returns seconds down."""
        ...

    def flush_redis(self) -> None: ...

    def snapshot_redis(self) -> None:
        """SAVE now: a later restart_redis(flush=False) comes back to this data set."""
        ...


@runtime_checkable
class RedisFaults(Protocol):
    """Faults between the proxies and Redis (the local relay, Toxiproxy on Compose)."""

    def redis_fault(self, kind: str, **params: Any) -> None:
        """Replace the active Redis fault; kinds and params: harness/nemesis (the registry); "none" clears."""
        ...


@runtime_checkable
class PostgresControl(Protocol):
    """The harness may put pressure on the stack's own Postgres (lock tables, take connections): the
    `postgres_pressure` fault kind. A deployment the harness did not start never has it."""

    def postgres_admin_dsn(self) -> str:
        """A DSN with the rights to LOCK the LiteLLM tables and see/terminate sessions (the stack's own
        database; secrets, if any, travel in `Endpoints.postgres_options`)."""
        ...


@runtime_checkable
class LogSource(Protocol):
    def logs(self) -> dict[str, Path]:
        """Log file of each process, by name (proxy-0, redis, postgres, mock, ...)."""
        ...


class LoadHandle(Protocol):
    """A running load (Locust), as the run's load stage sees it: harness.load.launch.LocustHandle (host) or a
    backend's own (harness.stack.compose.load.ComposeLocust)."""

    name: str

    @property
    def pid(self) -> int | None:
        """The host process (group) to `track` so `harness down` stops it; None when the stack owns the load
        (its containers are part of the stack, and its `down()` removes them)."""
        ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None:
        """None while the load runs (a master or any worker still there), else the master's exit code."""
        ...

    def wait(self, timeout: float | None = None) -> int: ...

    def stop(self, timeout: float | None = None) -> int | None:
        """Stop early and gracefully (SIGINT to the master: in-flight requests finish within --stop-timeout,
        the CSVs and the HTML report are written), kill what is left after `timeout`, clean up; also after a
        normal end. Returns the master's exit code."""
        ...


@runtime_checkable
class LoadRunner(Protocol):
    """The stack runs the load itself, next to the proxies (Compose: Locust master + workers as services).

    `harness run` uses it when the scenario's `load.where` (or $HARNESS_LOAD_IN) resolves to "stack"; without
    this capability the load runs on the host (harness.load.launch.run_locust)."""

    def start_load(self, config: LoadConfig, run_dir: Path, workers: int) -> LoadHandle:
        """Start Locust for `config` (the stack adapts the proxy URLs and where the master key comes from; the
        config it used goes to <run_dir>/load-config.json) with `workers` worker processes; return at once.
        The run folder contract is the host's: requests.csv (every worker's rows), locust_* CSVs, locust.html,
        locust*.log."""
        ...


@runtime_checkable
class LoadHosts(Protocol):
    """The load comes from Locust on other hosts (Locust's distributed mode: a master and workers started through
    command prefixes, harness/load/distributed.py): the external backend when its target file has `load:`."""

    def load_hosts(self) -> Load:
        """Where the master binds and how each worker host is reached (harness.stack.external.target.Load)."""
        ...

    def load_key_source(self) -> tuple[str | None, str | None]:
        """(master_key_file, master_key_env): where Locust on every host reads the master key from — the same
        file path or variable name the target file names (the key itself never goes on a command line)."""
        ...
