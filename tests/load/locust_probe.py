"""Run by tests/load/test_locust_args.py in a subprocess (importing Locust gevent-patches the interpreter, which
must not happen inside pytest): the locustfile's option through Locust's own parser, `init` hook, RPC message
encoding and custom-option bookkeeping. Prints one JSON object.

    python -m tests.load.locust_probe <config.json path> <stages config.json path>
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from typing import Any


def main(path: str, stages_path: str) -> dict[str, Any]:
    import locust  # noqa: F401 - gevent's monkey-patching first, as in `locust`
    from locust import events
    from locust.argument_parser import default_args_dict, parse_options
    from locust.env import Environment
    from locust.rpc import Message

    from harness.load import locustfile as lf
    from harness.load.config import ENV_VAR

    out: dict[str, Any] = {"imported_without_config": lf._loaded is None}
    base = ["-f", str(lf.__file__), "--headless"]

    # the option, from the command line and from its environment fallback
    out["from_option"] = parse_options([*base, "--harness-config", path]).harness_config
    os.environ[ENV_VAR] = stages_path
    out["from_env"] = parse_options(base).harness_config
    del os.environ[ENV_VAR]
    out["default"] = parse_options(base).harness_config
    out["custom_option"] = "harness_config" not in default_args_dict()

    # a master / stand-alone Locust: `init` reads the file and replaces the option by the JSON it forwards
    opts = parse_options([*base, "--harness-config", path])
    env = Environment(user_classes=[lf.ChatUser], parsed_options=opts, events=events)
    runner = env.create_local_runner()
    events.init.fire(environment=env, runner=runner, web_ui=None)
    out["forwarded"] = opts.harness_config
    out["shape_without_stages"] = env.shape_class is not None

    # what a worker gets: the spawn message through Locust's RPC encoding, the custom options applied the way
    # WorkerRunner applies them (options Locust itself does not define)
    sent = Message("spawn", {"parsed_options": vars(opts)}, "worker-1").serialize()
    received = Message.unserialize(sent).data["parsed_options"]
    worker_opts = parse_options(["-f", str(lf.__file__), "--worker"])
    out["worker_own"] = worker_opts.harness_config
    defaults = default_args_dict()
    vars(worker_opts).update({k: v for k, v in received.items() if k not in defaults})
    lf._loaded = None
    worker_env = Environment(user_classes=[lf.ChatUser], parsed_options=worker_opts, events=events)
    out["worker_config"] = asdict(lf.config(worker_env))

    # with stages, init installs the LoadTestShape, bound to the runner
    opts = parse_options([*base, "--harness-config", stages_path])
    env = Environment(user_classes=[lf.ChatUser], parsed_options=opts, events=events)
    runner = env.create_local_runner()
    events.init.fire(environment=env, runner=runner, web_ui=None)
    shape = env.shape_class
    out["shape"] = type(shape).__name__ if shape is not None else None
    out["shape_runner"] = shape is not None and shape.runner is runner
    out["shape_ticks"] = [shape.cfg.stage_at(t) for t in (0.0, 2.5, 10.0)] if isinstance(shape, lf.StagesShape) \
        else None

    # a master with no config at all fails its start (Locust exits 1 when an init listener raises)
    env = Environment(user_classes=[lf.ChatUser], parsed_options=parse_options(base), events=events)
    lf._loaded = None
    try:
        lf._on_init(env, env.create_local_runner())
        out["no_config_error"] = None
    except RuntimeError as exc:
        out["no_config_error"] = str(exc)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
