"""harness.litellm.env (cached LiteLLM environments) and the engine stand-in's translation layer.

Fast: no package index, no database. The real builds and the real engine are covered by
tests/conformance (marker `conformance`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.litellm import env as litellm_env
from harness.paths import engine_dir
from tests.conftest import resolver_uv


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HARNESS_PRISMA_ENGINE", raising=False)
    return tmp_path / "cache"


def fake_ready(version: str, engine: str = "standin") -> litellm_env.LiteLLMEnv:
    env = litellm_env.LiteLLMEnv(version, litellm_env.envs_dir() / version)
    (env.venv / "bin").mkdir(parents=True)
    env.python.write_text("#!/bin/sh\n")
    env.site_packages.mkdir(parents=True)
    env.ready_path.write_text(json.dumps({"version": version, "build_seconds": 1.0, "engine": engine}))
    return env


def _failing_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A uv that fails and leaves a file behind: the returned path exists iff a build was attempted."""
    called = tmp_path / "uv-was-called"
    fake_uv = tmp_path / "uv"
    fake_uv.write_text(f"#!/bin/sh\ntouch {called}\nexit 1\n")
    fake_uv.chmod(0o755)
    monkeypatch.setattr(litellm_env._Builder, "_uv", lambda self: str(fake_uv))
    return called


@pytest.mark.parametrize("version,words", [("banana", ["not a LiteLLM version"]),
                                           ("1.84", ["not an exact LiteLLM release"]),
                                           ("1.50.0", ["1.50.0", "older than"])])
