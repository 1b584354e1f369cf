"""Cached per-version LiteLLM environments (`.cache/litellm/<version>/`) that run with no internet.

A ready environment is a virtual environment with `litellm[proxy]==<version>` and `prisma==0.11.0`
(installed with uv), a Prisma client generated offline, everything byte-compiled, and a `ready.json`
marker written last. A candidate build (a local wheel or source tree, harness/litellm/candidate.py) is installed
the same way — `litellm[proxy] @ file://…` instead of `==<version>`, the same pins — into
`.cache/litellm/<label>/`, its label naming its content (`1.84.0+wheel.<sha256:16>`). Without the marker an
environment does not exist for the harness: a build that failed half-way is removed, and the next `ensure()`
starts again.

Prisma engines: by default (`HARNESS_PRISMA_ENGINE=standin`) the query engine is the harness's own
stand-in (`harness/engine/query-engine`, Node + `@prisma/query-engine-wasm`), because Prisma downloads
its native engines from its own host, which no package registry carries. On a machine with internet,
`HARNESS_PRISMA_ENGINE=native` lets Prisma download and use its native engines instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness.errors import HarnessError
from harness.litellm.candidate import Candidate, parse
from harness.litellm.versions import PRISMA_VERSION, install_hint
from harness.paths import cache_dir, engine_dir
from harness.util.fsutil import atomic_write_text

READY_FILE = "ready.json"
ENGINE_MODE_VAR = "HARNESS_PRISMA_ENGINE"
# The Prisma CLI / engine release Prisma Client Python 0.11.0 was built against.
PRISMA_CLI_VERSION = "5.4.2"
PRISMA_ENGINE_VERSION = "ac9d7041ed77bcc8a8dbd2ab6616b39013829574"
# What `prisma generate` and LiteLLM's start-up need so that Prisma neither phones home nor downloads.
_PRISMA_QUIET = {
    "CHECKPOINT_DISABLE": "1",
    "PRISMA_HIDE_UPDATE_MESSAGE": "true",
    "PRISMA_SKIP_POSTINSTALL_GENERATE": "1",
    "PRISMA_CLI_QUERY_ENGINE_TYPE": "binary",
}
# Scrubbed from the proxy's environment: they would make it import something other than its venv.
_SCRUB = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "__PYVENV_LAUNCHER__")
IMPORT_PROBE = "import prisma.client, litellm.proxy.proxy_server"
# Every LiteLLM environment is created from this Python, whatever Python the harness itself runs on (3.11 to
# 3.13): the facts in versions.py and the Prisma engine stand-in were confirmed with LiteLLM on 3.11.
LITELLM_PYTHON = "3.11"
LITELLM_PYTHON_VAR = "HARNESS_LITELLM_PYTHON"
_PROBE_PYTHON = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"


def envs_dir() -> Path:
    return cache_dir() / "litellm"


def litellm_base_python(running: tuple[int, int] | None = None) -> str:
    """The interpreter new LiteLLM environments are created from: $HARNESS_LITELLM_PYTHON when set (as is),
    else this process's own base interpreter when it is Python 3.11, else the first working `python3.11` on
    PATH, else pyenv's newest 3.11 ($PYENV_ROOT, default ~/.pyenv). HarnessError when there is none.
    `running` (major, minor) stands in for this process's version in tests."""
    explicit = os.environ.get(LITELLM_PYTHON_VAR, "").strip()
    if explicit:
        return explicit
    major, minor = running or sys.version_info[:2]
    if f"{major}.{minor}" == LITELLM_PYTHON:
        return getattr(sys, "_base_executable", None) or sys.executable
    name = f"python{LITELLM_PYTHON}"
    candidates = [found] if (found := shutil.which(name)) else []
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates += [str(p) for p in sorted(pyenv.glob(f"versions/{LITELLM_PYTHON}.*/bin/{name}"),
                                          key=lambda p: _release_key(p.parents[1].name), reverse=True)]
    for candidate in candidates:    # a pyenv shim on PATH may not work: ask each one what it is
        try:
            out = subprocess.run([candidate, "-c", _PROBE_PYTHON], capture_output=True, text=True, timeout=20,
                                 stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = out.stdout.strip().splitlines()
        if out.returncode == 0 and len(lines) == 2 and lines[0] == LITELLM_PYTHON:
            return lines[1]
    raise HarnessError(f"no Python {LITELLM_PYTHON} for the LiteLLM environments (the harness runs on "
                       f"{major}.{minor}; tried {', '.join(candidates) or 'nothing: none on PATH or in pyenv'})",
                       f"install {name} or set {LITELLM_PYTHON_VAR}=/path/to/{name}")


def _release_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in text.split("."))


