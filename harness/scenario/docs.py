"""The scenario schema reference (Markdown), generated from the pydantic models in harness/scenario/model.py
(each field's `Field(description=...)`) and from the fault-kind registry (each kind's params model and
docstring, harness/nemesis/kinds/).

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

from harness.nemesis.registry import fault_kinds
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


def _field_rows(model: type[BaseModel]) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        kind = _type_name(info.annotation)
        limits = _constraints(info)
        if limits:
            kind += f" ({limits})"
        rows.append(f"| `{name}` | {kind} | {_default(info)} | {md_cell(info.description or '')} |")
    return rows


def schema_markdown(root: type[BaseModel] = Scenario) -> str:
    """One table per model (the scenario and each nested section), then the fault kinds and their params."""
    parts = ["Generated from the field descriptions in `harness/scenario/model.py` and the fault-kind registry "
             "(`harness/nemesis/kinds/`) by `harness catalog --schema-only` (do not edit by hand).", ""]
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
        parts += ["| field | type | default | meaning |", "|---|---|---|---|", *_field_rows(model), ""]
    return "\n".join([*parts, *fault_kinds_markdown()])


_NEEDS = {"mock": "the mock's control API"}


def fault_kinds_markdown() -> list[str]:
    """The fault-kind table (every registered kind: what it hits, its shape, its meaning), then each kind's
    params table."""
    parts = ["#### fault kinds (`faults[].kind`)", "",
             "A window's `params` are checked against its kind when the scenario loads (an unknown key is an "
             "error). `needs`: the stack capability the backend must have.", "",
             "| kind | needs | shape | params | meaning |", "|---|---|---|---|---|"]
    kinds = fault_kinds()
    for spec in kinds:
        needs = spec.needs.__name__ if spec.needs is not None else _NEEDS.get(spec.on, "")
        shape = "one-shot (at `at_s`)" if spec.one_shot else "window (`at_s` … `at_s + duration_s`)"
        params = ", ".join(f"`{name}`" for name in spec.params.model_fields) or "none"
        parts.append(f"| `{spec.name}` | {md_cell(needs)} | {shape} | {params} | {md_cell(spec.description)} |")
    parts.append("")
    for spec in kinds:
        if not spec.params.model_fields:
            continue
        parts += [f"##### `{spec.name}` params", "", "| param | type | default | meaning |", "|---|---|---|---|",
                  *_field_rows(spec.params), ""]
    return parts
