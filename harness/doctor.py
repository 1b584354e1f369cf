"""`harness doctor`: what this machine has, what is missing, and how to fix it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.paths import REPO_ROOT, engine_dir
from harness.util import ports


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _version_of(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None


def _binary(name: str, version_args: list[str], fix: str, extra_dirs: list[str] | None = None) -> Check:
    path = shutil.which(name)
    if path is None:
        for folder in extra_dirs or []:
            for candidate in sorted(Path("/").glob(folder.lstrip("/"))):
                if (candidate / name).exists():
                    path = str(candidate / name)
    if path is None:
        return Check(name, False, "not found", fix)
    version = _version_of([path, *version_args]) or "?"
    return Check(name, True, f"{path}: {version}")


SUPPORTED_PYTHONS = ((3, 11), (3, 12), (3, 13))     # pyproject.toml: requires-python >=3.11,<3.14


def check_python() -> Check:
    ok = sys.version_info[:2] in SUPPORTED_PYTHONS
    return Check("python", ok, sys.version.split()[0],
                 "use Python 3.11 to 3.13 (make setup creates .venv with python3.11)")


def check_litellm_python() -> Check:
    """The interpreter new LiteLLM environments are built from (3.11, whatever the harness runs on)."""
    from harness.errors import HarnessError
    from harness.litellm.env import LITELLM_PYTHON, litellm_base_python

    try:
        return Check(f"python{LITELLM_PYTHON} for LiteLLM venvs", True, litellm_base_python())
    except HarnessError as exc:
        return Check(f"python{LITELLM_PYTHON} for LiteLLM venvs", False, exc.problem, exc.fix or "")


def check_engine() -> Check:
    modules = engine_dir() / "node_modules"
    ok = (modules / ".installed").exists() or (modules / "@prisma").exists()
    return Check("prisma engine stand-in", ok, str(modules) if ok else "npm packages not installed",
                 "run `make engine` (npm ci in harness/engine)")


def check_disk() -> Check:
    free_gb = shutil.disk_usage(REPO_ROOT).free / 2**30
    return Check("disk", free_gb > 5, f"{free_gb:.1f} GiB free", "free disk: each LiteLLM environment takes ~1 GiB")


def check_loopback() -> Check:
    try:
        port = ports.free_port()
    except Exception as exc:  # noqa: BLE001 - report whatever went wrong
        return Check("loopback ports", False, str(exc), "check the loopback interface")
    return Check("loopback ports", True, f"can bind 127.0.0.1 (e.g. :{port})")


def check_cached_versions() -> Check:
    from harness.litellm import env as litellm_env

    versions = [env.version for env in litellm_env.cached()]   # what `harness env list` shows
    return Check("LiteLLM environments", bool(versions), ", ".join(versions) or "none built",
                 "run `make setup` or `harness env build <version>`", required=False)


def check_stale_stacks() -> Check:
    from harness.stack.backends import list_stacks

    running = [f"{s.name} ({s.backend})" for s in list_stacks() if s.is_running()]
    return Check("running stacks", not running, ", ".join(running) or "none",
                 "stop them with `harness down --all` if they are left over", required=False)


def check_docker() -> Check:
    if shutil.which("docker") is None:
        return Check("docker (compose backend)", False, "no docker client", "install Docker to use --backend compose",
                     required=False)
    out = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                         timeout=15, check=False)
    ok = out.returncode == 0 and out.stdout.strip() != ""
    return Check("docker (compose backend)", ok, out.stdout.strip() if ok else "client only, no engine answers",
                 "start a Docker engine to use --backend compose; --backend local needs none", required=False)


CHECKS: list[Callable[[], Check]] = [
    check_python,
    check_litellm_python,
    lambda: _binary("redis-server", ["--version"], "run `make setup` (apt-get install redis-server)"),
    lambda: _binary("initdb", ["--version"], "run `make setup` (apt-get install postgresql)",
                    ["/usr/lib/postgresql/*/bin"]),
    lambda: _binary("psql", ["--version"], "run `make setup` (apt-get install postgresql-client)"),
    lambda: _binary("node", ["--version"], "install Node.js 18+ (apt-get install nodejs npm)"),
    lambda: _binary("npm", ["--version"], "install npm (apt-get install npm)"),
    check_engine,
    check_disk,
    check_loopback,
    check_cached_versions,
    check_stale_stacks,
    check_docker,
]


def run_doctor(console: Console) -> int:
    table = Table(title="harness doctor", show_lines=False)
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col)
    failed = 0
    for make in CHECKS:
        check = make()
        if check.ok:
            status = "[green]ok[/]"
        elif check.required:
            status = "[red]MISSING[/]"
            failed += 1
        else:
            status = "[yellow]note[/]"
        table.add_row(check.name, status, check.detail, "" if check.ok else check.fix)
    # Not a terminal (a pipe, CI log): print at the table's natural width rather than folding words at 80.
    out = console
    if not console.is_terminal:
        natural = console.measure(table, options=console.options.update_width(10_000)).maximum
        out = Console(file=console.file, width=max(console.width, natural), no_color=True)
    out.print(table)
    if failed:
        console.print(f"[red]{failed} required check(s) failed — fix them and run `harness doctor` again[/]")
        return 2
    console.print("[green]ready[/]")
    return 0
