"""The scenario schema reference (Markdown), generated from the pydantic models in harness/scenario/model.py.

`harness catalog --schema-only` writes it into scenarios/README.md between `<!-- schema:start -->` and
`<!-- schema:end -->`.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from harness.scenario.model import Scenario
from harness.util.fmt import md_cell


# -- the schema reference, from the pydantic model ----------------------------------------------------
def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a).replace("'", '"') for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join(_type_name(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    return getattr(annotation, "__name__", str(annotation))


def _constraints(info: FieldInfo) -> str:
    out = []
    for meta in info.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("pattern", "~")):
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sign} {value}")
    return ", ".join(out)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return ""
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "see below"
    return "`" + json.dumps(value, default=str) + "`"


# Meanings of fields whose definition in harness/scenario/model.py carries no comment (a comment there wins).
# tests/test_catalog.py fails when a field has neither, so the reference cannot silently miss one.
FIELD_NOTES: dict[str, str] = {
    "Scenario.name": "run ids and the report use it",
    "Scenario.description": "one line for the report and the catalog list",
    "Scenario.expect": "the outcome expected on every version not in `expect_by_version`",
    "Scenario.backend": "where the stack runs (`harness run --backend` overrides)",
    "Scenario.litellm": "the LiteLLM version `harness run` uses (`--litellm` overrides)",
    "Scenario.replicas": "LiteLLM proxy processes; requests go round-robin over them",
    "Scenario.model": "the model name clients send (the mock serves it)",
    "Scenario.litellm_settings": "proxy config settings",
    "Scenario.pricing": "the mock model's prices (they size LiteLLM's reservations)",
    "Scenario.budget": "end-user budgets",
    "Scenario.end_users": "the end-user ids the load sends (header `x-litellm-end-user-id` and body `user`)",
    "Scenario.load": "the Locust load shape",
    "Scenario.mix": "what each request looks like and how its client behaves",
    "Scenario.mock": "the mock upstream's answers",
    "Scenario.faults": "fault windows (the nemesis), relative to the load start",
    "Scenario.sampling": "the Redis-counter / DB-spend sampler",
    "Scenario.seed": "seeds the load's random choices",
    "Pricing.input_cost_per_token": "$ per prompt token",
    "Pricing.output_cost_per_token": "$ per completion token (× 16384 when no max_tokens is sent)",
    "Budget.per_user": "end user id → its own max budget ($), created with /customer/new",
    "EndUsers.count": "how many end-user ids",
    "EndUsers.prefix": "ids are `<prefix><zero-padded index>`",
    "EndUsers.pick": "uniform over all ids, or a hot set getting `hot_share` of the requests",
    "Stage.duration_s": "seconds of this stage",
    "Stage.users": "Locust users during the stage (0: a pause)",
    "Stage.spawn_rate": "users started per second",
    "Load.spawn_rate": "users started per second",
    "Load.duration_s": "seconds of load (ignored when `stages` is set)",
    "MaxTokens.weights": "relative weights of `choices`; null: equal",
    "Retries.max": "retries of a failed request",
    "Retries.on_status": "HTTP statuses that are retried",
    "Retries.backoff_s": "first backoff, doubled per retry",
    "Mix.stream_share": "share of requests that stream",
    "Mix.client_timeout_s": "the client gives up after this long (recorded as a timeout)",
    "Mix.max_tokens": "max_tokens each request sends",
    "Mix.prompt_chars": "prompt length range in characters (~4 per token)",
    "Mix.retries": "client retries",
    "Mix.first_requests": "the first requests of each Locust user, planned apart from the mix",
    "FirstRequests.count": "how many of each Locust user's first requests (0: off)",
    "FirstRequests.stream": "whether they stream",
    "MockSettings.chunks": "content chunks per streamed answer",
    "MockSettings.chunk_delay_s": "delay between chunks",
    "MockSettings.first_token_delay_s": "delay before the first chunk of every stream (slow model)",
    "MockSettings.default_completion_tokens": "completion tokens when the request sends no max_tokens",
    "FaultWindow.kind": "what fails (kinds and their params: the comments of FaultKind in harness/scenario/model.py, "
                        "execution: harness/nemesis/schedule.py)",
    "FaultWindow.params": "the kind's parameters",
    "Sampling.interval_s": "seconds between samples",
}


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """Field comments from the source: `name: ... # comment`, or `# comment` lines right above the field."""
    import inspect
    import re

    try:
        source = inspect.getsource(model)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    above: list[str] = []
    for line in source.splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        m = re.match(r"^\s{4}([a-z_][a-z0-9_]*)\s*:", line)
        if m:
            trailing = line.split("#", 1)[1].strip() if "#" in line and "'#'" not in line else ""
            out[m.group(1)] = " ".join([*above, trailing]).strip()
        above = []
    return out


def _models(root: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    """(dotted path, model) of the root and every nested model, depth first."""
    found: list[tuple[str, type[BaseModel]]] = [("", root)]
    for name, info in root.model_fields.items():
        for arg in _walk(info.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                for path, model in _models(arg):
                    found.append((f"{name}.{path}".rstrip("."), model))
    return found


def _walk(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    return [annotation, *[a for arg in args for a in _walk(arg)]]


def schema_markdown(root: type[BaseModel] = Scenario) -> str:
    """One table per model (the scenario and each nested section): field, type, default, meaning."""
    parts = ["Generated from `harness/scenario/model.py` by `harness catalog --schema-only` (do not edit by hand).", ""]
    seen: set[type[BaseModel]] = set()
    for path, model in _models(root):
        title = "top level" if not path else f"`{path}` ({model.__name__})"
        if model in seen and path:
            parts += [f"#### {title}", "", f"Same fields as {model.__name__} above.", ""]
            continue
        seen.add(model)
        doc = " ".join((model.__doc__ or "").split()) if model.__doc__ and model is not root else ""
        parts += [f"#### {title}", ""]
        if doc and not doc.startswith(("A base class", "Usage docs")):
            parts += [doc, ""]
        parts += ["| field | type | default | meaning |", "|---|---|---|---|"]
        notes = _comments(model)
        for name, info in model.model_fields.items():
            kind = _type_name(info.annotation)
            limits = _constraints(info)
            if limits:
                kind += f" ({limits})"
            meaning = notes.get(name) or FIELD_NOTES.get(f"{model.__name__}.{name}", "")
            parts.append(f"| `{name}` | {kind} | {_default(info)} | {md_cell(meaning)} |")
        parts.append("")
    parts += ["#### fault kinds (`faults[].kind`)", "", "| kind | params / meaning |", "|---|---|"]
    parts += [f"| `{k}` | {md_cell(v)} |" for k, v in fault_kinds().items()]
    return "\n".join(parts)


def fault_kinds() -> dict[str, str]:
    """FaultKind's values with their comments in harness/scenario/model.py."""
    import inspect
    import re

    from harness.scenario import model as scenario_module

    out: dict[str, str] = {}
    source = inspect.getsource(scenario_module)
    block = source[source.index("FaultKind = Literal["):]
    block = block[:block.index("]\n")]
    for line in block.splitlines()[1:]:
        m = re.match(r'^\s*"([a-z_]+)",\s*(?:#\s*(.*))?$', line)
        if m:
            out[m.group(1)] = (m.group(2) or "").strip()
    return out