def test_malformed_versions_fail_in_one_line_before_any_build(cache: Path, tmp_path: Path, version: str,
                                                              words: list[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    called = _failing_uv(tmp_path, monkeypatch)
    with pytest.raises(HarnessError) as info:
        litellm_env.ensure(version)
    line = info.value.line()
    assert "\n" not in line
    for word in words:
        assert word in line
    assert info.value.exit_code == 2
    assert not called.exists(), "a malformed version reached uv"
    assert not (cache / "litellm" / version).exists()


@pytest.mark.parametrize("version,hint", [("9.9.9", None), ("1.110.0", None),
                                          ("1.104.9", "litellm-proxy-extras"), ("1.107.1", "pulled")])
def test_any_release_is_tried_and_a_failed_install_is_the_resolvers_sentence_plus_the_known_hint(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, hint: str | None) -> None:
    fake_uv = resolver_uv(
        tmp_path,
        "  × No solution found when resolving dependencies:",
        f"  ╰─▶ Because there is no version of litellm[proxy]=={version} and you require",
        f"      litellm[proxy]=={version}, we can conclude that your requirements are unsatisfiable.",
        "",
        "      hint: litellm[proxy] was requested with a pre-release marker")
    monkeypatch.setattr(litellm_env._Builder, "_uv", lambda self: str(fake_uv))
    with pytest.raises(HarnessError) as info:
        litellm_env.ensure(version)
    line = info.value.line()
    assert "\n" not in line
    assert info.value.exit_code == 2
    assert info.value.problem.startswith(
        f"LiteLLM {version} cannot be installed: uv found no solution: Because there is no version of "
        f"litellm[proxy]=={version} and you require litellm[proxy]=={version}, we can conclude that your "
        "requirements are unsatisfiable.")
    assert "pre-release" not in line          # uv's hint is not the reason
    if hint is None:
        assert "known:" not in line
    else:
        assert "(known: " in info.value.problem and hint in info.value.problem
    assert "newer than" not in line
    assert not (cache / "litellm" / version).exists()


def test_a_long_resolver_reason_is_trimmed_at_a_word(cache: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    words = " ".join(f"pkg{i}==1.0" for i in range(200))
    fake_uv = resolver_uv(tmp_path, "  × No solution found when resolving dependencies:",
                           f"  ╰─▶ Because {words} are unavailable, we can conclude that it fails.")
    monkeypatch.setattr(litellm_env._Builder, "_uv", lambda self: str(fake_uv))
    with pytest.raises(HarnessError) as info:
        litellm_env.ensure("1.84.0")
    reason = info.value.problem.split("uv found no solution: ", 1)[1]
    assert reason.endswith("…") and len(reason) <= 400
    assert reason[:-1].split()[-1].startswith("pkg") and reason[:-1].endswith("==1.0")


def test_failed_install_names_version_and_reason_and_leaves_no_env(cache: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fake_uv = resolver_uv(
        tmp_path, "  × No solution found when resolving dependencies:",
        "  ╰─▶ Because litellm[proxy]==1.84.0 depends on litellm-proxy-extras==0.9.9 and it is not available,",
        "      we can conclude that your requirements are unsatisfiable.")
    monkeypatch.setattr(litellm_env._Builder, "_uv", lambda self: str(fake_uv))
    with pytest.raises(HarnessError) as info:
        litellm_env.ensure("1.84.0")
    line = info.value.line()
    assert "\n" not in line
    assert "LiteLLM 1.84.0 cannot be installed" in line
    assert "litellm-proxy-extras==0.9.9" in line
    assert not (cache / "litellm" / "1.84.0").exists(), "a half-built environment was left behind"
    assert litellm_env.cached() == []
    assert (cache / "litellm" / "1.84.0.build.log").exists()


def test_the_build_creates_the_venv_from_the_litellm_python_not_the_harness_one(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_uv = tmp_path / "uv"
    fake_uv.write_text("#!/bin/bash\nexit 1\n")
    fake_uv.chmod(0o755)
    monkeypatch.setattr(litellm_env._Builder, "_uv", lambda self: str(fake_uv))
    monkeypatch.setenv(litellm_env.LITELLM_PYTHON_VAR, "/opt/py311/bin/python3.11")
    with pytest.raises(HarnessError):
        litellm_env.ensure("1.84.0")
    log = (cache / "litellm" / "1.84.0.build.log").read_text()
    assert "venv --quiet --python /opt/py311/bin/python3.11 " in log


def _fake_python(path: Path, version: str, rc: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho {version}; echo "$0"; exit {rc}\n')
    path.chmod(0o755)
    return path


def test_litellm_python_on_a_newer_harness_python_is_found_in_pyenv_past_a_broken_shim(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(litellm_env.LITELLM_PYTHON_VAR, raising=False)
    _fake_python(tmp_path / "shims" / "python3.11", "3.11", rc=127)     # pyenv: "command not found"
    monkeypatch.setenv("PATH", str(tmp_path / "shims"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    for release in ("3.11.2", "3.11.10", "3.11.7"):
        _fake_python(tmp_path / "pyenv" / "versions" / release / "bin" / "python3.11", "3.11")
    got = litellm_env.litellm_base_python(running=(3, 13))
    assert got == str(tmp_path / "pyenv" / "versions" / "3.11.10" / "bin" / "python3.11")
    # on 3.11 the harness's own interpreter is the one (what every environment here was built with)
    assert litellm_env.litellm_base_python(running=(3, 11)) == (getattr(sys, "_base_executable", None)
                                                                 or sys.executable)
    monkeypatch.setenv(litellm_env.LITELLM_PYTHON_VAR, "/custom/python")
    assert litellm_env.litellm_base_python(running=(3, 13)) == "/custom/python"


def test_no_litellm_python_is_one_line_naming_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(litellm_env.LITELLM_PYTHON_VAR, raising=False)
    _fake_python(tmp_path / "bin" / "python3.11", "3.13")       # answers, but is not 3.11
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    with pytest.raises(HarnessError) as info:
        litellm_env.litellm_base_python(running=(3, 12))
    line = info.value.line()
    assert "\n" not in line and "no Python 3.11" in line and "runs on 3.12" in line
    assert litellm_env.LITELLM_PYTHON_VAR in line and str(tmp_path / "bin" / "python3.11") in line


def test_ready_environment_is_reused_without_building(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = fake_ready("1.84.0")

    def boom(self: object) -> None:
        raise AssertionError("rebuilt a ready environment")

    monkeypatch.setattr(litellm_env._Builder, "build", boom)
    start = time.monotonic()
    got = litellm_env.ensure("1.84.0")
    assert got.root == env.root and time.monotonic() - start < 1.0
    assert [e.version for e in litellm_env.cached()] == ["1.84.0"]


def test_environment_without_marker_is_not_ready(cache: Path) -> None:
    env = fake_ready("1.89.1")
    env.ready_path.unlink()
    assert not env.is_ready()
    assert litellm_env.cached() == []


def test_cached_sorts_by_version(cache: Path) -> None:
    for v in ("1.108.7", "1.84.0", "1.9.0"):
        fake_ready(v)
    assert [e.version for e in litellm_env.cached()] == ["1.9.0", "1.84.0", "1.108.7"]


def test_migrations_in_name_order_with_spaces(cache: Path) -> None:
    env = fake_ready("1.84.0")
    base = env.site_packages / "litellm_proxy_extras" / "migrations"
    for name in ("20250326171002_add_daily", "20250326162113_baseline", "20250401 with spaces", "20250331_x"):
        (base / name).mkdir(parents=True)
        (base / name / "migration.sql").write_text("SELECT 1;")
    (base / "20250402_empty").mkdir()
    assert [p.parent.name for p in env.migrations()] == [
        "20250326162113_baseline", "20250326171002_add_daily", "20250331_x", "20250401 with spaces"]


def test_proxy_env_is_offline_and_uses_the_standin(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    env = fake_ready("1.84.0")
    pe = env.proxy_env("postgresql://u@127.0.0.1:5/db")
    assert pe["DATABASE_URL"] == "postgresql://u@127.0.0.1:5/db"
    assert pe["PRISMA_QUERY_ENGINE_BINARY"] == str(engine_dir() / "query-engine")
    assert pe["DISABLE_SCHEMA_UPDATE"] == "true"
    assert pe["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert pe["CHECKPOINT_DISABLE"] == "1"
    assert pe["PATH"].split(":")[0] == str(env.venv / "bin")
    assert "PYTHONPATH" not in pe
    assert "HOME" in pe  # based on os.environ


def test_proxy_env_native_engine(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISMA_QUERY_ENGINE_BINARY", "/leftover")
    env = fake_ready("1.84.0", engine="native")
    pe = env.proxy_env("postgresql://u@127.0.0.1:5/db")
    assert "PRISMA_QUERY_ENGINE_BINARY" not in pe


def test_bad_engine_mode(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_PRISMA_ENGINE", "rust")
    with pytest.raises(HarnessError, match="HARNESS_PRISMA_ENGINE"):
        litellm_env.engine_mode()


SCHEMA = """
generator client {
  provider = "prisma-client-py"
  binaryTargets = ["native"]
}
model A {
  id String @id
}
"""


def test_schema_gets_recursive_type_depth_once(cache: Path) -> None:
    env = fake_ready("1.84.0")
    src = env.site_packages / "litellm" / "proxy" / "schema.prisma"
    src.parent.mkdir(parents=True)
    builder = litellm_env._Builder(env, [], console=None)  # type: ignore[arg-type]
    src.write_text(SCHEMA)
    text = builder._schema().read_text()
    assert text.count("recursive_type_depth = -1") == 1
    assert text.index("recursive_type_depth") < text.index("model A")
    src.write_text(text)  # a schema that already has it (1.104.x) is left alone
    assert builder._schema().read_text().count("recursive_type_depth") == 1


def test_apply_migrations_failure_names_the_file(cache: Path) -> None:
    if shutil.which("psql") is None:
        pytest.skip("psql not installed")
    env = fake_ready("1.84.0")
    base = env.site_packages / "litellm_proxy_extras" / "migrations" / "20250101 first"
    base.mkdir(parents=True)
    (base / "migration.sql").write_text("SELECT 1;")
    with pytest.raises(HarnessError, match="20250101 first/migration.sql"):
        litellm_env.apply_migrations(env, "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2")


def test_build_of_a_real_environment_is_reused_fast() -> None:
    """With the real cache: a built 1.84.0 is reused in well under a second (`harness env build` twice)."""
    env = litellm_env.LiteLLMEnv("1.84.0", litellm_env.envs_dir() / "1.84.0")
    if not env.is_ready():
        pytest.skip("LiteLLM 1.84.0 environment not built (harness env build 1.84.0)")
    start = time.monotonic()
    assert litellm_env.ensure("1.84.0").root == env.root
    assert time.monotonic() - start < 1.0
    assert any(line.startswith("litellm==1.84.0") for line in env.info()["freeze"])
    assert len(env.migrations()) > 50


# -- the engine stand-in's translation layer (node, no database) --------------------------------
NODE_CHECK = r"""
import { parseSchema, Translator, rawRows, stringify, markFloat } from '%(server)s';
const schema = parseSchema(`
datasource client {
  provider = "postgresql"
  url      = env("DATABASE_URL")
}
model Budget {
  budget_id        String  @id
  max_budget       Float?
  model_max_budget Json?
  users            User[]
}
model User {
  user_id   String  @id
  spend     Float   @default(0)
  metadata  Json    @default("{}")
  budget_id String?
  budget    Budget? @relation(fields: [budget_id], references: [budget_id])
  model_spend Json  @default("{}")
}
`);
const t = new Translator(schema);
const out = {};
out.create = t.query(String.raw`mutation {
  result: createOneBudget
  (
    data: {
      budget_id: "b1"
      model_max_budget: "{\"gpt\": {\"max_budget\": 1.5}}"
      users: {
        create: [
          {
            user_id: "u1"
            metadata: "{\"a\": 1}"
          }
        ]
      }
    }
  )
  {
    budget_id
    users {
      user_id
    }
  }
}`).json;
out.upsert = t.query(String.raw`mutation { result: upsertOneUser(where: { user_id: "u1" }
  create: { user_id: "u1" spend: 1.5 } update: { spend: { increment: 1.5 } metadata: "{}" }) { user_id spend } }`).json;
out.raw = t.query('mutation { result: queryRaw(query: "SELECT 1 WHERE $1 = $2" parameters: "[1, \\"x\\"]") }').json;
out.find = t.query('query { result: findUniqueUserOrThrow(where: { user_id: "u1" }) '
  + '{ user_id budget(where: { max_budget: { gt: 1 } }) { budget_id } } }').json;
out.group = t.query('query { result: groupByUser(by: ["budget_id"]) '
  + '{ budget_id _sum { spend } _count { _all } } }').json;
out.rows = rawRows({ columns: ['a', 'n', 'arr', 'j', 'b'],
                     types: ['double', 'string', 'string-array', 'json', 'bigint'],
                     rows: [[3, null, ['x', null], '{"k": [1]}', '12']] });
out.floats = stringify({ a: markFloat(3), b: markFloat(2.5), s: 'plain' });
out.userFields = [...schema.models.get('User').keys()];
console.log(JSON.stringify(out));
"""


def test_engine_translates_graphql_to_json_protocol(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed")
    script = tmp_path / "check.mjs"
    script.write_text(NODE_CHECK % {"server": (engine_dir() / "server.mjs").as_uri()})
    proc = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    create = out["create"]
    assert create["modelName"] == "Budget" and create["action"] == "createOne"
    data = create["query"]["arguments"]["data"]
    assert data["model_max_budget"] == {"$type": "Json", "value": '{"gpt": {"max_budget": 1.5}}'}
    assert data["users"]["create"][0]["metadata"] == {"$type": "Json", "value": '{"a": 1}'}
    assert create["query"]["selection"]["users"]["selection"] == {"user_id": True}
    upsert = out["upsert"]
    assert upsert["action"] == "upsertOne"
    assert upsert["query"]["arguments"]["update"]["metadata"] == {"$type": "Json", "value": "{}"}
    assert upsert["query"]["arguments"]["update"]["spend"] == {"increment": 1.5}
    assert out["raw"] == {"action": "queryRaw", "query": {"arguments": {"query": "SELECT 1 WHERE $1 = $2",
                                                                        "parameters": '[1, "x"]'}, "selection": {}}}
    find = out["find"]
    assert find["action"] == "findUniqueOrThrow" and find["modelName"] == "User"
    assert find["query"]["selection"]["budget"]["arguments"] == {"where": {"max_budget": {"gt": 1}}}
    group = out["group"]
    assert group["action"] == "groupBy"
    assert group["query"]["selection"]["_sum"] == {"selection": {"spend": True}}
    assert group["query"]["selection"]["_count"] == {"selection": {"_all": True}}
    row = out["rows"][0]
    assert row["n"] == {"prisma__type": "null", "prisma__value": None}
    assert row["arr"]["prisma__type"] == "array"
    assert row["arr"]["prisma__value"][1] == {"prisma__type": "null", "prisma__value": None}
    assert row["j"] == {"prisma__type": "json", "prisma__value": {"k": [1]}}
    assert row["b"] == {"prisma__type": "bigint", "prisma__value": "12"}
    assert out["floats"] == '{"a":3.0,"b":2.5,"s":"plain"}'
    # a `}` inside a default value ends neither the model nor its field list (LiteLLM_TeamTable's
    # members_with_roles Json @default("{}") used to hide model_spend: 1.108.7 then got it back as JSON text)
    assert out["userFields"] == ["user_id", "spend", "metadata", "budget_id", "budget", "model_spend"]


def test_engine_launcher_answers_version_like_the_native_engine() -> None:
    proc = subprocess.run([str(engine_dir() / "query-engine"), "--version"], capture_output=True, text=True,
                          timeout=10)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"query-engine {litellm_env.PRISMA_ENGINE_VERSION}"


# -- the stand-in process's lifetime (node + wasm; no database needed to start) -------------------
def _standin_env(tmp_path: Path) -> dict[str, str]:
    import os

    schema = tmp_path / "schema.prisma"
    schema.write_text('datasource client {\n  provider = "postgresql"\n  url = env("DATABASE_URL")\n}\n'
                      "model A {\n  id String @id\n}\n")
    env = dict(os.environ)
    env.update(PRISMA_DML_PATH=str(schema), DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    return env


def _needs_engine() -> None:
    if shutil.which("node") is None or not (engine_dir() / "node_modules").is_dir():
        pytest.skip("engine stand-in not installed (make engine)")


def _wait_status(port: int, proc: subprocess.Popen[bytes]) -> None:
    from harness.util.procs import http_ok, wait_until

    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/status"), deadline_s=30, what="engine stand-in",
               still_alive=lambda: proc.poll() is None)


def _wait_gone(pid: int, seconds: float) -> bool:
    import psutil

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_standin_binds_loopback_and_exits_when_stdin_closes(tmp_path: Path) -> None:
    import psutil

    from harness.util.ports import free_port

    _needs_engine()
    port = free_port()
    proc = subprocess.Popen([str(engine_dir() / "query-engine"), "-p", str(port), "--enable-metrics",
                             "--enable-raw-queries"], stdin=subprocess.PIPE, env=_standin_env(tmp_path),
                            start_new_session=True)
    try:
        _wait_status(port, proc)
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_standin_exits_when_its_parent_dies(tmp_path: Path) -> None:
    import os
    import signal

    import psutil

    from harness.util.ports import free_port
    from harness.util.procs import stop_group

    _needs_engine()
    port = free_port()
    parent = subprocess.Popen(["bash", "-c", f'"$0" -p {port} & wait', str(engine_dir() / "query-engine")],
                              stdin=subprocess.DEVNULL, env=_standin_env(tmp_path), start_new_session=True)
    try:
        _wait_status(port, parent)
        kids = psutil.Process(parent.pid).children(recursive=True)
        assert kids
        os.kill(parent.pid, signal.SIGKILL)  # the parent only, not its group
        parent.wait()
        for kid in kids:
            assert _wait_gone(kid.pid, 10), f"stand-in {kid.pid} outlived its parent"
    finally:
        stop_group(parent.pid, timeout=5)


# -- candidate builds (a local wheel / source tree): installed like a release, keyed by content -----------------
def _recording_uv(tmp_path: Path) -> tuple[Path, Path]:
    """A fake uv: `uv venv` makes an empty venv; `uv pip install` records its working folder and fails."""
    calls = tmp_path / "uv-calls"
    fake_uv = tmp_path / "uv"
    fake_uv.write_text(
        "#!/bin/bash\n"
        f'echo "$PWD :: $*" >> {calls}\n'
        'if [[ "$1" == venv ]]; then for a; do last="$a"; done; '
        'mkdir -p "$last/bin" "$last/lib/python3.11/site-packages"; touch "$last/bin/python"; exit 0; fi\n'
        "echo '  × Failed to build `litellm @ file:///x`'\n"
        "echo '  ╰─▶ error: cargo not found'\n"
        "exit 1\n")
    fake_uv.chmod(0o755)
    return fake_uv, calls


def test_a_wheel_is_installed_like_a_release_with_its_extras_and_pins_from_the_environment_folder(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.litellm.test_candidate import make_wheel

    whl = make_wheel(tmp_path / "dist" / "litellm-1.95.1-py3-none-any.whl", "1.95.1")
    fake_uv, calls = _recording_uv(tmp_path)
    monkeypatch.setattr(litellm_env._Builder, "_uv", lambda self: str(fake_uv))
    monkeypatch.chdir(tmp_path / "dist")                # as `git bisect run` would: uv must not run here
    with pytest.raises(HarnessError) as info:
        litellm_env.ensure(str(whl))
    label = litellm_env.parse(str(whl)).label
    line = info.value.line()
    assert "\n" not in line and line.startswith(f"LiteLLM {label} cannot be installed: uv: error: cargo not found")
    assert "known:" not in line
    venv_call, install_call = calls.read_text().splitlines()
    root = cache / "litellm" / label
    assert venv_call.startswith(f"{root} :: venv ") and install_call.startswith(f"{root} :: pip install ")
    assert install_call.endswith(f"--reinstall-package litellm litellm[proxy] @ {whl.resolve().as_uri()} "
                                 "prisma==0.11.0 fastapi==0.140.0")
    assert not root.exists() and (cache / "litellm" / f"{label}.build.log").exists()


def test_a_tree_is_installed_from_its_folder_without_its_uv_sources(cache: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.litellm.test_candidate import make_tree

    tree = make_tree(tmp_path / "litellm-1.84.0")
    fake_uv, calls = _recording_uv(tmp_path)
    monkeypatch.setattr(litellm_env._Builder, "_uv", lambda self: str(fake_uv))
    with pytest.raises(HarnessError):
        litellm_env.ensure(str(tree))
    install_call = calls.read_text().splitlines()[-1]
    assert install_call.endswith(f"--reinstall-package litellm --no-sources litellm[proxy] @ {tree.resolve().as_uri()}"
                                 " prisma==0.11.0")


def test_the_same_candidate_reuses_its_environment_and_another_one_never_does(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.litellm.test_candidate import make_wheel

    first = make_wheel(tmp_path / "a" / "litellm-1.84.0-py3-none-any.whl")
    again = tmp_path / "b" / "litellm-1.84.0-py3-none-any.whl"        # the same bytes, elsewhere
    again.parent.mkdir()
    shutil.copy(first, again)
    other = make_wheel(tmp_path / "c" / "litellm-1.84.0-py3-none-any.whl", payload=b"x = 2\n")
    built = fake_ready(litellm_env.parse(str(first)).label)
    fake_ready("1.84.0")                                                # the release of the same version

    def boom(self: object) -> None:
        raise AssertionError("rebuilt a ready environment")

    monkeypatch.setattr(litellm_env._Builder, "build", boom)
    assert litellm_env.ensure(str(first)).root == built.root
    assert litellm_env.ensure(str(again)).root == built.root
    assert litellm_env.ensure("1.84.0").root == cache / "litellm" / "1.84.0"
    with pytest.raises(AssertionError, match="rebuilt"):
        litellm_env.ensure(str(other))                                  # never the first one's environment
    assert litellm_env.reopen(built.version).root == built.root         # a running stack finds it by name
    assert [e.version for e in litellm_env.cached()] == ["1.84.0", built.version]


def test_a_bad_candidate_path_is_one_line_before_any_build(cache: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    called = _failing_uv(tmp_path, monkeypatch)
    with pytest.raises(HarnessError, match="no such file or folder"):
        litellm_env.ensure(str(tmp_path / "litellm-9.9.9-py3-none-any.whl"))
    assert not called.exists()
    assert not (cache / "litellm").exists() or not any((cache / "litellm").iterdir())


def test_env_list_names_what_a_candidate_was_built_from(cache: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from harness import cli
    from tests.litellm.test_candidate import make_wheel

    whl = make_wheel(tmp_path / "litellm-1.84.0-py3-none-any.whl")
    build = litellm_env.parse(str(whl))
    env = fake_ready(build.label)
    info = json.loads(env.ready_path.read_text())
    env.ready_path.write_text(json.dumps({**info, "litellm": build.public()}))
    fake_ready("1.84.0")
    cli.env_list()
    lines = [line.split(maxsplit=2) for line in capsys.readouterr().err.splitlines()]    # the console expands tabs
    assert lines[0] == ["1.84.0", str(cache / "litellm" / "1.84.0")]
    assert lines[1] == [build.label, str(env.root), f"wheel declaring 1.84.0, sha256 {build.sha256}, {whl.resolve()}"]
