"""deploy/k8s, checked without a cluster: the kustomization renders (kubectl kustomize) and every object validates
against the Kubernetes schemas (kubernetes-validate, strict); the Helm values set only keys LiteLLM's chart has
(tests/deploy/data/litellm-helm-values-keys.txt) and carry the proxy config the harness itself renders; the target
file validates and names exactly the Services, pods and ports of the manifests; the kill_replica command deletes
the pod it should (against a stand-in kubectl); and every path, name and flag the README's commands use exists.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from harness.litellm.proxy_config import DEFAULT_BUDGET_ID, proxy_cache_is_redis, render_proxy_config
from harness.paths import REPO_ROOT
from harness.scenario.model import Scenario, load_scenario
from harness.stack.base import StackSpec
from harness.stack.compose.render import litellm_image
from harness.stack.external.target import KILL_INDEX, Target, parse_target

K8S = REPO_ROOT / "deploy" / "k8s"
VALUES = K8S / "helm" / "litellm-values.yaml"
TARGET = K8S / "target.yaml"
README = K8S / "README.md"
STANDIN = K8S / "components" / "toxiproxy-standin"
CHART_KEYS = Path(__file__).resolve().parent / "data" / "litellm-helm-values-keys.txt"
SCENARIO = REPO_ROOT / "scenarios" / "phantom-budget.yaml"

K8S_SCHEMA_VERSION = "1.32.0"     # kubernetes-validate's bundled schemas (strict: unknown fields are errors)
NAMESPACE = "litellm-harness"
RELEASE = "litellm"               # the Helm release name the README installs (kill_replica selects by it)
HARNESS_IMAGE = "litellm-harness/harness:k8s"
MOCK_API_PATH = "/v1"

WORKLOADS = ("Deployment", "StatefulSet")


# -- helpers ------------------------------------------------------------------------------------------------------

def _kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH: scripts/setup-system.sh installs it (make setup)")
    proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120,  # noqa: S603
                          check=False)
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return _kustomize(K8S)


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    data = yaml.safe_load(VALUES.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def target() -> Target:
    return parse_target(yaml.safe_load(TARGET.read_text()), TARGET)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(SCENARIO)


def _objects(rendered: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendered if o["kind"] == kind}


def _one(rendered: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = _objects(rendered, kind)
    assert name in found, f"no {kind} {name} in the rendered manifests (have: {sorted(found)})"
    return found[name]


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def _service_ports(rendered: list[dict[str, Any]], values: dict[str, Any]) -> dict[str, set[int]]:
    """{service name: its ports}, the chart's proxy Service included (its name and port come from the values)."""
    ports = {name: {p["port"] for p in svc["spec"].get("ports", [])}
             for name, svc in _objects(rendered, "Service").items()}
    ports[values["fullnameOverride"]] = {values["service"]["port"]}
    return ports


def _host_port(url: str) -> tuple[str, int]:
    match = re.match(r"^[a-z]+://(?:[^@/]+@)?([^:/]+):(\d+)", url)
    assert match, f"{url}: expected scheme://host:port"
    return match.group(1), int(match.group(2))