def prisma_cli_dir() -> Path:
    """Where Prisma Client Python keeps the npm `prisma` CLI (shared by every environment)."""
    return cache_dir() / "prisma-cli" / f"prisma-py-{PRISMA_VERSION}"


def engine_mode() -> str:
    mode = os.environ.get(ENGINE_MODE_VAR, "standin").strip().lower() or "standin"
    if mode not in ("standin", "native"):
        raise HarnessError(f"{ENGINE_MODE_VAR}={mode!r} is not understood",
                           "use 'standin' (default, no internet) or 'native' (Prisma downloads its engines)")
    return mode


def standin_query_engine() -> Path:
    return engine_dir() / "query-engine"


def standin_schema_engine() -> Path:
    return engine_dir() / "schema-engine"


@dataclass
class LiteLLMEnv:
    """One built (or being built) environment of one LiteLLM version."""

    version: str
    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def litellm_bin(self) -> Path:
        return self.venv / "bin" / "litellm"

    @property
    def site_packages(self) -> Path:
        found = sorted((self.venv / "lib").glob("python3.*/site-packages"))
        if found:
            return found[0]
        return self.venv / "lib" / f"python{LITELLM_PYTHON}" / "site-packages"

    @property
    def ready_path(self) -> Path:
        return self.root / READY_FILE

    @property
    def schema_path(self) -> Path:
        """The schema the client was generated from (LiteLLM's own, generator block adjusted)."""
        return self.root / "schema.prisma"

    def is_ready(self) -> bool:
        try:
            info = json.loads(self.ready_path.read_text())
        except (OSError, ValueError):
            return False
        return info.get("version") == self.version and self.python.exists()

    def info(self) -> dict[str, object]:
        """The ready marker's contents (build figures), empty when not ready."""
        try:
            return dict(json.loads(self.ready_path.read_text()))
        except (OSError, ValueError):
            return {}

    def migrations(self) -> list[Path]:
        base = self.site_packages / "litellm_proxy_extras" / "migrations"
        return sorted((p for p in base.glob("*/migration.sql") if p.is_file()), key=lambda p: p.parent.name)

    def proxy_env(self, database_url: str) -> dict[str, str]:
        """The full environment to run this version's `litellm` offline against `database_url`."""
        env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        env.update(_PRISMA_QUIET)
        env.update({
            "DATABASE_URL": database_url,
            "DISABLE_SCHEMA_UPDATE": "true",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PRISMA_BINARY_CACHE_DIR": str(prisma_cli_dir()),
            "PRISMA_USE_GLOBAL_NODE": "true",
            "VIRTUAL_ENV": str(self.venv),
            "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LITELLM_MODE": "PRODUCTION",  # no .env loading from the working directory
            "TELEMETRY": "False",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        })
        if self.engine == "standin":
            env["PRISMA_QUERY_ENGINE_BINARY"] = str(standin_query_engine())
            env["PRISMA_SCHEMA_ENGINE_BINARY"] = str(standin_schema_engine())
        else:  # native: the engines `prisma generate` downloaded next to the generated client
            for var in ("PRISMA_QUERY_ENGINE_BINARY", "PRISMA_SCHEMA_ENGINE_BINARY"):
                env.pop(var, None)
        return env

    @property
    def engine(self) -> str:
        """The engine this environment was built for ('standin' or 'native')."""
        recorded = self.info().get("engine")
        return str(recorded) if recorded in ("standin", "native") else engine_mode()


# -- build -----------------------------------------------------------------------------------------
def _env_for(version: str) -> LiteLLMEnv:
    return LiteLLMEnv(version=version, root=envs_dir() / version)


