"""Which images a Compose stack runs — the official ones, or images built here from packages — and building them.

Policy (HARNESS_IMAGES):
  official  the upstream images (ghcr.io/berriai/litellm:<version>, postgres, redis, Toxiproxy) and the harness
            image built from compose/Dockerfile.mock; a failed pull is an error
  local     images built from packages by this module (compose/images/Dockerfile): no registry needed
  auto      (default) official when every official image is present or can be pulled; otherwise local, saying
            so — unless HARNESS_LITELLM_IMAGE names the LiteLLM image: a user who named an image gets it or an error

Local images: the base is a Debian root filesystem made by `debootstrap` and brought in with `docker import`
(`litellm-harness/base:bookworm`), because no registry may be reachable; every other image is a stage of
compose/images/Dockerfile built with the classic builder through the Docker SDK (host network, so apt, PyPI
and npm are reached the way the machine reaches them). Docker's layer cache makes a rebuild of an unchanged
stage a cache hit; the LiteLLM stage copies only harness/litellm, harness/util and the engine, so it is rebuilt
only when those change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.errors import HarnessError
from harness.paths import REPO_ROOT, cache_dir
from harness.stack.compose.render import COMPOSE_DIR, litellm_image

IMAGES_VAR = "HARNESS_IMAGES"
POLICIES = ("auto", "official", "local")
DOCKERFILE = COMPOSE_DIR / "images" / "Dockerfile"
MOCK_DOCKERFILE = COMPOSE_DIR / "Dockerfile.mock"
BASE_IMAGE = "litellm-harness/base:bookworm"
DEBIAN_SUITE = "bookworm"
MIRROR_VAR = "HARNESS_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
LOCAL_TAG = "local"
HARNESS_OFFICIAL_TAG = "litellm-harness/harness:official"   # the mock/Locust image built FROM python:3.11-slim

# The official images the compose file names by default (its ${..._IMAGE:-...} defaults say the same).
OFFICIAL = {
    "POSTGRES_IMAGE": "postgres:16.4-alpine",
    "REDIS_IMAGE": "redis:7.4.1-alpine",
    "TOXIPROXY_IMAGE": "ghcr.io/shopify/toxiproxy:2.12.0",
}
OFFICIAL_MIGRATE_ENTRYPOINT = "python litellm/proxy/prisma_migration.py"   # as LiteLLM's Helm migrations job
LOCAL_MIGRATE_ENTRYPOINT = "python -m harness.litellm.container migrate"
# (image variable, Dockerfile stage) of the local images besides LiteLLM's
LOCAL_ROLES = {"HARNESS_IMAGE": "runtime", "POSTGRES_IMAGE": "postgres", "REDIS_IMAGE": "redis",
               "TOXIPROXY_IMAGE": "toxiproxy"}


def policy() -> str:
    value = (os.environ.get(IMAGES_VAR) or "auto").strip().lower()
    if value not in POLICIES:
        raise HarnessError(f"{IMAGES_VAR}={value!r} is not understood", f"use one of: {', '.join(POLICIES)}")
    return value


def local_tag(stage: str, version: str | None = None) -> str:
    return f"litellm-harness/{stage}:{version}-{LOCAL_TAG}" if version else f"litellm-harness/{stage}:{LOCAL_TAG}"


@dataclass
class ImageChoice:
    """The images of one stack: the compose env variables that name them, and how they were chosen."""

    kind: str                          # "official" | "local"
    env: dict[str, str]
    reason: str = ""
    ids: dict[str, str] = field(default_factory=dict)    # image -> id (sha256:…), filled once they exist

    def describe(self) -> str:
        return f"{self.kind} images" + (f" ({self.reason})" if self.reason else "")


def official_choice(version: str) -> ImageChoice:
    env = {"LITELLM_IMAGE": litellm_image(version), "HARNESS_IMAGE": HARNESS_OFFICIAL_TAG,
           "LITELLM_MIGRATE_ENTRYPOINT": OFFICIAL_MIGRATE_ENTRYPOINT, **OFFICIAL}
    return ImageChoice("official", env)


def local_choice(version: str, reason: str = "") -> ImageChoice:
    env = {var: local_tag(stage) for var, stage in LOCAL_ROLES.items()}
    env.update(LITELLM_IMAGE=local_tag("litellm", version), LITELLM_MIGRATE_ENTRYPOINT=LOCAL_MIGRATE_ENTRYPOINT)
    return ImageChoice("local", env, reason)


class ImageBuilder:
    """Builds (or finds) the images of a choice through the Docker SDK client `client`."""

    def __init__(self, client: Any, console: Console | None = None, log_path: Path | None = None,
                 runner: Callable[..., subprocess.CompletedProcess[str]] | None = None) -> None:
        self.client = client
        self.console = console or Console(stderr=True)
        self.log_path = log_path or cache_dir() / "images" / "build.log"
        self._run = runner or subprocess.run
        self.timings: dict[str, float] = {}

    def _say(self, text: str) -> None:
        self.console.print(f"[dim]images:[/] {text}", highlight=False)

    def _log(self, text: str) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log:
            log.write(text if text.endswith("\n") else text + "\n")

    # -- what exists ---------------------------------------------------------------------------------
    def image_id(self, ref: str) -> str | None:
        import docker

        try:
            return str(self.client.images.get(ref).id)
        except docker.errors.ImageNotFound:
            return None

    def pull(self, ref: str) -> tuple[bool, str]:
        """Pull `ref`; (True, "") or (False, the engine's reason in one line)."""
        import docker

        try:
            self.client.images.pull(ref)
            return True, ""
        except docker.errors.APIError as exc:
            reason = str(getattr(exc, "explanation", "") or exc).splitlines()[0]
            return False, reason[:200]

    # -- choosing -----------------------------------------------------------------------------------
    def choose(self, version: str) -> ImageChoice:
        """The images for LiteLLM `version` under the HARNESS_IMAGES policy (auto: pull, else local)."""
        mode = policy()
        if mode == "local":
            return local_choice(version, f"{IMAGES_VAR}=local")
        official = official_choice(version)
        missing = [ref for var, ref in official.env.items()
                   if var.endswith("_IMAGE") and var != "HARNESS_IMAGE" and self.image_id(ref) is None]
        for ref in missing:
            ok, reason = self.pull(ref)
            if ok:
                continue
            if mode == "official" or os.environ.get("HARNESS_LITELLM_IMAGE"):
                raise HarnessError(f"cannot pull {ref}: {reason}",
                                   f"check the tag and the registry, or set {IMAGES_VAR}=local to build images here")
            self._say(f"[yellow]cannot pull {ref} ({reason}): using images built here from packages "
                      f"({IMAGES_VAR}=local)[/]")
            return local_choice(version, f"pull of {ref} failed: {reason}")
        return official

    def ensure(self, choice: ImageChoice, version: str) -> ImageChoice:
        """Build what the choice needs and is missing (local: everything, cached by Docker's layers)."""
        if choice.kind == "local":
            self.ensure_base()
            context = self.stage_context()
            try:
                for var, stage in LOCAL_ROLES.items():
                    self.build(context, DOCKERFILE, stage, choice.env[var])
                self.build(context, DOCKERFILE, "litellm", choice.env["LITELLM_IMAGE"],
                           {"LITELLM_VERSION": version})
            finally:
                shutil.rmtree(context, ignore_errors=True)
        else:   # the harness image (mock, Locust) is always this checkout's: a cached rebuild is seconds
            context = self.stage_context()
            try:
                self.build(context, MOCK_DOCKERFILE, None, choice.env["HARNESS_IMAGE"], network="bridge")
            finally:
                shutil.rmtree(context, ignore_errors=True)
        choice.ids = {ref: self.image_id(ref) or "?" for var, ref in choice.env.items() if var.endswith("_IMAGE")}
        return choice

    # -- building -----------------------------------------------------------------------------------
    def ensure_base(self) -> str:
        """The Debian base image: debootstrap into a folder, then `docker import` (once; cached by tag)."""
        found = self.image_id(BASE_IMAGE)
        if found:
            return found
        debootstrap = shutil.which("debootstrap") or ("/usr/sbin/debootstrap"
                                                      if Path("/usr/sbin/debootstrap").exists() else None)
        if debootstrap is None:
            raise HarnessError("debootstrap is not installed (it makes the base image when no registry is reachable)",
                               "run `make setup-compose` (apt-get install debootstrap), or set HARNESS_IMAGES=official")
        if os.geteuid() != 0:
            raise HarnessError("building the base image needs root (debootstrap)",
                               "run `harness images build` as root once, or set HARNESS_IMAGES=official")
        mirror = os.environ.get(MIRROR_VAR) or DEFAULT_MIRROR
        workdir = Path(tempfile.mkdtemp(prefix="rootfs-", dir=_images_cache()))
        rootfs = workdir / DEBIAN_SUITE
        self._say(f"making the Debian {DEBIAN_SUITE} base with debootstrap from {mirror} (about a minute) …")
        t0 = time.monotonic()
        try:
            self._check([debootstrap, "--variant=minbase", DEBIAN_SUITE, str(rootfs), mirror], "debootstrap")
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)  # noqa: S607
            assert tar.stdout is not None
            # the CLI, not the SDK: `docker import -` streams the tar from a pipe
            result = subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout,  # noqa: S607
                                    capture_output=True, text=True, check=False)
            tar.stdout.close()
            tar.wait()
            if result.returncode != 0 or tar.returncode != 0:
                raise HarnessError(f"docker import of the base image failed: {result.stderr.strip()[:200]}",
                                   "is the Docker engine running?")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        self.timings["base_s"] = round(time.monotonic() - t0, 1)
        self._say(f"base image {BASE_IMAGE} made in {self.timings['base_s']:.0f} s")
        return self.image_id(BASE_IMAGE) or "?"

    def _check(self, cmd: list[str], what: str) -> None:
        self._log(f"$ {' '.join(cmd)}")
        result = self._run(cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        self._log(result.stdout + result.stderr)
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise HarnessError(f"{what} failed: {last[0][:200]}", f"full log: {self.log_path}")

    def stage_context(self) -> Path:
        """A build context with only what the Dockerfiles copy (no node_modules, no caches, no results)."""
        ctx = Path(tempfile.mkdtemp(prefix="context-", dir=_images_cache()))
        shutil.copy2(REPO_ROOT / "pyproject.toml", ctx / "pyproject.toml")
        if (REPO_ROOT / "README.md").exists():
            shutil.copy2(REPO_ROOT / "README.md", ctx / "README.md")
        shutil.copytree(REPO_ROOT / "harness", ctx / "harness",
                        ignore=shutil.ignore_patterns("node_modules", "__pycache__", "*.pyc"))
        shutil.copytree(COMPOSE_DIR / "images", ctx / "compose" / "images")
        shutil.copy2(MOCK_DOCKERFILE, ctx / "compose" / MOCK_DOCKERFILE.name)
        ca = host_ca_bundle()
        (ctx / "host-ca.crt").write_bytes(ca.read_bytes() if ca is not None else b"")
        return ctx

    def build(self, context: Path, dockerfile: Path, target: str | None, tag: str,
              buildargs: dict[str, str] | None = None, network: str = "host") -> str:
        """One `docker build` (classic builder, cached layers); the image id. Its output goes to the log."""
        import docker

        rel = dockerfile.relative_to(REPO_ROOT)
        what = f"{tag} ({rel}{':' + target if target else ''})"
        had = self.image_id(tag)
        t0 = time.monotonic()
        self._log(f"=== build {what} {json.dumps(buildargs or {})}")
        try:
            stream = self.client.api.build(path=str(context), dockerfile=str(rel), tag=tag, target=target,
                                           buildargs=buildargs or {}, network_mode=network, rm=True,
                                           forcerm=True, decode=True, timeout=3600)
            last_lines: list[str] = []
            for chunk in stream:
                text = str(chunk.get("stream") or chunk.get("status") or "")
                if text:
                    self._log(text.rstrip("\n"))
                    last_lines = (last_lines + [text.strip()])[-8:]
                if "error" in chunk:
                    detail = str(chunk.get("error", "")).strip()
                    self._log(f"ERROR {detail}")
                    raise HarnessError(f"building {what} failed: {detail[:300]}", f"full log: {self.log_path}")
        except docker.errors.APIError as exc:
            raise HarnessError(f"building {what} failed: {exc}", f"full log: {self.log_path}") from None
        seconds = time.monotonic() - t0
        self.timings[tag] = round(seconds, 1)
        image_id = self.image_id(tag) or "?"
        if had != image_id:
            self._say(f"built {what} in {seconds:.0f} s")
        return image_id


def host_ca_bundle() -> Path | None:
    """The machine's CA bundle (the one its pip/TLS use), for builds that reach the package registries."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _images_cache() -> Path:
    path = cache_dir() / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path
