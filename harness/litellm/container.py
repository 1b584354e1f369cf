"""The entry point of the locally built LiteLLM image (compose/images/Dockerfile, stage `litellm`).

    python -m harness.litellm.container build VERSION      (image build: the cached environment, as `harness env build`)
    python -m harness.litellm.container proxy [ARGS...]    (the image's entrypoint: `litellm ARGS...`)
    python -m harness.litellm.container migrate            (the `migrate` service: the version's SQL migrations)

`proxy` runs the environment's `litellm` with the same offline environment the local backend gives it
(`LiteLLMEnv.proxy_env`: Prisma engine stand-in, no telemetry) plus what the container was given
(DATABASE_URL, LITELLM_MASTER_KEY): so the official image's command line (`--config … --port 4000
--num_workers 1`) works unchanged. `migrate` applies the version's migrations with psql and ON_ERROR_STOP, and
exits non-zero on the first failure (the official image's equivalent is `litellm/proxy/prisma_migration.py`).
The version comes from HARNESS_LITELLM_VERSION, set when the image was built.
"""

from __future__ import annotations

import os
import sys

from harness.errors import HarnessError
from harness.litellm import env as litellm_env

VERSION_VAR = "HARNESS_LITELLM_VERSION"


def _version() -> str:
    version = os.environ.get(VERSION_VAR, "")
    if not version:
        raise HarnessError(f"{VERSION_VAR} is not set", "build the image with --build-arg LITELLM_VERSION=<version>")
    return version


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        raise HarnessError("DATABASE_URL is not set", "give the container the proxy's database URL")
    return url


def _ready_env() -> litellm_env.LiteLLMEnv:
    env = litellm_env.LiteLLMEnv(version=_version(), root=litellm_env.envs_dir() / _version())
    if not env.is_ready():
        raise HarnessError(f"the image has no ready LiteLLM {env.version} environment in {env.root}",
                           "rebuild the image (`harness images build`)")
    return env


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("", [])
    try:
        if command == "build" and len(rest) == 1:
            built = litellm_env.ensure(rest[0])
            print(f"LiteLLM {built.version}: ready in {built.root}")
            return 0
        if command == "proxy":
            env = _ready_env()
            proxy_env = env.proxy_env(_database_url())
            os.execve(str(env.litellm_bin), [str(env.litellm_bin), *rest], proxy_env)
        if command == "migrate" and not rest:
            env = _ready_env()
            litellm_env.apply_migrations(env, _database_url())
            print(f"LiteLLM {env.version}: {len(env.migrations())} migrations applied")
            return 0
    except HarnessError as exc:
        print(f"error: {exc.problem} — {exc.fix}" if exc.fix else f"error: {exc.problem}", file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