def _selected_pods(rendered: list[dict[str, Any]], selector: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for kind in WORKLOADS:
        for obj in _objects(rendered, kind).values():
            labels = obj["spec"]["template"]["metadata"].get("labels", {})
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                out.append(obj)
    return out


def _secret_refs(rendered: list[dict[str, Any]], values: dict[str, Any]) -> set[tuple[str, str]]:
    """(secret, key) of every secretKeyRef in the manifests and of every Secret the chart values name."""
    refs: set[tuple[str, str]] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict):
                refs.add((ref["name"], ref["key"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(rendered)
    refs.add((values["masterkeySecretName"], values["masterkeySecretKey"]))
    secret = values["db"]["secret"]
    refs.update({(secret["name"], secret["usernameKey"]), (secret["name"], secret["passwordKey"])})
    return refs


def _env(container: dict[str, Any], name: str) -> dict[str, Any]:
    for entry in container.get("env", []):
        if entry["name"] == name:
            return dict(entry)
    raise AssertionError(f"container {container['name']} has no env {name}")


# -- (a) the kustomization renders ------------------------------------------------------------------------------

def test_kustomize_renders_the_rig(rendered: list[dict[str, Any]]) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    expected = {("Namespace", NAMESPACE),
                ("Deployment", "redis"), ("Service", "redis"),
                ("Deployment", "postgres"), ("Service", "postgres"),
                ("Deployment", "toxiproxy"), ("Service", "toxiproxy"),
                ("Deployment", "mock"), ("Service", "mock"),
                ("StatefulSet", "locust-worker"), ("Service", "locust-worker"),
                ("StatefulSet", "harness-runner"), ("Service", "locust-master"), ("ServiceAccount", "harness-runner"),
                ("Role", "harness-runner"), ("RoleBinding", "harness-runner")}
    assert expected <= kinds, f"missing: {sorted(expected - kinds)}"
    for obj in rendered:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]
    # no Secret is rendered: secret values are never committed, only referenced
    assert not _objects(rendered, "Secret")
    config_maps = {name.rsplit("-", 1)[0] for name in _objects(rendered, "ConfigMap")}
    assert config_maps == {"toxiproxy-config", "mock-config", "harness-target"}


def test_the_toxiproxy_standin_component_renders(tmp_path: Path) -> None:
    # kustomize takes relative paths only
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S, tmp_path)], "components": [os.path.relpath(STANDIN, tmp_path)]}))
    docs = _kustomize(tmp_path)
    toxiproxy = _one(docs, "Deployment", "toxiproxy")
    container = toxiproxy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == HARNESS_IMAGE
    assert container["command"] == ["python", "-m", "harness.stack.toxiproxy_standin"]
    # the stand-in takes toxiproxy-server's flags: the args stay as they are
    assert container["args"] == _one(_kustomize(K8S), "Deployment", "toxiproxy")["spec"]["template"]["spec"][
        "containers"][0]["args"]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_SCHEMA_VERSION, strict=True)


# -- (b) every object validates against the Kubernetes schemas -------------------------------------------------

def test_every_rendered_object_validates(rendered: list[dict[str, Any]]) -> None:
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, K8S_SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")


