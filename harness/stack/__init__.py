"""The stack: N LiteLLM proxy replicas, Redis, Postgres and the mock LLM, behind one interface."""

from harness.stack.base import Endpoints, Stack, StackSpec

__all__ = ["Endpoints", "Stack", "StackSpec"]
