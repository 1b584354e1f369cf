"""The schema reference: generated from field descriptions and the fault-kind registry, and current in the repo."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from harness.nemesis.registry import fault_kinds
from harness.scenario import docs
from harness.scenario.model import Scenario


def test_schema_reference_covers_every_field() -> None:
    text = docs.schema_markdown()
    for path, model in docs._models(Scenario):
        for name in model.model_fields:
            assert f"| `{name}` |" in text, f"{path}.{name} missing"
        assert issubclass(model, BaseModel)
    assert "| `name` | str (~ ^[A-Za-z0-9][A-Za-z0-9._-]*$) | **required** | run ids and the report use it |" in text
    assert "`mix.first_requests` (FirstRequests)" in text


def test_every_schema_field_has_a_description() -> None:
    for _, model in docs._models(Scenario):
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name}: add Field(description=...) in scenario/model.py"


def test_fault_kind_table_lists_every_registered_kind_with_its_params() -> None:
    text = docs.schema_markdown()
    for spec in fault_kinds():
        assert f"| `{spec.name}` |" in text
        if spec.params.model_fields:
            section = text[text.index(f"##### `{spec.name}` params"):]
            for name, info in spec.params.model_fields.items():
                assert info.description and f"| `{name}` |" in section
    assert "| `latency_ms` | float (≥ 0) | `0.0` | delay added to every chunk (ms) |" in text
    assert "| `redis_down` | RedisFaults | window" in text


def test_readme_in_repo_schema_is_current() -> None:
    """scenarios/README.md's schema section is what the models generate (refresh: harness catalog --schema-only)."""
    text = Path("scenarios/README.md").read_text()
    start, end = "<!-- schema:start -->", "<!-- schema:end -->"
    assert start in text and end in text
    assert text[text.index(start) + len(start):text.index(end)].strip() == docs.schema_markdown().strip()