def test_the_validator_rejects_a_broken_object(rendered: list[dict[str, Any]]) -> None:
    """The check above can fail: a wrong type and an unknown field are both caught."""
    mock = json.loads(json.dumps(_one(rendered, "Deployment", "mock")))
    mock["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(mock, K8S_SCHEMA_VERSION, strict=True)
    mock = json.loads(json.dumps(_one(rendered, "Deployment", "mock")))
    mock["spec"]["template"]["spec"]["containers"][0]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(mock, K8S_SCHEMA_VERSION, strict=True)


def test_every_container_has_requests_and_limits(rendered: list[dict[str, Any]]) -> None:
    for kind in WORKLOADS:
        for name, obj in _objects(rendered, kind).items():
            for container in _containers(obj):
                resources = container.get("resources", {})
                for part in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{kind} {name}/{container['name']}"


def test_every_service_reaches_a_named_container_port(rendered: list[dict[str, Any]]) -> None:
    for name, svc in _objects(rendered, "Service").items():
        pods = _selected_pods(rendered, svc["spec"].get("selector", {}))
        assert len(pods) == 1, f"Service {name} selects {len(pods)} workloads"
        port_names = {p["name"] for c in _containers(pods[0]) for p in c.get("ports", [])}
        for port in svc["spec"].get("ports", []):
            assert port["targetPort"] in port_names, f"Service {name}: targetPort {port['targetPort']}"


def test_servers_bind_every_interface(rendered: list[dict[str, Any]]) -> None:
    """What other pods connect to listens on 0.0.0.0, not on the pod's loopback."""
    redis = _one(rendered, "Deployment", "redis")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert redis[redis.index("--bind") + 1] == "0.0.0.0"
    mock = _one(rendered, "Deployment", "mock")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert mock[mock.index("--host") + 1] == "0.0.0.0"
    toxiproxy = _one(rendered, "Deployment", "toxiproxy")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "-host=0.0.0.0" in toxiproxy
    proxies = json.loads(next(iter(_config_map(rendered, "toxiproxy-config").values())))
    assert all(p["listen"].startswith("0.0.0.0:") for p in proxies)


def _config_map(rendered: list[dict[str, Any]], prefix: str) -> dict[str, str]:
    found = [cm for name, cm in _objects(rendered, "ConfigMap").items() if name.rsplit("-", 1)[0] == prefix]
    assert len(found) == 1, f"ConfigMap {prefix}-<hash>"
    return dict(found[0]["data"])


def test_the_harness_image_is_the_one_the_readme_builds(rendered: list[dict[str, Any]]) -> None:
    images = {c["image"] for kind in WORKLOADS for obj in _objects(rendered, kind).values()
              for c in _containers(obj)}
    assert images == {HARNESS_IMAGE, "redis:7.4.1-alpine", "postgres:16.4-alpine",
                      "ghcr.io/shopify/toxiproxy:2.12.0"}
    dockerfile = (K8S / "images" / "Dockerfile").read_text()
    assert f"-t {HARNESS_IMAGE} ." in dockerfile
    assert "COPY scenarios ./scenarios" in dockerfile and "COPY deploy/k8s/target.yaml" in dockerfile


# -- (c) the values set only keys the chart has ------------------------------------------------------------------

def _chart_keys() -> tuple[set[str], set[str], str]:
    """(keys, free-form keys, chart commit) from the fixture."""
    text = CHART_KEYS.read_text()
    commit = re.search(r"commit ([0-9a-f]{40})", text)
    assert commit, "the fixture names the chart commit it was read from"
    assert "deploy/charts/litellm-helm/values.yaml" in text
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    free = {ln[:-2] for ln in lines if ln.endswith(".*")}
    keys = {ln for ln in lines if not ln.endswith(".*")}
    assert free <= keys
    for key in keys:   # a nested key's parents are keys too
        parts = key.split(".")
        assert all(".".join(parts[:i]) in keys for i in range(1, len(parts))), key
    return keys, free, commit.group(1)


def _value_paths(node: dict[str, Any], free: set[str], prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict) and path not in free:
            yield from _value_paths(value, free, path + ".")


def test_every_value_key_exists_in_the_chart(values: dict[str, Any]) -> None:
    keys, free, _ = _chart_keys()
    unknown = [path for path in _value_paths(values, free) if path not in keys]
    assert not unknown, f"not keys of the chart's values.yaml: {unknown}"


def test_the_key_check_can_fail() -> None:
    keys, free, _ = _chart_keys()
    bogus = {"replicaCount": 4, "db": {"useExisting": True, "host": "postgres"}, "redis": {"auth": {"enabled": False}}}
    assert [p for p in _value_paths(bogus, free) if p not in keys] == ["db.host", "redis.auth", "redis.auth.enabled"]


def test_values_match_the_scenario(values: dict[str, Any], scenario: Scenario,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_LITELLM_IMAGE", raising=False)
    assert values["replicaCount"] == scenario.replicas == 4
    # the tag rule of the Compose backend: the plain version from 1.84.0 on, main-v<v>-stable before
    assert f"{values['image']['repository']}:{values['image']['tag']}" == litellm_image(scenario.litellm)
    assert values["image"]["tag"] == "1.84.0"
    # nothing the chart would deploy itself: Redis and Postgres are the manifests'
    assert values["redis"]["enabled"] is False
    assert values["db"]["useExisting"] is True and values["db"]["deployStandalone"] is False
    # the migrations run once, before any replica, and the replicas never touch the schema
    assert values["migrationJob"]["enabled"] is True and values["migrationJob"]["hooks"]["helm"]["enabled"] is True
    assert values["envVars"]["DISABLE_SCHEMA_UPDATE"] == "true"
    assert values["envVars"]["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert "masterkey" not in values, "the master key is a Secret reference, never a value"


# -- (d) the proxy config is what the harness renders ------------------------------------------------------------

def test_proxy_config_is_what_the_harness_renders(values: dict[str, Any], scenario: Scenario,
                                                  rendered: list[dict[str, Any]]) -> None:
    config = values["proxy_config"]
    cache = config["litellm_settings"]["cache_params"]
    api_base = config["model_list"][0]["litellm_params"]["api_base"]
    expected = render_proxy_config(StackSpec.from_scenario(scenario), mock_api_base=api_base,
                                   redis_host=cache["host"], redis_port=cache["port"])
    expected["general_settings"]["master_key"] = "os.environ/PROXY_MASTER_KEY"   # the chart's variable
    assert config == expected

    # what the analyzer depends on, spelled out
    assert proxy_cache_is_redis(config) and cache["mode"] == "default_off"
    assert config["litellm_settings"]["max_end_user_budget_id"] == DEFAULT_BUDGET_ID
    model = config["model_list"][0]
    assert model["model_name"] == scenario.model == "mock-gpt"
    assert model["litellm_params"]["input_cost_per_token"] == scenario.pricing.input_cost_per_token
    assert model["litellm_params"]["output_cost_per_token"] == scenario.pricing.output_cost_per_token
    assert config["general_settings"]["forward_client_headers_to_llm_api"] is True
    assert config["general_settings"]["proxy_batch_write_at"] == scenario.litellm_settings.proxy_batch_write_at

    # the upstream is the mock Service; Redis is Toxiproxy's proxy, which forwards to the redis Service
    services = _service_ports(rendered, values)
    host, port = _host_port(api_base)
    assert api_base.endswith(MOCK_API_PATH) and port in services[host] and host == "mock"
    assert cache["port"] in services[cache["host"]] and cache["host"] == "toxiproxy"
    proxies = json.loads(next(iter(_config_map(rendered, "toxiproxy-config").values())))
    (redis_proxy,) = [p for p in proxies if int(p["listen"].rsplit(":", 1)[1]) == cache["port"]]
    up_host, up_port = redis_proxy["upstream"].split(":")
    assert int(up_port) in services[up_host] and up_host == "redis"


def test_the_mock_starts_as_the_scenario_configures_it(rendered: list[dict[str, Any]], scenario: Scenario) -> None:
    mock_config = json.loads(next(iter(_config_map(rendered, "mock-config").values())))
    assert mock_config == StackSpec.from_scenario(scenario).mock_config
    args = _one(rendered, "Deployment", "mock")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert int(args[args.index("--seed") + 1]) == scenario.seed
    assert _one(rendered, "Deployment", "mock")["spec"]["replicas"] == 1, "one mock: one ledger"


# -- (e) the target file validates and names what the manifests have --------------------------------------------

def test_target_validates(target: Target) -> None:
    target.check_remote()
    assert target.allow_remote is True   # in-cluster names (README: why not port-forwards)
    assert target.capabilities.kill_replica and target.capabilities.toxiproxy_url
    assert target.load is not None


def test_target_urls_are_services(target: Target, rendered: list[dict[str, Any]], values: dict[str, Any]) -> None:
    services = _service_ports(rendered, values)
    assert target.capabilities.toxiproxy_url is not None
    for what, url in [("proxy.url", target.proxy.url), ("redis.url", target.redis.url),
                      ("postgres.dsn", target.postgres.dsn), ("mock.url", target.mock.url),
                      ("capabilities.toxiproxy_url", target.capabilities.toxiproxy_url)]:
        host, port = _host_port(url)
        assert host in services, f"{what}: no Service {host}"
        assert port in services[host], f"{what}: Service {host} has ports {services[host]}, not {port}"
    # the harness samples Redis itself, never through Toxiproxy
    assert _host_port(target.redis.url)[0] == "redis"
    assert _host_port(target.proxy.url) == (values["fullnameOverride"], values["service"]["port"])
    # Toxiproxy's proxy of that name exists and is what the proxies use
    proxies = json.loads(next(iter(_config_map(rendered, "toxiproxy-config").values())))
    assert target.capabilities.toxiproxy_proxy in {p["name"] for p in proxies}
    # Postgres: the database the chart uses, as the user the README creates
    dsn = re.match(r"^postgresql://([^@]+)@[^/]+/(\w+)$", target.postgres.dsn)
    assert dsn and dsn.group(2) == values["db"]["database"] and dsn.group(1) == "litellm"


def test_target_secrets_come_from_the_pods_env(target: Target, rendered: list[dict[str, Any]],
                                              values: dict[str, Any]) -> None:
    runner = _one(rendered, "StatefulSet", "harness-runner")["spec"]["template"]["spec"]["containers"][0]
    assert target.proxy.master_key_env and target.postgres.password_env
    key = _env(runner, target.proxy.master_key_env)["valueFrom"]["secretKeyRef"]
    assert (key["name"], key["key"]) == (values["masterkeySecretName"], values["masterkeySecretKey"])
    password = _env(runner, target.postgres.password_env)["valueFrom"]["secretKeyRef"]
    db_secret = values["db"]["secret"]
    assert (password["name"], password["key"]) == (db_secret["name"], db_secret["passwordKey"])
    # the Locust workers send the requests: they read the same key from the same variable (master_key_env)
    worker = _one(rendered, "StatefulSet", "locust-worker")["spec"]["template"]["spec"]["containers"][0]
    assert _env(worker, target.proxy.master_key_env)["valueFrom"]["secretKeyRef"] == key


def test_the_runner_mounts_this_target_file(rendered: list[dict[str, Any]]) -> None:
    spec = _one(rendered, "StatefulSet", "harness-runner")["spec"]["template"]["spec"]
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "target"]
    assert mount["mountPath"] == "/harness/" + str(TARGET.relative_to(REPO_ROOT))
    (volume,) = [v for v in spec["volumes"] if v["name"] == "target"]
    data = _config_map(rendered, "harness-target")
    assert volume["configMap"]["name"].rsplit("-", 1)[0] == "harness-target"
    assert data == {mount["subPath"]: TARGET.read_text()}
    assert spec["containers"][0]["workingDir"] == "/harness"
    # kill_replica and the Locust prefixes need these, in this namespace only
    role = _one(rendered, "Role", "harness-runner")
    granted = {(res, verb) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]}
    assert {("pods", "list"), ("pods", "delete"), ("pods/exec", "create")} <= granted
    assert spec["serviceAccountName"] == "harness-runner"


def _exec_pod(prefix: list[str]) -> tuple[str, str, str]:
    """(namespace, pod, container) of a `kubectl exec -n NS POD -c C --` prefix."""
    assert prefix[:2] == ["kubectl", "exec"] and prefix[-1] == "--", prefix
    args = prefix[2:-1]
    namespace = args[args.index("-n") + 1]
    container = args[args.index("-c") + 1]
    rest = [a for i, a in enumerate(args) if a not in ("-n", "-c") and (i == 0 or args[i - 1] not in ("-n", "-c"))]
    assert len(rest) == 1, prefix
    return namespace, rest[0], container


def test_target_load_hosts_are_the_locust_pods(target: Target, rendered: list[dict[str, Any]]) -> None:
    load = target.load
    assert load is not None
    # the master runs where the harness runs (it reads the load config, writes requests.csv): the runner pod,
    # whose own DNS name under the headless Service locust-master is the address it binds and workers dial
    assert load.master_command == []
    runner = _one(rendered, "StatefulSet", "harness-runner")
    service = _one(rendered, "Service", runner["spec"]["serviceName"])
    assert service["metadata"]["name"] == "locust-master"
    assert service["spec"]["clusterIP"] == "None", "headless: the pod's own DNS name"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert runner["spec"]["replicas"] == 1
    assert load.master_host == f"{runner['metadata']['name']}-0.{service['metadata']['name']}"
    assert load.master_port == 5557
    assert load.master_port in {p["port"] for p in service["spec"]["ports"]}
    assert load.master_port in {p["containerPort"] for c in _containers(runner) for p in c.get("ports", [])}

    workers = _one(rendered, "StatefulSet", "locust-worker")
    pods = [_exec_pod(w.command) for w in load.workers]
    assert {ns for ns, _, _ in pods} == {NAMESPACE}
    assert sorted(pod for _, pod, _ in pods) == [f"locust-worker-{i}" for i in range(workers["spec"]["replicas"])]
    assert {c for _, _, c in pods} <= {c["name"] for c in workers["spec"]["template"]["spec"]["containers"]}
    # the harness starts each worker with ITS interpreter path: the workers run the runner's image
    (worker,) = workers["spec"]["template"]["spec"]["containers"]
    assert worker["image"] == runner["spec"]["template"]["spec"]["containers"][0]["image"] == HARNESS_IMAGE


# -- kill_replica: the {index}-th running LiteLLM pod, against a stand-in kubectl -------------------------------

FAKE_KUBECTL = """#!/bin/sh
printf '%s\\n' "$*" >> "{log}"
case "$*" in
  *" get pods "*) printf '%s\\n' pod/litellm-7c9f-zz2 pod/litellm-7c9f-aa1 pod/litellm-7c9f-mm3 pod/litellm-7c9f-bb4 ;;
esac
"""


def _kill(target: Target, index: int, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    assert target.capabilities.kill_replica
    command = [part.replace(KILL_INDEX, str(index)) for part in target.capabilities.kill_replica]
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=30, check=False)  # noqa: S603


def test_kill_replica_deletes_the_index_th_running_pod(target: Target, tmp_path: Path,
                                                      values: dict[str, Any]) -> None:
    log = tmp_path / "kubectl.log"
    fake = tmp_path / "kubectl"
    fake.write_text(FAKE_KUBECTL.replace("{log}", str(log)))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)

    for index, pod in [(0, "pod/litellm-7c9f-aa1"), (1, "pod/litellm-7c9f-bb4"), (3, "pod/litellm-7c9f-zz2")]:
        log.write_text("")
        proc = _kill(target, index, tmp_path)
        assert proc.returncode == 0, proc.stderr
        get, delete = log.read_text().splitlines()
        assert f"-n {NAMESPACE} get pods" in get
        selector = get.split(" -l ", 1)[1].split(" ", 1)[0]
        assert set(selector.split(",")) == {f"app.kubernetes.io/name={values['nameOverride']}",
                                            f"app.kubernetes.io/instance={RELEASE}", "!job-name"}
        assert "--field-selector=status.phase=Running" in get
        assert delete == f"-n {NAMESPACE} delete {pod} --grace-period=0 --force --wait=false"

    log.write_text("")
    proc = _kill(target, 4, tmp_path)
    assert proc.returncode == 1 and "no running LiteLLM pod with index 4" in proc.stderr
    assert "delete" not in log.read_text()


