"""harness.stack.compose.images without Docker: the HARNESS_IMAGES policy, choosing (pull, else build here),
building through a fake Docker SDK client (tests/conftest.py FakeDocker: images.get/pull, api.build), the
debootstrap base (a fake runner; `tar | docker import` replaced: nothing real runs), the staged build context;
and static checks of compose/images/Dockerfile against what the module stages and builds.
"""

from __future__ import annotations

import ast
import io
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness.errors import HarnessError
from harness.paths import REPO_ROOT
from harness.stack.compose import images
from harness.stack.compose.images import (
    BASE_IMAGE,
    DOCKERFILE,
    HARNESS_OFFICIAL_TAG,
    LOCAL_MIGRATE_ENTRYPOINT,
    LOCAL_ROLES,
    MIRROR_VAR,
    MOCK_DOCKERFILE,
    OFFICIAL,
    OFFICIAL_MIGRATE_ENTRYPOINT,
    ImageBuilder,
    host_ca_bundle,
    local_choice,
    official_choice,
)
from harness.stack.compose.render import COMPOSE_FILE
from tests.conftest import FakeDocker

LITELLM = "ghcr.io/berriai/litellm:1.84.0"
LOCAL_ORDER = [("runtime", "litellm-harness/runtime:local"), ("postgres", "litellm-harness/postgres:local"),
               ("redis", "litellm-harness/redis:local"), ("toxiproxy", "litellm-harness/toxiproxy:local"),
               ("litellm", "litellm-harness/litellm:1.84.0-local")]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("HARNESS_IMAGES", "HARNESS_LITELLM_IMAGE", MIRROR_VAR):
        monkeypatch.delenv(var, raising=False)


class Rig:
    def __init__(self, tmp_path: Path, runner: Any = None) -> None:
        self.docker = FakeDocker()
        self.out = io.StringIO()
        self.runner_calls: list[list[str]] = []
        self.builder = ImageBuilder(self.docker, console=Console(file=self.out, width=400),
                                    log_path=tmp_path / "build.log", runner=runner or self.refuse)

    def refuse(self, cmd: Sequence[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.runner_calls.append(list(cmd))
        raise AssertionError(f"ran {cmd}")

    def have(self, *refs: str) -> None:
        for ref in refs:
            self.docker.images.add(ref)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def _official_refs(version: str = "1.84.0") -> list[str]:
    return [ref for var, ref in official_choice(version).env.items()
            if var.endswith("_IMAGE") and var != "HARNESS_IMAGE"]


# -- policy ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "expected"), [(None, "auto"), ("", "auto"), ("official", "official"),
                                                 (" Local ", "local"), ("AUTO", "auto")])
