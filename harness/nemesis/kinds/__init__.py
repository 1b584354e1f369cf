"""The fault-kind families; importing this package registers every kind (harness/nemesis/registry.py).

A new family module is one more import here; a new kind in a family is one class plus one `register(...)` line.
"""

from harness.nemesis.kinds import mock, postgres, redis, redis_data, replica

__all__ = ["mock", "postgres", "redis", "redis_data", "replica"]