def test_the_chart_pods_carry_the_labels_kill_replica_selects(values: dict[str, Any]) -> None:
    """The chart's selector labels (templates/_helpers.tpl): name = nameOverride, instance = the release."""
    assert values["nameOverride"] == "litellm" and values["fullnameOverride"] == "litellm"


# -- (f) the README's commands use what exists -------------------------------------------------------------------

def _readme_commands() -> list[list[str]]:
    text = README.read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has sh code blocks"
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(shlex.split(line))
    return commands


def _flag_values(commands: list[list[str]], flag: str) -> list[str]:
    return [cmd[i + 1] for cmd in commands for i, word in enumerate(cmd[:-1]) if word == flag]


def test_readme_paths_exist_and_target_files_validate(scenario: Scenario) -> None:
    commands = _readme_commands()
    targets = _flag_values(commands, "--target")
    targets += [cmd[i + 2] for cmd in commands for i in range(len(cmd) - 2) if cmd[i:i + 2] == ["target", "check"]]
    assert targets, "the README names the target file"
    for path in targets:
        file = REPO_ROOT / path
        assert file.is_file(), f"README names {path}, which does not exist"
        parse_target(yaml.safe_load(file.read_text()), file).check_remote()
    runs = [cmd[i + 2] for cmd in commands for i in range(len(cmd) - 2) if cmd[i:i + 2] == ["harness", "run"]]
    assert runs and all((REPO_ROOT / path).is_file() for path in runs)
    assert all(load_scenario(REPO_ROOT / path).name == scenario.name for path in runs)
    files = [p for p in _flag_values(commands, "-f") if p.startswith("deploy/")]
    assert {"deploy/k8s/helm/litellm-values.yaml", "deploy/k8s/images/Dockerfile",
            "deploy/k8s/manifests/namespace.yaml"} <= set(files)
    for path in files:
        assert (REPO_ROOT / path).is_file(), path
    kustomizations = _flag_values(commands, "-k")
    assert kustomizations and all((REPO_ROOT / p / "kustomization.yaml").is_file() for p in kustomizations)


