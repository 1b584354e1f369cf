"""Pick a stack backend by name (`harness run --backend local|compose`)."""

from __future__ import annotations

from harness.errors import HarnessError
from harness.stack.base import Stack

BACKENDS = ("local", "compose")


def make_stack(backend: str, name: str) -> Stack:
    """The stack named `name` of the given backend. Imports lazily: each backend needs only its own tools."""
    if backend == "local":
        from harness.stack.local import LocalStack

        return LocalStack(name=name)
    if backend == "compose":
        from harness.stack.compose import ComposeStack

        return ComposeStack(name=name)
    if backend == "external":
        raise HarnessError("the external backend is not implemented yet", "use --backend local or --backend compose")
    raise HarnessError(f"unknown backend {backend!r}", f"choose one of: {', '.join(BACKENDS)}")
