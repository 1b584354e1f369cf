"""The external backend: drive a deployment the harness did not start (a target file). See stack.py."""

from harness.stack.external.stack import STATE_FILE, ExternalStack, with_target
from harness.stack.external.target import Target, load_target

__all__ = ["STATE_FILE", "ExternalStack", "Target", "load_target", "with_target"]