def test_readme_names_what_the_manifests_and_values_have(rendered: list[dict[str, Any]],
                                                          values: dict[str, Any]) -> None:
    commands = _readme_commands()
    assert set(_flag_values(commands, "-n")) == {NAMESPACE}
    # kubectl exec deploy/<name>: a Deployment of the manifests
    # kubectl exec <pod> / kubectl cp <pod>:<path>: pods of the StatefulSets
    pods = {f"{name}-{i}" for name, sts in _objects(rendered, "StatefulSet").items()
            for i in range(sts["spec"]["replicas"])}
    execs = [next(w for w in cmd[cmd.index("exec") + 1:] if not w.startswith("-")) for cmd in commands
             if cmd[:1] == ["kubectl"] and "exec" in cmd]
    assert execs and set(execs) == {"harness-runner-0"} <= pods, execs
    copies = [cmd[cmd.index("cp") + 1] for cmd in commands if cmd[:1] == ["kubectl"] and "cp" in cmd]
    assert copies == ["harness-runner-0:/harness/results"]
    runner = _one(rendered, "StatefulSet", "harness-runner")["spec"]["template"]["spec"]["containers"][0]
    assert "/harness/results" in {m["mountPath"] for m in runner["volumeMounts"]}
    # helm install <release> … -f <values>
    installs = [cmd for cmd in commands if cmd[:2] == ["helm", "install"]]
    assert installs and all(cmd[2] == RELEASE and "--wait" in cmd for cmd in installs)
    # the image the README builds is the one the manifests run
    builds = [cmd for cmd in commands if cmd[:2] == ["docker", "build"]]
    assert builds and all(cmd[cmd.index("-t") + 1] == HARNESS_IMAGE for cmd in builds)
    # the chart commit the README checks out is the one the key list was read from
    checkouts = [cmd[-1] for cmd in commands if "checkout" in cmd]
    assert checkouts == [_chart_keys()[2]]


