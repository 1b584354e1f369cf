"""The Compose backend, without a Docker engine.

Static: compose/docker-compose.yml (+ the replicas override the harness generates) against the pinned
Compose Specification schema, and the effective model the harness would start. Dynamic: ComposeStack's
code paths against a fake Docker SDK client, a fake `docker compose` runner and a fake HTTP transport.
When a Compose v2 binary is on PATH (or HARNESS_DOCKER_COMPOSE names one) the real `config` command checks
the same files too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest
import yaml

from harness.errors import HarnessError, StackError
from harness.litellm.proxy_config import DEFAULT_BUDGET_ID
from harness.stack import compose as C
from harness.stack.base import StackSpec
from harness.stack.toxiproxy import TOXIPROXY_REDIS_PROXY
from tests.conftest import FakeDocker, compose_rig

SCHEMA = json.loads((C.COMPOSE_DIR / "schema" / "compose-spec.json").read_text())
MASTER_KEY = "sk-harness-TESTKEY-not-real"


def _env(replicas: int, tmp_path: Path) -> dict[str, str]:
    env = {"LITELLM_IMAGE": "ghcr.io/berriai/litellm:1.84.0", "LITELLM_MASTER_KEY": MASTER_KEY,
           "HARNESS_PROXY_CONFIG": str(tmp_path / "proxy-config.yaml"),
           "HARNESS_MIGRATE_CONFIG": str(tmp_path / "proxy-config.migrate.yaml"),
           "HARNESS_MOCK_CONFIG": str(tmp_path / "mock-config.json"), "HARNESS_RUN_DIR": str(tmp_path),
           "POSTGRES_PORT": "25432", "REDIS_PORT": "26379", "TOXIPROXY_API_PORT": "28474",
           "TOXIPROXY_REDIS_PORT": "26380", "MOCK_PORT": "28000"}
    env.update({f"PROXY_{i}_PORT": str(24000 + i) for i in range(replicas)})
    return env


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


@pytest.mark.parametrize("replicas", [1, 3])
def test_replicas_override_is_valid_and_merged_model_too(replicas: int, tmp_path: Path) -> None:
    override = C.replicas_override(replicas)
    assert list(override["services"]) == [f"proxy-{i}" for i in range(1, replicas)]
    assert list(jsonschema.Draft7Validator(SCHEMA).iter_errors(override)) == []
    model = C.effective_model(_env(replicas, tmp_path), replicas)
    assert list(jsonschema.Draft7Validator(SCHEMA).iter_errors(model)) == []


def test_effective_model_services_ports_and_environment(tmp_path: Path) -> None:
    env = _env(3, tmp_path)
    model = C.effective_model(env, 3)
    services = model["services"]
    assert set(services) == {"postgres", "redis", "toxiproxy", "mock", "migrate", "proxy-0", "proxy-1", "proxy-2"}
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
        assert svc["volumes"] == [f"{tmp_path / 'proxy-config.yaml'}:/app/config.yaml:ro"]
        assert svc["restart"] == "no"
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert svc["depends_on"]["toxiproxy"]["condition"] == "service_healthy"
        assert svc["depends_on"]["mock"]["condition"] == "service_healthy"
    assert services["migrate"]["image"] == services["proxy-0"]["image"]
    assert "--skip_server_startup" in services["migrate"]["command"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["toxiproxy"]["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in ("postgres", "redis", "toxiproxy", "mock"):
        assert "healthcheck" in services[name], name
    assert services["toxiproxy"]["image"].startswith("ghcr.io/shopify/toxiproxy:")
    assert services["mock"]["build"]["dockerfile"] == "compose/Dockerfile.mock"
    assert services["mock"]["command"][:3] == ["python", "-m", "harness.mockllm"]
    # the Locust services only under the "load" profile
    assert "locust-master" not in services
    loaded = C.effective_model(env, 3, profiles=["load"])["services"]
    assert loaded["locust-master"]["image"].startswith("locustio/locust:")
    assert all(p.startswith("127.0.0.1:") for p in loaded["locust-master"]["ports"])


def test_a_missing_required_variable_is_an_error(tmp_path: Path) -> None:
    env = _env(2, tmp_path)
    del env["LITELLM_MASTER_KEY"]
    with pytest.raises(HarnessError, match="LITELLM_MASTER_KEY"):
        C.effective_model(env, 2)


def test_toxiproxy_sits_in_front_of_redis() -> None:
    proxies = json.loads((C.COMPOSE_DIR / "toxiproxy.json").read_text())
    assert proxies == [{"name": TOXIPROXY_REDIS_PROXY, "listen": f"0.0.0.0:{C.TOXIPROXY_REDIS_INNER_PORT}",
                        "upstream": "redis:6379", "enabled": True}]


def test_rendered_proxy_config_points_at_toxiproxy_and_the_mock_and_holds_no_key() -> None:
    spec = StackSpec(version="1.84.0", replicas=2, litellm_settings={"namespace": "h1"})
    proxy, migrate = C.render_configs(spec)
    cache = proxy["litellm_settings"]["cache_params"]
    assert (cache["host"], cache["port"]) == ("toxiproxy", 6379)
    assert cache["namespace"] == "h1"
    assert proxy["model_list"][0]["litellm_params"]["api_base"] == "http://mock:8000/v1"
    assert proxy["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert proxy["general_settings"]["disable_prisma_schema_update"] is True
    assert proxy["litellm_settings"]["max_end_user_budget_id"] == DEFAULT_BUDGET_ID
    # the migrate config is the same template with schema updates allowed, nothing else
    assert migrate["general_settings"].pop("disable_prisma_schema_update") is False
    proxy["general_settings"].pop("disable_prisma_schema_update")
    assert migrate == proxy
    assert "sk-" not in yaml.safe_dump(proxy) + yaml.safe_dump(migrate)


def test_image_tag_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_LITELLM_IMAGE", raising=False)
    assert C.litellm_image("1.84.0") == "ghcr.io/berriai/litellm:1.84.0"
    monkeypatch.setenv("HARNESS_LITELLM_IMAGE", "ghcr.io/berriai/litellm:main-v{version}-stable")
    assert C.litellm_image("1.89.1") == "ghcr.io/berriai/litellm:main-v1.89.1-stable"


def test_interpolation_rules() -> None:
    env = {"A": "1", "E": ""}
    assert C.interpolate("${A}/${B:-x}/${E:-d}/${E-d}/$${A}", env) == "1/x/d//${A}"
    with pytest.raises(HarnessError):
        C.interpolate("${E:?needed}", env)


def _compose_binary() -> list[str] | None:
    explicit = os.environ.get("HARNESS_DOCKER_COMPOSE")
    candidates = [[explicit]] if explicit else [["docker", "compose"], ["docker-compose"]]
    for cmd in candidates:
        if shutil.which(cmd[0]) is None:
            continue
        res = subprocess.run([*cmd, "version", "--short"], capture_output=True, text=True, check=False)
        if res.returncode == 0 and res.stdout.strip().lstrip("v")[:1] >= "2":
            return cmd
    return None


def test_real_compose_config_accepts_the_files(tmp_path: Path) -> None:
    cmd = _compose_binary()
    if cmd is None:
        pytest.skip("no Compose v2 binary (docker compose / docker-compose / HARNESS_DOCKER_COMPOSE)")
    env_file = tmp_path / "compose.env"
    C.write_env_file(env_file, _env(3, tmp_path))
    override = tmp_path / "compose.replicas.yml"
    override.write_text(yaml.safe_dump(C.replicas_override(3)))
    res = subprocess.run([*cmd, "-p", "harness-t", "-f", str(C.COMPOSE_FILE), "-f", str(override), "--env-file",
                          str(env_file), "config", "--format", "json"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    model = json.loads(res.stdout)
    assert {f"proxy-{i}" for i in range(3)} <= set(model["services"])
    published = [(p["host_ip"], p["published"]) for i in range(3) for p in model["services"][f"proxy-{i}"]["ports"]]
    assert published == [("127.0.0.1", "24000"), ("127.0.0.1", "24001"), ("127.0.0.1", "24002")]


# -- ComposeStack against fakes -------------------------------------------------------------------------
@pytest.fixture
def rig(tmp_path: Path) -> SimpleNamespace:
    return compose_rig(tmp_path)


def test_up_renders_env_and_override_runs_compose_and_creates_the_budget(rig: SimpleNamespace) -> None:
    endpoints = rig.stack.up(rig.spec)
    up = next(c for c in rig.runner.calls if "up" in c)
    assert up[:2] == ["docker", "compose"]
    assert up[up.index("-p") + 1] == "harness-t1"
    assert up[up.index("-f") + 1] == str(C.COMPOSE_FILE)
    assert up[-4:] == ["up", "-d", "--build", "--remove-orphans"]
    assert MASTER_KEY not in " ".join(up) and endpoints.master_key not in " ".join(up)   # secret not in argv
    assert rig.runner.env_mode_at_up == 0o600
    env = rig.stack._read_env()
    assert env["LITELLM_IMAGE"] == C.litellm_image("1.84.0")
    assert env["LITELLM_MASTER_KEY"] == endpoints.master_key and endpoints.master_key.startswith("sk-harness-")
    assert yaml.safe_load(rig.stack.replicas_path.read_text())["services"].keys() == {"proxy-1", "proxy-2"}
    # endpoints: three replicas on distinct loopback ports; Redis through toxiproxy and direct
    assert len(endpoints.proxy_urls) == len(set(endpoints.proxy_urls)) == 3
    assert all(u.startswith("http://127.0.0.1:") for u in endpoints.proxy_urls)
    assert endpoints.redis_url != endpoints.redis_direct_url
    assert endpoints.backend == "compose" and endpoints.budget_id == DEFAULT_BUDGET_ID
    budget = [r for r in rig.http.requests if r.url.path == "/budget/new"]
    assert len(budget) == 1
    assert json.loads(budget[0].content) == {"budget_id": DEFAULT_BUDGET_ID, "max_budget": 2.0}
    assert budget[0].headers["authorization"] == f"Bearer {endpoints.master_key}"
    # the run folder gets the config (no key) and no secret anywhere
    config_text = (rig.tmp / "run" / "proxy-config.yaml").read_text()
    assert "toxiproxy" in config_text and "http://mock:8000/v1" in config_text
    for path in (rig.tmp / "run").rglob("*"):
        assert endpoints.master_key not in path.read_text(errors="replace"), path
    assert endpoints.master_key not in rig.stack.state_path.read_text()
    # a second handle on the same stack (--reuse) finds the endpoints and the key again
    again = C.ComposeStack("t1", state_dir=rig.tmp / "state", client_factory=lambda: rig.docker, runner=rig.runner,
                           http=rig.http.client())
    again_endpoints = again.endpoints()
    assert again_endpoints is not None and again_endpoints.master_key == endpoints.master_key
    assert again.is_running()
    facts = again.facts()
    assert (facts.redis_version, facts.postgres_version) == ("7.4.1", "17.2")
    assert facts.timings["total_s"] >= facts.timings["proxies_s"] >= 0


def test_down_removes_project_volumes_and_secrets(rig: SimpleNamespace) -> None:
    rig.stack.up(rig.spec)
    assert rig.stack.down() == 8
    down = rig.runner.calls[-1]
    assert down[-5:] == ["down", "-v", "--remove-orphans", "--timeout", "10"]
    assert not rig.stack.env_path.exists() and not rig.stack.state_path.exists()
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
    rig.http.healthy = False
    original = rig.runner.__call__

    def runner(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        result = original(cmd)
        if "up" in cmd:
            rig.docker.by_service["proxy-0"].status = "exited"
        return result

    rig.stack._runner = runner
    with pytest.raises(StackError, match=r"(?s)replica 0 .*exited.*log of harness-t1-proxy-0-1"):
        rig.stack.up(rig.spec)
    assert rig.docker.by_service == {}


def test_kill_and_restart_one_replica_through_the_sdk(rig: SimpleNamespace) -> None:
    rig.stack.up(rig.spec)
    rig.stack.kill_replica(1)
    target = rig.docker.by_service["proxy-1"]
    assert target.calls == [("kill", "SIGKILL")] and target.status == "exited"
    assert rig.docker.by_service["proxy-0"].calls == [] and rig.docker.by_service["proxy-2"].calls == []
    seconds = rig.stack.restart_replica(1)
    assert seconds >= 0 and target.calls[-1] == ("start",) and target.status == "running"


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
    assert all(str(r.url).startswith(endpoints.redis_fault_url) for r in toxi_calls)
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
    assert {p["name"] for p in rig.stack.facts().processes} == set(logs)
    status = rig.stack.status()
    assert status.startswith("stack 't1' (compose, project harness-t1):")
    assert "harness-t1-proxy-2-1" in status and rig.stack.endpoints().master_key not in status


# -- no engine ------------------------------------------------------------------------------------------
def test_no_engine_is_one_line_exit_2_and_nothing_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    runner_calls: list[Sequence[str]] = []
    stack = C.ComposeStack("t2", state_dir=tmp_path / "state", client_factory=lambda: FakeDocker(engine=False),
                           runner=lambda cmd: runner_calls.append(cmd) or subprocess.CompletedProcess(cmd, 0, "", ""))
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
    res = subprocess.run([str(Path(os.sys.executable)), "-c", code], capture_output=True, text=True, env=env,
                         check=False)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert "no Docker engine answers at" in res.stderr and "--backend local" in res.stderr
    assert not (tmp_path / "s").exists()


def test_make_stack_selects_by_name() -> None:
    from harness.stack.backends import make_stack

    assert type(make_stack("compose", "x")).__name__ == "ComposeStack"
    with pytest.raises(HarnessError, match="unknown backend"):
        make_stack("kubernetes", "x")