def test_policy(value: str | None, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is not None:
        monkeypatch.setenv("HARNESS_IMAGES", value)
    assert images.policy() == expected


def test_a_policy_not_understood_is_one_line_and_asks_docker_nothing(rig: Rig,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_IMAGES", "Remote")
    with pytest.raises(HarnessError) as info:
        rig.builder.choose("1.84.0")
    assert info.value.exit_code == 2
    assert info.value.line() == "HARNESS_IMAGES='remote' is not understood — use one of: auto, official, local"
    assert rig.docker.images.got == [] and rig.docker.images.pulled == []


# -- the choices and the compose file agree ---------------------------------------------------------
def test_the_choices_name_every_image_the_compose_file_takes() -> None:
    text = COMPOSE_FILE.read_text()
    taken = set(re.findall(r"image: \$\{([A-Z_]+_IMAGE)[:?}-]", text)) - {"LOCUST_IMAGE"}
    assert taken == {"LITELLM_IMAGE", "HARNESS_IMAGE", "POSTGRES_IMAGE", "REDIS_IMAGE", "TOXIPROXY_IMAGE"}
    for choice in (official_choice("1.84.0"), local_choice("1.84.0")):
        assert {var for var in choice.env if var.endswith("_IMAGE")} == taken, choice.kind
        assert set(choice.env) - taken == {"LITELLM_MIGRATE_ENTRYPOINT"}
    # the compose file's defaults are the official images, and its migrate default the official script
    defaults = dict(re.findall(r"\$\{([A-Z_]+_IMAGE):-([^}]+)\}", text))
    assert {var: defaults.get(var) for var in OFFICIAL} == OFFICIAL
    assert re.findall(r"\$\{LITELLM_MIGRATE_ENTRYPOINT:-([^}]+)\}", text) == [OFFICIAL_MIGRATE_ENTRYPOINT]


def test_the_two_choices() -> None:
    official = official_choice("1.84.0")
    assert (official.kind, official.reason) == ("official", "")
    assert official.env == {"LITELLM_IMAGE": LITELLM, "HARNESS_IMAGE": HARNESS_OFFICIAL_TAG,
                            "LITELLM_MIGRATE_ENTRYPOINT": OFFICIAL_MIGRATE_ENTRYPOINT, **OFFICIAL}
    local = local_choice("1.84.0", "because")
    assert (local.kind, local.reason) == ("local", "because")
    assert local.env == {"HARNESS_IMAGE": "litellm-harness/runtime:local",
                         "POSTGRES_IMAGE": "litellm-harness/postgres:local",
                         "REDIS_IMAGE": "litellm-harness/redis:local",
                         "TOXIPROXY_IMAGE": "litellm-harness/toxiproxy:local",
                         "LITELLM_IMAGE": "litellm-harness/litellm:1.84.0-local",
                         "LITELLM_MIGRATE_ENTRYPOINT": LOCAL_MIGRATE_ENTRYPOINT}
    assert local.describe() == "local images (because)" and official.describe() == "official images"


# -- choosing ----------------------------------------------------------------------------------------
def test_auto_with_every_official_image_present_pulls_nothing(rig: Rig) -> None:
    rig.have(*_official_refs())
    choice = rig.builder.choose("1.84.0")
    assert (choice.kind, choice.env) == ("official", official_choice("1.84.0").env)
    assert rig.docker.images.pulled == []
    assert sorted(rig.docker.images.got) == sorted(_official_refs())      # the harness image is built, not pulled


def test_auto_pulls_what_is_missing(rig: Rig) -> None:
    rig.have(*[ref for ref in _official_refs() if ref != LITELLM])
    choice = rig.builder.choose("1.84.0")
    assert choice.kind == "official"
    assert rig.docker.images.pulled == [LITELLM]


def test_auto_falls_back_to_the_images_built_here_saying_why(rig: Rig) -> None:
    rig.docker.images.pull_errors[LITELLM] = ('Head "https://ghcr.io/v2/berriai/litellm/manifests/1.84.0": dial tcp: '
                                              'lookup ghcr.io: no such host\nsecond line')
    choice = rig.builder.choose("1.84.0")
    assert (choice.kind, choice.env) == ("local", local_choice("1.84.0").env)
    first_line = rig.docker.images.pull_errors[LITELLM].splitlines()[0]
    assert choice.reason == f"pull of {LITELLM} failed: {first_line}"
    said = " ".join(rig.out.getvalue().split())
    assert f"cannot pull {LITELLM}" in said and "HARNESS_IMAGES=local" in said and "second line" not in said
    assert rig.docker.images.pulled == [LITELLM]           # nothing else pulled once one pull failed


def test_official_policy_makes_a_failed_pull_an_error(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_IMAGES", "official")
    rig.have(LITELLM)
    rig.docker.images.pull_errors[OFFICIAL["POSTGRES_IMAGE"]] = "manifest for postgres:16.4-alpine not found"
    with pytest.raises(HarnessError) as info:
        rig.builder.choose("1.84.0")
    assert info.value.problem == "cannot pull postgres:16.4-alpine: manifest for postgres:16.4-alpine not found"
    assert "HARNESS_IMAGES=local" in (info.value.fix or "")
    assert info.value.exit_code == 2 and "\n" not in info.value.line()
    assert "local" not in rig.out.getvalue()


def test_a_named_litellm_image_that_cannot_be_pulled_is_an_error_not_a_silent_fallback(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_LITELLM_IMAGE", "registry.example/litellm:{version}-candidate")
    named = "registry.example/litellm:1.84.0-candidate"
    rig.docker.images.pull_errors[named] = "manifest unknown"
    with pytest.raises(HarnessError) as info:
        rig.builder.choose("1.84.0")
    assert info.value.problem == f"cannot pull {named}: manifest unknown"


def test_local_policy_asks_no_registry(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_IMAGES", "local")
    choice = rig.builder.choose("1.84.0")
    assert (choice.kind, choice.reason) == ("local", "HARNESS_IMAGES=local")
    assert rig.docker.images.got == [] and rig.docker.images.pulled == []


# -- building ----------------------------------------------------------------------------------------
def test_local_ensure_builds_the_stages_in_order_and_records_the_ids(rig: Rig) -> None:
    rig.have(BASE_IMAGE)
    choice = rig.builder.ensure(local_choice("1.84.0"), "1.84.0")
    builds = rig.docker.api.builds
    assert [(b["target"], b["tag"]) for b in builds] == LOCAL_ORDER
    assert {b["dockerfile"] for b in builds} == {"compose/images/Dockerfile"}
    assert {b["network_mode"] for b in builds} == {"host"}
    assert [b["buildargs"] for b in builds] == [{}, {}, {}, {}, {"LITELLM_VERSION": "1.84.0"}]
    # one staged context for all of them, removed afterwards
    assert len({b["path"] for b in builds}) == 1 and not Path(builds[0]["path"]).exists()
    assert "compose/images/Dockerfile" in rig.docker.api.context_files[0]
    assert choice.ids == {tag: rig.docker.images.present[tag] for _, tag in LOCAL_ORDER}
    assert rig.runner_calls == []                          # the base was there: no debootstrap
    log = rig.builder.log_path.read_text()
    assert '=== build litellm-harness/litellm:1.84.0-local (compose/images/Dockerfile:litellm) ' \
           '{"LITELLM_VERSION": "1.84.0"}' in log
    assert "Successfully tagged litellm-harness/toxiproxy:local" in log
    said = rig.out.getvalue()
    assert all(f"built {tag}" in said for _, tag in LOCAL_ORDER)


def test_a_failed_stage_stops_the_build_and_names_the_log(rig: Rig) -> None:
    rig.have(BASE_IMAGE)
    rig.docker.api.fail_target = "redis"
    with pytest.raises(HarnessError) as info:
        rig.builder.ensure(local_choice("1.84.0"), "1.84.0")
    assert info.value.problem == ("building litellm-harness/redis:local (compose/images/Dockerfile:redis) failed: "
                                  "The command '/bin/sh -c apt-get install' returned a non-zero code: 100")
    assert info.value.fix == f"full log: {rig.builder.log_path}"
    assert [b["target"] for b in rig.docker.api.builds] == ["runtime", "postgres", "redis"]
    assert not Path(rig.docker.api.builds[0]["path"]).exists()
    assert "ERROR The command" in rig.builder.log_path.read_text()


def test_official_ensure_builds_only_the_harness_image(rig: Rig) -> None:
    rig.have(*_official_refs())
    choice = rig.builder.ensure(official_choice("1.84.0"), "1.84.0")
    [build] = rig.docker.api.builds
    assert (build["dockerfile"], build["target"], build["tag"], build["buildargs"]) == (
        "compose/Dockerfile.mock", None, HARNESS_OFFICIAL_TAG, {})
    assert not Path(build["path"]).exists()
    assert BASE_IMAGE not in rig.docker.images.got
    assert choice.ids == {ref: rig.docker.images.present[ref] for ref in [*_official_refs(), HARNESS_OFFICIAL_TAG]}


# -- the debootstrap base ----------------------------------------------------------------------------------
class Importer:
    """`tar -C rootfs -c .` piped into `docker import - BASE_IMAGE`, in place of the real commands."""

    def __init__(self, docker: FakeDocker) -> None:
        self.docker = docker
        self.tar: list[list[str]] = []
        self.imported: list[list[str]] = []

    def popen(self, cmd: list[str], **_: Any) -> Any:
        assert cmd[0] == "tar", cmd
        self.tar.append(cmd)

        class Tar:
            def __init__(self) -> None:
                self.stdout = io.BytesIO(b"rootfs tar")
                self.returncode: int | None = None

            def wait(self) -> int:
                self.returncode = 0
                return 0

        return Tar()

    def run(self, cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert cmd == ["docker", "import", "-", BASE_IMAGE], cmd
        assert kwargs["stdin"].read() == b"rootfs tar"
        self.imported.append(cmd)
        self.docker.images.add(BASE_IMAGE)
        return subprocess.CompletedProcess(cmd, 0, "sha256:feed\n", "")


class Debootstrap:
    """The runner: debootstrap "makes" the root filesystem, or fails like a mirror that cannot be reached."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[list[str]] = []

    def __call__(self, cmd: Sequence[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(cmd))
        if self.fail:
            return subprocess.CompletedProcess(list(cmd), 1, "I: Retrieving InRelease\n",
                                               "E: Failed getting release file http://mirror.example/debian/dists/"
                                               "bookworm/Release\n")
        rootfs = Path(cmd[3])
        (rootfs / "etc").mkdir(parents=True)
        (rootfs / "etc" / "debian_version").write_text("12.8\n")
        return subprocess.CompletedProcess(list(cmd), 0, "I: Base system installed successfully.\n", "")


@pytest.fixture
def base_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Rig, Debootstrap, Importer]:
    runner = Debootstrap()
    rig = Rig(tmp_path, runner=runner)
    importer = Importer(rig.docker)
    monkeypatch.setattr(subprocess, "Popen", importer.popen)
    monkeypatch.setattr(subprocess, "run", importer.run)
    monkeypatch.setattr(images.shutil, "which", lambda name: f"/fake/sbin/{name}" if name == "debootstrap" else None)
    monkeypatch.setattr(images.os, "geteuid", lambda: 0)
    monkeypatch.setenv(MIRROR_VAR, "http://mirror.example/debian")
    return rig, runner, importer


def test_the_base_image_is_made_once_when_missing(base_rig: tuple[Rig, Debootstrap, Importer]) -> None:
    rig, runner, importer = base_rig
    made = rig.builder.ensure_base()
    assert made == rig.docker.images.present[BASE_IMAGE]
    [cmd] = runner.calls
    assert cmd[:3] == ["/fake/sbin/debootstrap", "--variant=minbase", "bookworm"]
    assert cmd[-1] == "http://mirror.example/debian"
    rootfs = Path(cmd[3])
    assert rootfs.name == "bookworm" and not rootfs.parent.exists()          # the root filesystem is removed
    assert importer.tar == [["tar", "-C", str(rootfs), "-c", "."]] and len(importer.imported) == 1
    assert "Base system installed successfully" in rig.builder.log_path.read_text()
    # present now: nothing is made again, by ensure_base or by a local ensure
    assert rig.builder.ensure_base() == made
    rig.builder.ensure(local_choice("1.84.0"), "1.84.0")
    assert len(runner.calls) == 1 and len(importer.imported) == 1


def test_a_failed_debootstrap_is_one_line_naming_the_log(base_rig: tuple[Rig, Debootstrap, Importer]) -> None:
    rig, runner, importer = base_rig
    runner.fail = True
    with pytest.raises(HarnessError) as info:
        rig.builder.ensure_base()
    assert info.value.problem == ("debootstrap failed: E: Failed getting release file "
                                  "http://mirror.example/debian/dists/bookworm/Release")
    assert info.value.fix == f"full log: {rig.builder.log_path}"
    assert importer.tar == [] and BASE_IMAGE not in rig.docker.images.present
    assert not Path(runner.calls[0][3]).parent.exists()


def test_making_the_base_needs_root(base_rig: tuple[Rig, Debootstrap, Importer],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rig, runner, _ = base_rig
    monkeypatch.setattr(images.os, "geteuid", lambda: 1000)
    with pytest.raises(HarnessError, match="^building the base image needs root") as info:
        rig.builder.ensure_base()
    assert "HARNESS_IMAGES=official" in (info.value.fix or "")
    assert runner.calls == []


# -- the staged build context ------------------------------------------------------------------------
def _write(root: Path, rel: str, text: str = "x") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_staged_context_has_only_what_the_dockerfiles_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              rig: Rig) -> None:
    repo = tmp_path / "repo"
    for rel in ("pyproject.toml", "README.md", "harness/__init__.py", "harness/litellm/env.py",
                "harness/engine/package.json", "harness/engine/server.mjs", "compose/images/Dockerfile",
                "compose/images/install_deps.py", "compose/Dockerfile.mock",
                # never in a context:
                "harness/__pycache__/paths.cpython-311.pyc", "harness/litellm/__pycache__/env.cpython-311.pyc",
                "harness/stray.pyc", "harness/engine/node_modules/prisma/index.js", "compose/docker-compose.yml",
                "compose/mock-config.json", "results/run-1/meta.json", ".cache/litellm/1.84.0/ready.json",
                ".state/t1/compose.env", ".venv/bin/python", ".git/HEAD", "tests/test_x.py", "scripts/x.sh"):
        _write(repo, rel)
    monkeypatch.setattr(images, "REPO_ROOT", repo)
    monkeypatch.setattr(images, "COMPOSE_DIR", repo / "compose")
    monkeypatch.setattr(images, "MOCK_DOCKERFILE", repo / "compose" / "Dockerfile.mock")
    ca = tmp_path / "corp-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    monkeypatch.delenv("PIP_CERT", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    ctx = rig.builder.stage_context()
    try:
        files = {str(p.relative_to(ctx)) for p in ctx.rglob("*") if p.is_file()}
        assert files == {"pyproject.toml", "README.md", "harness/__init__.py", "harness/litellm/env.py",
                         "harness/engine/package.json", "harness/engine/server.mjs", "compose/images/Dockerfile",
                         "compose/images/install_deps.py", "compose/Dockerfile.mock", "host-ca.crt"}
        assert (ctx / "host-ca.crt").read_text() == ca.read_text()
        assert ctx.is_relative_to(tmp_path / "cache")           # staged in the cache, not in the repository
    finally:
        shutil.rmtree(ctx)
    # no CA bundle on the machine: an empty file (the Dockerfile then keeps Debian's)
    monkeypatch.setattr(images, "host_ca_bundle", lambda: None)
    ctx = rig.builder.stage_context()
    try:
        assert (ctx / "host-ca.crt").read_bytes() == b""
    finally:
        shutil.rmtree(ctx)


def test_the_host_ca_bundle_is_the_one_pip_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pip_ca, ssl_ca = tmp_path / "pip.pem", tmp_path / "ssl.pem"
    pip_ca.write_text("pip")
    ssl_ca.write_text("ssl")
    monkeypatch.setenv("PIP_CERT", str(pip_ca))
    monkeypatch.setenv("SSL_CERT_FILE", str(ssl_ca))
    assert host_ca_bundle() == pip_ca
    monkeypatch.setenv("PIP_CERT", str(tmp_path / "missing.pem"))
    assert host_ca_bundle() == ssl_ca


# -- compose/images/Dockerfile against what is staged and built ------------------------------------
def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _stages(dockerfile: Path) -> dict[str, list[tuple[str, str]]]:
    """Each `FROM … AS name` stage's instructions (its FROM first)."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for instruction, args in _instructions(dockerfile):
        if instruction == "FROM":
            found = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", args, re.IGNORECASE)
            assert found, f"{dockerfile.name}: FROM {args} names no stage"
            current = stages.setdefault(found.group(2), [])
        current.append((instruction, args))
    return stages


def _copy_sources(instructions: list[tuple[str, str]]) -> list[str]:
    sources: list[str] = []
    for instruction, args in instructions:
        if instruction in ("COPY", "ADD"):
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            sources += words[:-1]
    return sources


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Any:
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    ctx = ImageBuilder(FakeDocker(), console=Console(file=io.StringIO())).stage_context()
    yield ctx
    shutil.rmtree(ctx, ignore_errors=True)
    mp.undo()


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, MOCK_DOCKERFILE], ids=lambda p: p.name)
def test_every_copy_source_is_in_the_staged_context(dockerfile: Path, staged: Path) -> None:
    sources = _copy_sources(_instructions(dockerfile))
    assert sources, f"{dockerfile.name} copies nothing?"
    missing = [src for src in sources if not list(staged.glob(src.rstrip("/")))]
    assert missing == [], f"{dockerfile.name}: COPY sources missing from the staged context"
    for src in sources:
        if src.endswith("/"):
            assert (staged / src).is_dir(), src
    assert (staged / dockerfile.relative_to(REPO_ROOT)).is_file()      # the Dockerfile itself is staged


def test_every_image_built_here_is_a_stage_of_the_dockerfile() -> None:
    stages = _stages(DOCKERFILE)
    assert set(LOCAL_ROLES.values()) | {"litellm"} <= set(stages)
    # the first stage starts from the debootstrap base; every other one from an earlier stage
    names = list(stages)
    base_arg = [args for instruction, args in _instructions(DOCKERFILE) if instruction == "ARG"][0]
    assert base_arg == f"BASE_IMAGE={BASE_IMAGE}"
    assert stages[names[0]][0][1].split()[0] == "${BASE_IMAGE}"
    for i, name in enumerate(names[1:], start=1):
        parent = stages[name][0][1].split()[0]
        assert parent in names[:i], (name, parent)
    assert ("ARG", "LITELLM_VERSION") in stages["litellm"]


def _harness_imports(path: Path) -> set[str]:
    """The harness.* modules a file imports (anywhere in it), as dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "harness"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "harness":
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}    # `from pkg import module`
    return found


def _module_file(name: str) -> Path | None:
    base = REPO_ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_the_litellm_stage_copies_every_module_its_entry_point_imports() -> None:
    stage = _stages(DOCKERFILE)
    copied = [REPO_ROOT / src.rstrip("/") for name in ("os", "common", "litellm")
              for src in _copy_sources(stage.get(name, []))]
    todo, closure = ["harness.litellm.container"], set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):          # the packages on the way are imported too
            path = _module_file(".".join(parts[:i]))
            if path is not None and path not in closure:
                closure.add(path)
                todo += sorted(_harness_imports(path))
    assert REPO_ROOT / "harness" / "litellm" / "env.py" in closure
    uncopied = sorted(str(p.relative_to(REPO_ROOT)) for p in closure
                      if not any(p == c or p.is_relative_to(c) for c in copied))
    assert uncopied == [], "the litellm stage would miss these modules"
