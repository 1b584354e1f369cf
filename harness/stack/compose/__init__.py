"""The Compose backend: the local backend's topology as containers (`render`: the files; `stack`: the lifecycle;
`load`: Locust master + workers as the project's `load` profile).

Per stack, in `.state/<name>/`: compose.env (0600, the master key and every `${VAR}`), compose.replicas.yml,
compose.json (project, ports, versions, timings, endpoints without the secret; marks the folder as a Compose
stack's), compose.procs.json (local processes the run tracked, e.g. Locust), master-key (0600, for Locust).
"""

from harness.stack.compose.render import (
    COMPOSE_DIR,
    COMPOSE_FILE,
    TOXIPROXY_REDIS_INNER_PORT,
    ComposePorts,
    effective_model,
    interpolate,
    litellm_image,
    project_name,
    render_proxy,
    replicas_override,
    write_env_file,
)
from harness.stack.compose.stack import STATE_FILE, TRACKED_FILE, ComposeStack

__all__ = ["COMPOSE_DIR", "COMPOSE_FILE", "STATE_FILE", "TOXIPROXY_REDIS_INNER_PORT", "TRACKED_FILE", "ComposePorts",
           "ComposeStack", "effective_model", "interpolate", "litellm_image", "project_name", "render_proxy",
           "replicas_override", "write_env_file"]
