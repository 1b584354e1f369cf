"""The backend registry: name → how to make a stack of it, and how to find the stacks it left.

Every backend with state on this machine keeps it in `.state/<stack-name>/` and marks the folder with its own
state file (local: state.json; compose: compose.json or compose.procs.json). `list_stacks()` finds every
stack of every backend from those marks, so `harness status` and `harness down --all` see a crashed run's
`run-*` stack whatever its backend. Making a stack imports its backend lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.paths import state_root
from harness.stack import compose as compose_backend
from harness.stack.base import Stack, state_dir_of
from harness.stack.external.stack import STATE_FILE as EXTERNAL_STATE_FILE
from harness.util.procs import STATE_FILE as LOCAL_STATE_FILE


def _local(name: str) -> Stack:
    from harness.stack.local import LocalStack

    return LocalStack(name=name)


def _compose(name: str) -> Stack:
    from harness.stack.compose import ComposeStack

    return ComposeStack(name=name)


def _external(name: str) -> Stack:
    """Without its target file (given by `harness run --target`): the state a run left, for status and down."""
    from harness.stack.external import ExternalStack

    return ExternalStack(name)


@dataclass(frozen=True)
class Backend:
    name: str
    make: Callable[[str], Stack]
    state_files: tuple[str, ...]    # files that mark this backend's state folder; none: it keeps no local state


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("local", _local, (LOCAL_STATE_FILE,)),
    Backend("compose", _compose, (compose_backend.STATE_FILE, compose_backend.TRACKED_FILE)),
    Backend("external", _external, (EXTERNAL_STATE_FILE,)),
)}


def make_stack(backend: str, name: str) -> Stack:
    """The stack named `name` of the given backend (not started: call up())."""
    found = BACKENDS.get(backend)
    if found is None:
        raise HarnessError(f"unknown backend {backend!r}", f"choose one of: {', '.join(BACKENDS)}")
    return found.make(name)


def backends_of(name: str) -> list[str]:
    """The backends that have state for a stack named `name` (usually one)."""
    folder = state_dir_of(name)
    return [b.name for b in BACKENDS.values() if any((folder / f).is_file() for f in b.state_files)]


def find_stacks(name: str) -> list[Stack]:
    """The stacks named `name` that left state, of any backend."""
    return [make_stack(backend, name) for backend in backends_of(name)]


def list_stacks() -> list[Stack]:
    """Every stack with state on this machine, of every backend, by name."""
    root = state_root()
    if not root.is_dir():
        return []
    return [stack for folder in sorted(root.iterdir()) if folder.is_dir() for stack in find_stacks(folder.name)]
