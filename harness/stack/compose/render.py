"""The files the Compose backend renders, and what `docker compose up` would make of them (no engine needed).

compose.env (0600: the master key, image, ports and paths every `${VAR}` of compose/docker-compose.yml needs),
compose.replicas.yml (proxy-1 … proxy-(N-1), copies of proxy-0), the proxy config; Compose's
interpolation and profiles, reimplemented for checks (`effective_model`).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

from harness.errors import HarnessError
from harness.litellm.proxy_config import render_proxy_config
from harness.paths import REPO_ROOT
from harness.stack.base import StackSpec, replica_name
from harness.util import ports
from harness.util.fsutil import write_secret

COMPOSE_DIR = REPO_ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"

# Where LiteLLM publishes its proxy image, and the tag of a PyPI release (see compose/README.md for the
# sources). HARNESS_LITELLM_IMAGE overrides it; "{version}" in it is replaced by the version.
LITELLM_IMAGE_TEMPLATE = "ghcr.io/berriai/litellm:{version}"
# Before 1.84.0 the plain version is not a tag; releases were published as main-v<version>-stable (e.g.
# main-v1.83.10-stable, pinned by downstream projects in April 2026; see compose/README.md).
LITELLM_IMAGE_TEMPLATE_BEFORE_1_84 = "ghcr.io/berriai/litellm:main-v{version}-stable"

# In-network names and ports (the compose file's services)
MOCK_SERVICE, MOCK_INNER_PORT = "mock", 8000
TOXIPROXY_SERVICE, TOXIPROXY_REDIS_INNER_PORT = "toxiproxy", 6379
PROXY_INNER_PORT = 4000
POSTGRES_USER = POSTGRES_PASSWORD = POSTGRES_DB = "litellm"   # loopback-only, not a secret


def litellm_image(version: str) -> str:
    """The proxy image of a LiteLLM release (HARNESS_LITELLM_IMAGE overrides; may contain {version})."""
    template = os.environ.get("HARNESS_LITELLM_IMAGE")
    if not template:
        try:
            older = Version(version) < Version("1.84.0")
        except InvalidVersion:
            older = False
        template = LITELLM_IMAGE_TEMPLATE_BEFORE_1_84 if older else LITELLM_IMAGE_TEMPLATE
    return template.replace("{version}", version)


def project_name(stack_name: str) -> str:
    """A Compose project name (lowercase letters, digits, '-', '_'; starts with a letter or digit)."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", stack_name.lower()).strip("-_") or "default"
    return f"harness-{cleaned}"


@dataclass
class ComposePorts:
    """Host ports (all on 127.0.0.1)."""

    postgres: int
    redis: int
    toxiproxy_api: int
    toxiproxy_redis: int
    mock: int
    proxies: list[int]

    @classmethod
    def allocate(cls, replicas: int, base_port: int | None = None) -> ComposePorts:
        got = ports.allocate_ports(5 + replicas, base_port)
        return cls(postgres=got[0], redis=got[1], toxiproxy_api=got[2], toxiproxy_redis=got[3], mock=got[4],
                   proxies=got[5:])


def render_proxy(spec: StackSpec) -> dict[str, Any]:
    """The replicas' config, from THE template: Redis = toxiproxy, upstream = the mock (migrations are the
    `migrate` service's job: the replicas never touch the schema)."""
    return render_proxy_config(spec, mock_api_base=f"http://{MOCK_SERVICE}:{MOCK_INNER_PORT}/v1",
                               redis_host=TOXIPROXY_SERVICE, redis_port=TOXIPROXY_REDIS_INNER_PORT)


def compose_env(spec: StackSpec, *, master_key: str, run_dir: Path, stack_ports: ComposePorts,
                proxy_config: Path, mock_config: Path, images: Mapping[str, str]) -> dict[str, str]:
    """Every variable the compose file interpolates (the content of compose.env); `images`: the image
    variables of the chosen images (harness.stack.compose.images)."""
    env = {
        **images,
        "LITELLM_MASTER_KEY": master_key,
        "HARNESS_PROXY_CONFIG": str(proxy_config),
        "HARNESS_MOCK_CONFIG": str(mock_config),
        "HARNESS_RUN_DIR": str(run_dir),
        "HARNESS_SEED": str(spec.seed),
        "HARNESS_UID": str(os.getuid()),
        "HARNESS_GID": str(os.getgid()),
        "POSTGRES_PORT": str(stack_ports.postgres),
        "REDIS_PORT": str(stack_ports.redis),
        "TOXIPROXY_API_PORT": str(stack_ports.toxiproxy_api),
        "TOXIPROXY_REDIS_PORT": str(stack_ports.toxiproxy_redis),
        "MOCK_PORT": str(stack_ports.mock),
    }
    for i, port in enumerate(stack_ports.proxies):
        env[f"PROXY_{i}_PORT"] = str(port)
    return env


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """KEY=value lines, created 0600 (it holds the master key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for key, value in env.items():
        if "\n" in value or "'" in value:
            raise HarnessError(f"{key}: value not representable in an env file", "use a path without quotes")
    text = "".join(f"{key}='{value}'\n" for key, value in env.items())
    write_secret(path, text)


def load_compose_file(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "services" not in data:
        raise HarnessError(f"{path}: not a Compose file (no services)", "restore compose/docker-compose.yml")
    return data


def replicas_override(replicas: int, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The override file adding proxy-1 … proxy-(N-1): copies of proxy-0, each with its own host port."""
    base = base if base is not None else load_compose_file()
    template = base["services"][replica_name(0)]
    services: dict[str, Any] = {}
    for i in range(1, replicas):
        service = copy.deepcopy(template)
        service["ports"] = [f"127.0.0.1:${{PROXY_{i}_PORT:?set by the harness}}:{PROXY_INNER_PORT}"]
        services[replica_name(i)] = service
    return {"services": services}


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$\$")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `$$` — for checks only."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        current = env.get(name)
        if op in (":-", "-"):
            empty = current is None or (op == ":-" and current == "")
            return arg if empty else str(current)
        if op in (":?", "?"):
            if current is None or (op == ":?" and current == ""):
                raise HarnessError(f"compose variable {name} is not set: {arg}", "set it in the env file")
            return str(current)
        return "" if current is None else str(current)

    return _VAR.sub(sub, value)


def effective_model(env: Mapping[str, str], replicas: int, *, profiles: Sequence[str] = ()) -> dict[str, Any]:
    """The services `docker compose up` would start (base + replicas override, interpolated, profiles applied)."""
    base = load_compose_file()
    merged = copy.deepcopy(base)
    merged["services"].update(replicas_override(replicas, base)["services"])
    model = interpolate({k: v for k, v in merged.items() if not k.startswith("x-")}, env)
    model["services"] = {name: svc for name, svc in model["services"].items()
                         if not svc.get("profiles") or set(svc["profiles"]) & set(profiles)}
    return model
