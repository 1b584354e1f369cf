"""The load config "the Locust way": the locustfile's --harness-config option (JSON or a path; $HARNESS_LOAD_CONFIG
as its fallback), read lazily, forwarded by a master to its workers; the master key from the environment.

Locust itself only runs in subprocesses here (importing it gevent-patches the interpreter): a probe
(tests/load/locust_probe.py) and one real master + worker pair whose worker has no config of its own.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from harness.load.config import CONFIG_FILE, CONFIG_OPTION, ENV_VAR, LoadConfig, config_from_option, load_from_env
from harness.load.launch import locust_command
from harness.load.locust_main import LOCUSTFILE, argv
from harness.run.runfolder import REQUESTS_COLUMNS, REQUESTS_FILE
from harness.util.ports import free_port

REPO = Path(__file__).resolve().parents[2]


def _config(run_dir: Path, **kw: object) -> LoadConfig:
    base = LoadConfig(run_dir=str(run_dir), proxy_urls=["http://proxy-0:4000", "http://proxy-1:4000"],
                      master_key_file=None, master_key_env="HARNESS_TEST_KEY", end_users=["eu-1", "eu-2"],
                      disconnect_after_chunks=(1, 3), prompt_chars=(10, 20), wait_s=(0.0, 0.1), seed=11,
                      users=3, spawn_rate=3, duration_s=4.2)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_option_value_is_json_or_a_path_and_round_trips(tmp_path: Path) -> None:
    cfg = _config(tmp_path, stages=[{"duration_s": 1.0, "users": 2, "spawn_rate": 5.0}])
    compact = cfg.to_json(indent=None)
    assert "\n" not in compact and " " not in compact.replace("Budget", "")
    assert config_from_option(compact) == cfg
    assert config_from_option(f"  {cfg.to_json()}\n") == cfg
    path = cfg.write(tmp_path / CONFIG_FILE)
    assert config_from_option(str(path)) == cfg
    assert isinstance(config_from_option(str(path)).disconnect_after_chunks, tuple)
    for empty in ("", "   ", None):
        with pytest.raises(RuntimeError, match="--harness-config"):
            config_from_option(empty)


def test_env_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(cfg.write(tmp_path / CONFIG_FILE)))
    assert load_from_env() == cfg
    monkeypatch.setenv(ENV_VAR, cfg.to_json(indent=None))
    assert load_from_env() == cfg
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(RuntimeError, match=ENV_VAR):
        load_from_env()


def test_master_key_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    assert _config(tmp_path, master_key_file=str(key_file)).master_key() == "sk-from-file"
    cfg = _config(tmp_path)
    monkeypatch.setenv("HARNESS_TEST_KEY", "sk-from-env")
    assert cfg.master_key() == "sk-from-env"
    assert "sk-from-env" not in cfg.to_json()                 # the config names the variable, never the key
    monkeypatch.delenv("HARNESS_TEST_KEY")
    with pytest.raises(RuntimeError, match=r"\$HARNESS_TEST_KEY"):
        cfg.master_key()
    assert _config(tmp_path, master_key_env=None).master_key() == ""


def test_an_older_config_without_master_key_env_still_loads(tmp_path: Path) -> None:
    data = asdict(_config(tmp_path))
    data.pop("master_key_env")
    assert LoadConfig.from_json(json.dumps(data)).master_key_env is None


def test_stage_at_walks_the_stages_then_ends(tmp_path: Path) -> None:
    cfg = _config(tmp_path, stages=[{"duration_s": 2, "users": 4, "spawn_rate": 2},
                                    {"duration_s": 3, "users": 0}])
    assert [cfg.stage_at(t) for t in (0, 1.99, 2, 4.99, 5, 60)] == [(4, 2.0), (4, 2.0), (0, 50.0), (0, 50.0),
                                                                    None, None]
    assert cfg.planned_duration_s == 5


def test_host_command_names_the_config_file_on_the_command_line(tmp_path: Path) -> None:
    cmd = locust_command(_config(tmp_path), tmp_path, processes=2)
    assert cmd[cmd.index(CONFIG_OPTION) + 1] == str(tmp_path / CONFIG_FILE)
    assert cmd[cmd.index("-f") + 1] == str(LOCUSTFILE)
    assert cmd[cmd.index("--processes") + 1] == "2"
    assert cmd[cmd.index("-t") + 1] == "5s"
    staged = locust_command(_config(tmp_path, stages=[{"duration_s": 1, "users": 1}]), tmp_path)
    assert "-u" not in staged and "-t" not in staged and CONFIG_OPTION in staged


def test_locust_main_puts_the_packaged_locustfile_first() -> None:
    assert argv(["--worker", "--master-host", "m"]) == ["locust", "-f", str(LOCUSTFILE), "--worker",
                                                        "--master-host", "m"]
    assert LOCUSTFILE.is_file() and LOCUSTFILE.parent.name == "load"


def _env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


def test_probe_locusts_parser_init_and_the_spawn_message(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    staged = _config(tmp_path, stages=[{"duration_s": 2, "users": 5, "spawn_rate": 5.0}])
    path, stages_path = cfg.write(tmp_path / "a.json"), staged.write(tmp_path / "b.json")
    res = subprocess.run([sys.executable, "-m", "tests.load.locust_probe", str(path), str(stages_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env=_env_without(ENV_VAR), check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["imported_without_config"] is True                 # importing the locustfile reads nothing
    assert (out["from_option"], out["from_env"], out["default"]) == (str(path), str(stages_path), "")
    assert out["custom_option"] is True                           # so a worker takes the master's value
    assert out["forwarded"] == cfg.to_json(indent=None)           # the master forwards the JSON, not the path
    assert out["shape_without_stages"] is False
    assert out["worker_own"] == ""                                # a worker with nothing of its own …
    assert LoadConfig.from_json(json.dumps(out["worker_config"])) == cfg   # … ends with the master's config
    assert (out["shape"], out["shape_runner"]) == ("StagesShape", True)
    assert out["shape_ticks"] == [[5, 5.0], None, None]
    assert out["no_config_error"] is not None and CONFIG_OPTION in out["no_config_error"]


def test_a_worker_without_any_config_runs_the_masters(tmp_path: Path) -> None:
    """A real master + worker (harness.load.locust_main): the worker has neither the option nor the variable,
    and the master has no key. The proxies are a closed port: every row is a connection error, which is enough
    to show the worker got the config (its run folder, its users) and the key from its own environment. The
    config's stages end the run after 2 s although -t says 60 s: the master installed the LoadTestShape."""
    run = tmp_path / "run"
    run.mkdir()
    closed = f"http://127.0.0.1:{free_port()}"
    cfg = _config(run, proxy_urls=[closed], wait_s=(0.05, 0.05), client_timeout_s=2, retries_max=0,
                  stages=[{"duration_s": 2, "users": 2, "spawn_rate": 10}])
    cfg.write(run / CONFIG_FILE)
    port = free_port()
    module = [sys.executable, "-m", "harness.load.locust_main"]
    base_env = _env_without(ENV_VAR, "HARNESS_TEST_KEY")
    master = subprocess.Popen(  # noqa: S603
        [*module, "--master", "--headless", "--expect-workers", "1", "--expect-workers-max-wait", "30",
         "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), CONFIG_OPTION, str(run / CONFIG_FILE),
         "-u", "7", "-r", "7", "-t", "60s", "--stop-timeout", "3", "--csv", str(run / "locust"), "--only-summary",
         "--exit-code-on-error", "0"], cwd=tmp_path, env=base_env, stdout=open(run / "master.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT)
    worker = subprocess.Popen(  # noqa: S603
        [*module, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port), "--exit-code-on-error", "0"],
        cwd=tmp_path,
        env={**base_env, "HARNESS_TEST_KEY": "sk-worker-only"}, stdout=open(run / "worker.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT)
    try:
        assert master.wait(timeout=45) == 0, (run / "master.log").read_text()[-3000:]
        assert worker.wait(timeout=30) == 0, (run / "worker.log").read_text()[-3000:]
    finally:
        for proc in (master, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    with open(run / REQUESTS_FILE, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == REQUESTS_COLUMNS
        rows = list(reader)
    assert rows and {r["error_type"] for r in rows} == {"connection"}
    assert {r["end_user"] for r in rows} <= {"eu-1", "eu-2"}
    master_log = (run / "master.log").read_text()
    assert "Shape test starting" in master_log and "Shape test updating to 2 users" in master_log
    assert (run / "locust_stats.csv").exists()
    assert "sk-worker-only" not in master_log + (run / "worker.log").read_text() + (run / REQUESTS_FILE).read_text()
