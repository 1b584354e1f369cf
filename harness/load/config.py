"""`LoadConfig`: everything a Locust process needs, as JSON.

Locust gets it through the locustfile's own command-line option `--harness-config` (CONFIG_OPTION): the JSON
itself, or the path of a JSON file; $HARNESS_LOAD_CONFIG is that option's environment fallback (Locust's
configargparse `env_var`). A Locust master forwards the option's value to its workers in every spawn message
(`parsed_options`), so workers need no file of their own (harness/load/locustfile.py). With `rows_via_master`
they need no run folder either: their rows travel to the master as Locust messages.

No secret is in it. The master key is read from `master_key_file`, a 0600 file outside the run folder (host
Locust, `harness run`: harness.stack.base.master_key_file, in the stack's own state folder, which the run
removes when the load ends and every backend's `down()` deletes), or from the environment variable named by
`master_key_env` (Locust in containers: the Compose env gives the workers LITELLM_MASTER_KEY, as it gives the
proxies).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.scenario.model import Scenario
    from harness.stack.base import Endpoints

ENV_VAR = "HARNESS_LOAD_CONFIG"
CONFIG_OPTION = "--harness-config"      # the locustfile's Locust option (dest: harness_config)
CONFIG_DEST = "harness_config"
CONFIG_FILE = "load-config.json"
# the proxy path of each API (`endpoint`): OpenAI chat completions, Anthropic Messages
PATHS = {"chat": "/chat/completions", "messages": "/v1/messages"}
# rows_via_master: how long, beyond --stop-timeout, a master waits at the end for its workers' last rows
DRAIN_MARGIN_S = 30.0


@dataclass
class LoadConfig:
    run_dir: str
    proxy_urls: list[str]
    master_key_file: str | None
    master_key_env: str | None = None      # else: the name of the environment variable holding the key
    model: str = "mock-gpt"
    end_users: list[str] = field(default_factory=lambda: ["eu-0000"])
    pick: str = "uniform"                   # uniform | hot_set
    hot_fraction: float = 0.05
    hot_share: float = 0.8
    replica_pick: str = "round_robin"       # round_robin | random (per request, like a load balancer)
    endpoint: str = "chat"                  # chat (OpenAI chat completions) | messages (Anthropic Messages)
    path: str = PATHS["chat"]               # the proxy path requests go to: PATHS[endpoint]
    stream_share: float = 0.8
    disconnect_share: float = 0.2           # of streaming requests
    disconnect_after_chunks: tuple[int, int] = (1, 1)
    disconnect_before_first_chunk_s: float | None = None
    client_timeout_s: float = 30.0
    max_tokens_choices: list[int | None] = field(default_factory=lambda: [256])
    max_tokens_weights: list[float] | None = None
    prompt_chars: tuple[int, int] = (40, 400)
    retries_max: int = 0
    retry_on_status: list[int] = field(default_factory=lambda: [429, 500, 502, 503])
    retry_backoff_s: float = 0.5
    # the first N requests of every Locust user, planned apart from the mix (scenario mix.first_requests)
    first_requests: int = 0
    first_stream: bool = True
    first_max_tokens: int | None = None
    first_disconnect_after: int | None = 1
    wait_s: tuple[float, float] = (0.0, 0.2)
    seed: int = 42
    # the shape (used by the runner for the Locust command line / the LoadTestShape)
    users: int = 50
    spawn_rate: float = 50.0
    duration_s: float = 60.0
    stages: list[dict[str, float]] = field(default_factory=list)   # [{duration_s, users, spawn_rate}]
    stop_timeout_s: float | None = None     # let in-flight requests finish at the end; None: client timeout
    # virtual keys (harness/load/keys.py): each end user's requests use key key_index_for(end user, seed, keys),
    # whose value every process derives from the master key and `key_salt` (the run id); 0: the master key
    keys: int = 0
    key_salt: str = ""
    # workers send their requests.csv rows to the Locust master (which appends them) instead of opening the
    # file themselves: for workers on other machines (harness.load.distributed)
    rows_via_master: bool = False

    @classmethod
    def from_scenario(cls, scenario: Scenario, endpoints: Endpoints, run_dir: Path,
                      master_key_file: Path | None = None, key_salt: str = "") -> LoadConfig:
        """Built from a Scenario and the stack's Endpoints; `master_key_file` names the file holding the key;
        `key_salt`: the run id its virtual keys were derived with (harness.run.budgets.run_entities)."""
        s, mix = scenario, scenario.mix
        return cls(
            run_dir=str(run_dir), proxy_urls=list(endpoints.proxy_urls),
            master_key_file=str(master_key_file) if master_key_file else None, model=s.model,
            endpoint=mix.endpoint, path=PATHS[mix.endpoint],
            end_users=s.end_users.ids(), pick=s.end_users.pick, hot_fraction=s.end_users.hot_fraction,
            hot_share=s.end_users.hot_share, stream_share=mix.stream_share, disconnect_share=mix.disconnect_share,
            disconnect_after_chunks=mix.disconnect_after_chunks,
            disconnect_before_first_chunk_s=mix.disconnect_before_first_chunk_s,
            client_timeout_s=mix.client_timeout_s, max_tokens_choices=list(mix.max_tokens.choices),
            max_tokens_weights=None if mix.max_tokens.weights is None else list(mix.max_tokens.weights),
            prompt_chars=mix.prompt_chars, retries_max=mix.retries.max,
            retry_on_status=list(mix.retries.on_status), retry_backoff_s=mix.retries.backoff_s,
            first_requests=mix.first_requests.count, first_stream=mix.first_requests.stream,
            first_max_tokens=mix.first_requests.max_tokens,
            first_disconnect_after=mix.first_requests.disconnect_after_chunks,
            wait_s=s.load.wait_s, seed=s.seed, users=s.load.users, spawn_rate=s.load.spawn_rate,
            duration_s=s.load.duration_s, stages=[st.model_dump() for st in s.load.stages],
            keys=s.budget.keys.count, key_salt=key_salt)

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON text (indent=None: compact, what a master forwards to its workers)."""
        return json.dumps(asdict(self), indent=indent, separators=None if indent else (",", ":"))

    @classmethod
    def from_json(cls, text: str) -> LoadConfig:
        data = json.loads(text)
        for key in ("disconnect_after_chunks", "prompt_chars", "wait_s"):
            data[key] = tuple(data[key])
        return cls(**data)

    def write(self, path: Path) -> Path:
        path.write_text(self.to_json())
        return path

    def master_key(self) -> str:
        """The key from `master_key_file`, else from $`master_key_env` (which must then be set), else ""."""
        if self.master_key_file:
            return Path(self.master_key_file).read_text().strip()
        if self.master_key_env:
            key = os.environ.get(self.master_key_env, "").strip()
            if not key:
                raise RuntimeError(f"the load config reads the master key from ${self.master_key_env}, which is "
                                   "not set in this process")
            return key
        return ""

    @property
    def planned_duration_s(self) -> float:
        return sum(float(st["duration_s"]) for st in self.stages) if self.stages else self.duration_s

    def stage_at(self, t: float) -> tuple[int, float] | None:
        """(users, spawn_rate) of the stage running `t` seconds into the load; None once every stage is over."""
        end = 0.0
        for stage in self.stages:
            end += float(stage["duration_s"])
            if t < end:
                return int(stage["users"]), float(stage.get("spawn_rate", 50.0))
        return None


def config_from_option(value: str | None) -> LoadConfig:
    """The config an option value names: JSON text (starts with `{`) or the path of a JSON file."""
    text = (value or "").strip()
    if not text:
        raise RuntimeError(f"no load config: pass {CONFIG_OPTION} (JSON or a file) or set ${ENV_VAR} "
                           "(harness.load.config.LoadConfig)")
    if text.startswith("{"):
        return LoadConfig.from_json(text)
    return LoadConfig.from_json(Path(text).read_text())


def load_from_env() -> LoadConfig:
    """The config $HARNESS_LOAD_CONFIG names (JSON or a file)."""
    return config_from_option(os.environ.get(ENV_VAR))