def cached() -> list[LiteLLMEnv]:
    """Every ready environment, oldest version first."""
    from packaging.version import InvalidVersion, Version

    found = []
    if envs_dir().is_dir():
        for child in envs_dir().iterdir():
            env = _env_for(child.name)
            if child.is_dir() and env.is_ready():
                found.append(env)

    def key(env: LiteLLMEnv) -> tuple[int, Version | str]:
        try:
            return (0, Version(env.version))
        except InvalidVersion:
            return (1, env.version)

    return sorted(found, key=key)


@contextlib.contextmanager
def _build_lock(name: str) -> Iterator[None]:
    envs_dir().mkdir(parents=True, exist_ok=True)
    with open(envs_dir() / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure(build: str | Candidate, console: Console | None = None) -> LiteLLMEnv:
    """Build the environment of `build` — a release, or a candidate's wheel / source tree (its path or its
    Candidate) — or reuse it when it is ready. The environment is named by `Candidate.label`."""
    candidate = parse(build)
    candidate.traits()              # a malformed or too old version: one line before anything is built
    mode = engine_mode()
    env = _env_for(candidate.label)
    if env.is_ready() and env.engine == mode:
        return env
    console = console or Console(stderr=True)
    with _build_lock(candidate.label):
        if env.is_ready():
            if env.engine == mode:  # built by someone else while we waited
                return env
            console.print(f"LiteLLM {candidate.label}: cached environment was built for the {env.engine} Prisma "
                          f"engine, {ENGINE_MODE_VAR}={mode}: rebuilding", highlight=False)
        _Builder(env, candidate.requirements(), console, candidate).build()
    return env


def reopen(name: str) -> LiteLLMEnv:
    """The environment a running stack uses, by its name (`LiteLLMEnv.version`: a release or a candidate's
    label). A release that is not ready is built again; a candidate's must still be ready (its label cannot be
    turned back into its source)."""
    env = _env_for(name)
    return env if env.is_ready() else ensure(name)


class _Builder:
    def __init__(self, env: LiteLLMEnv, requirements: list[str], console: Console,
                 candidate: Candidate | None = None) -> None:
        self.env = env
        self.requirements = requirements
        self.candidate = candidate
        self.console = console
        self.log_path = envs_dir() / f"{env.version}.build.log"
        self.figures: dict[str, float] = {}

    # -- helpers -----------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.console.print(f"[dim]LiteLLM {self.env.version}:[/] {escape(text)}", highlight=False)

    def _run(self, step: str, cmd: list[str], *, env: Mapping[str, str] | None = None,
             cwd: Path | None = None, timeout: float = 1800) -> tuple[float, str]:
        start = time.monotonic()
        with open(self.log_path, "a") as log:
            log.write(f"\n$ {' '.join(cmd)}\n")
            log.flush()
            try:
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env=dict(env) if env is not None else None, cwd=cwd, timeout=timeout,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
            except subprocess.TimeoutExpired as exc:
                raise HarnessError(f"LiteLLM {self.env.version}: {step} timed out after {timeout:.0f} s",
                                   f"see {self.log_path}") from exc
            except FileNotFoundError as exc:
                raise HarnessError(f"LiteLLM {self.env.version}: {step} failed: {exc}",
                                   "run `make setup` (it installs uv and the engine)") from exc
            log.write(proc.stdout)
        if proc.returncode != 0:
            raise _StepFailed(step, proc.stdout)
        return time.monotonic() - start, proc.stdout

    def _tool_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        env.update({
            "UV_PYTHON_DOWNLOADS": "never",
            "VIRTUAL_ENV": str(self.env.venv),
            "PATH": f"{self.env.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        })
        return env

    # -- steps -------------------------------------------------------------------------------------
    def build(self) -> None:
        env = self.env
        total_start = time.monotonic()
        if env.root.exists():
            self._say(f"removing an unfinished build in {env.root}")
            shutil.rmtree(env.root)
        env.root.mkdir(parents=True)
        self.log_path.write_text(f"build of LiteLLM {env.version} ({time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        try:
            self._install()
            self._generate()
            self._compile()
            self._write_marker(time.monotonic() - total_start)
        except _StepFailed as exc:
            self._discard()
            release = self.candidate is None or self.candidate.kind == "pypi"   # hints are about releases
            hint = install_hint(env.version) if exc.step == "uv pip install" and release else None
            raise HarnessError(exc.describe(env.version, hint), f"full log: {self.log_path}") from None
        except BaseException:
            self._discard()
            raise
        self._say(f"ready in {time.monotonic() - total_start:.0f} s")

    def _discard(self) -> None:
        shutil.rmtree(self.env.root, ignore_errors=True)

    def _uv(self) -> str:
        local = Path(sys.executable).parent / "uv"
        if local.exists():
            return str(local)
        found = shutil.which("uv")
        if found:
            return found
        raise HarnessError("uv is not installed", "run `make setup` (uv is pinned in pyproject.toml)")

    def _install(self) -> None:
        uv = self._uv()
        base_python = litellm_base_python()
        options = self.candidate.uv_options() if self.candidate is not None else []
        self._say(f"creating the venv ({base_python}) and installing {' '.join(self.requirements)} with uv")
        # uv runs in the environment's folder: run from a LiteLLM checkout (git bisect run), uv would otherwise
        # take that checkout's pyproject.toml [tool.uv] settings (required-version, exclude-newer, …) as its own.
        self._run("uv venv", [uv, "venv", "--quiet", "--python", base_python, str(self.env.venv)],
                  env=self._tool_env(), cwd=self.env.root)
        seconds, _ = self._run("uv pip install",
                               [uv, "pip", "install", "--python", str(self.env.python), *options,
                                *self.requirements], env=self._tool_env(), cwd=self.env.root)
        self.figures["install_s"] = round(seconds, 1)
        self._say(f"installed in {seconds:.0f} s")

    def _schema(self) -> Path:
        source = self.env.site_packages / "litellm" / "proxy" / "schema.prisma"
        if not source.exists():
            raise _StepFailed("prisma generate", f"{source} is missing from the installed litellm")
        text = source.read_text()
        match = re.search(r"generator\s+\w+\s*\{[^}]*\}", text)
        if match is None:
            raise _StepFailed("prisma generate", f"no generator block in {source}")
        block = match.group(0)
        if "recursive_type_depth" not in block:
            patched = block[:-1].rstrip() + "\n  recursive_type_depth = -1\n}"
            text = text[:match.start()] + patched + text[match.end():]
        self.env.schema_path.write_text(text)
        return self.env.schema_path

    def _generate(self) -> None:
        schema = self._schema()
        env = self._tool_env()
        env.update(_PRISMA_QUIET)
        env["PRISMA_BINARY_CACHE_DIR"] = str(prisma_cli_dir())
        if engine_mode() == "standin":
            for path in (standin_query_engine(), standin_schema_engine()):
                if not os.access(path, os.X_OK):
                    raise HarnessError(f"the Prisma engine stand-in {path} is missing or not executable",
                                       "restore harness/engine from git and run `make engine`")
            env["PRISMA_QUERY_ENGINE_BINARY"] = str(standin_query_engine())
            env["PRISMA_SCHEMA_ENGINE_BINARY"] = str(standin_schema_engine())
        self._say("generating the Prisma client (offline)")
        with _build_lock("prisma-cli"):  # the npm-installed Prisma CLI is shared by all versions
            seconds, _ = self._run("prisma generate", [str(self.env.venv / "bin" / "prisma"), "generate",
                                                       f"--schema={schema}"], env=env, cwd=self.env.root)
        self.figures["generate_s"] = round(seconds, 1)
        if not (self.env.site_packages / "prisma" / "client.py").exists():
            raise _StepFailed("prisma generate", "the generated client (prisma/client.py) is missing")

    def _import_seconds(self) -> float:
        env = self._tool_env()
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        seconds, _ = self._run("import probe", [str(self.env.python), "-c", IMPORT_PROBE], env=env,
                               cwd=self.env.root, timeout=300)
        return round(seconds, 2)

    def _compile(self) -> None:
        # The probe after compiling doubles as a smoke test (the env imports LiteLLM's proxy and the
        # generated client); the one before is a measurement only: HARNESS_ENV_MEASURE_IMPORT=1.
        if os.environ.get("HARNESS_ENV_MEASURE_IMPORT", "").lower() in ("1", "true", "yes"):
            self.figures["import_before_compile_s"] = self._import_seconds()
        self._say("byte-compiling site-packages (PYTHONDONTWRITEBYTECODE would recompile on every start)")
        seconds, _ = self._run("compileall", [str(self.env.python), "-m", "compileall", "-q", "-j", "0",
                                              str(self.env.site_packages)], env=self._tool_env())
        self.figures["compile_s"] = round(seconds, 1)
        self.figures["import_after_compile_s"] = self._import_seconds()
        before = self.figures.get("import_before_compile_s")
        self._say((f"import time {before:.1f} s → " if before is not None else "import time ")
                  + f"{self.figures['import_after_compile_s']:.1f} s after byte-compiling")

    def _write_marker(self, total: float) -> None:
        _, freeze = self._run("uv pip freeze", [self._uv(), "pip", "freeze", "--python", str(self.env.python)],
                              env=self._tool_env(), cwd=self.env.root)
        pins = sorted(line for line in freeze.splitlines()
                      if re.match(r"(litellm|prisma)\b", line.strip(), re.IGNORECASE))
        payload = {
            "version": self.env.version,
            "build_seconds": round(total, 1),
            "engine": engine_mode(),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "python": str(self.env.python),
            "freeze": pins,
            **self.figures,
        }
        if self.candidate is not None:
            payload["litellm"] = self.candidate.public()
        atomic_write_text(self.env.ready_path, json.dumps(payload, indent=2) + "\n")


class _StepFailed(Exception):
    def __init__(self, step: str, output: str) -> None:
        super().__init__(step)
        self.step = step
        self.output = output

    def reason(self) -> str:
        lines = [ln.strip(" │╰─▶×\t") for ln in self.output.splitlines()]
        lines = [ln for ln in lines if ln]
        if self.step == "uv pip install":
            # uv: "× No solution found when resolving dependencies:" then "╰─▶ Because …" wrapped over
            # several indented lines: the resolver's own sentence, whole.
            for i, ln in enumerate(lines):
                if ln.startswith("Because"):
                    paragraph = [ln]
                    for more in lines[i + 1:]:
                        if paragraph[-1].endswith(".") or more.startswith(("Because", "hint:", "And because")) \
                                or more.endswith(":"):
                            break
                        paragraph.append(more)
                    return "uv found no solution: " + " ".join(" ".join(paragraph).split())
            errors = [ln for ln in lines if ln.lower().startswith(("error", "failed", "caused by"))]
            if errors:
                return "uv: " + " ".join(errors[-1].split())
        return " ".join(lines[-1].split()) if lines else "no output"

    def describe(self, version: str, hint: str | None = None) -> str:
        """One line: what failed and why (the tool's own words, trimmed), then `hint` when there is one."""
        text = _trim(self.reason(), 400)
        if self.step == "uv pip install":
            line = f"LiteLLM {version} cannot be installed: {text}"
        else:
            line = f"LiteLLM {version}: {self.step} failed: {text}"
        return f"{line} (known: {hint})" if hint else line


def _trim(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, "…" marking the cut."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0] if " " in text[:limit - 1] else text[:limit - 1]
    return cut.rstrip(" ,;") + "…"


# -- schema ----------------------------------------------------------------------------------------
def apply_migrations(env: LiteLLMEnv, dsn: str) -> None:
    """Apply the version's own SQL migrations in name order with psql (ON_ERROR_STOP)."""
    migrations = env.migrations()
    if not migrations:
        raise HarnessError(f"LiteLLM {env.version} ships no migrations under "
                           f"{env.site_packages / 'litellm_proxy_extras' / 'migrations'}",
                           "rebuild the environment (`harness env build`)")
    psql = _psql()
    for path in migrations:
        proc = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              stdin=subprocess.DEVNULL, timeout=300)
        if proc.returncode != 0:
            detail = " ".join(proc.stdout.strip().splitlines()[-1:]) if proc.stdout.strip() else "psql failed"
            raise HarnessError(f"migration {path.parent.name}/migration.sql of LiteLLM {env.version} failed: "
                               f"{detail}", "is the database empty and reachable?")


def _psql() -> str:
    found = shutil.which("psql")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"), reverse=True):
        return str(candidate)
    raise HarnessError("psql is not installed", "install the PostgreSQL client (`make system`)")