def test_readme_creates_exactly_the_secrets_that_are_referenced(rendered: list[dict[str, Any]],
                                                                  values: dict[str, Any]) -> None:
    created: set[tuple[str, str]] = set()
    for cmd in _readme_commands():
        if cmd[:1] == ["kubectl"] and "create" in cmd and "generic" in cmd:
            name = cmd[cmd.index("generic") + 1]
            created.update((name, w.split("=", 2)[1]) for w in cmd if w.startswith("--from-literal="))
    assert created == _secret_refs(rendered, values)
    usernames = [w.split("=", 2)[2] for cmd in _readme_commands() for w in cmd
                 if w.startswith(f"--from-literal={values['db']['secret']['usernameKey']}=")]
    assert usernames == ["litellm"]


def test_readme_budget_is_the_configured_one(values: dict[str, Any], scenario: Scenario) -> None:
    budget_calls = [w for cmd in _readme_commands() for w in cmd if "/budget/new" in w]
    assert len(budget_calls) == 1
    body = re.search(r'-d "(\{.*\})"', budget_calls[0])
    assert body, budget_calls[0]
    data = json.loads(body.group(1).replace('\\"', '"'))
    assert data == {"budget_id": values["proxy_config"]["litellm_settings"]["max_end_user_budget_id"],
                    "max_budget": scenario.budget.default_max_budget}
    assert "http://litellm:4000/budget/new" in budget_calls[0]
