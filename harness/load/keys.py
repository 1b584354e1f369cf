"""The run's virtual keys and teams: names, the key values, and which end user uses which key.

A scenario with `budget.keys` makes the budgets stage create `count` virtual keys (`/key/generate`) and
`budget.teams` teams (`/team/new`); the load then sends each request with one of those keys instead of the
master key. Everything here is a pure function of (run tag, seed, index), so the budgets stage, every Locust
process (on any host) and the analyzer agree without sharing a file:

- the key value is a secret and is never written anywhere: `virtual_key(master_key, salt, i)` derives it
  (`sk-` + HMAC-SHA256(master key, "harness-key:<salt>:<i>")) in each process that already holds the master
  key; the budgets stage hands it to `/key/generate` as a custom key (`key`, LiteLLM accepts a value starting
  with `sk-` unless `disable_custom_api_keys` is set);
- what the run folder holds is the key's *hashed token* (`hashed_token`: sha256 hex of the key, what LiteLLM
  stores in `LiteLLM_VerificationToken.token` and names its counter `spend:key:<hashed token>` by), its index
  and alias;
- `key_index_for(end_user, seed, count)`: every request of one end user uses the same key (a stable hash of
  seed and end-user id; about `end users / count` each), so a key's true spend is the ledger of its end users.
"""

from __future__ import annotations

import hashlib
import hmac


def run_tag(run_id: str) -> str:
    """A short tag of the run (team ids and key aliases carry it: a reused stack keeps earlier runs' rows)."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:8]


def team_id(tag: str, index: int) -> str:
    return f"team-{tag}-{index}"


def key_alias(tag: str, index: int) -> str:
    return f"key-{tag}-{index}"


def virtual_key(master_key: str, salt: str, index: int) -> str:
    """The value of virtual key `index` of the run `salt` (a secret: never write it)."""
    digest = hmac.new(master_key.encode(), f"harness-key:{salt}:{index}".encode(), hashlib.sha256).hexdigest()
    return "sk-" + digest[:48]


def hashed_token(key: str) -> str:
    """LiteLLM's hash_token: sha256 hex of the key (`LiteLLM_VerificationToken.token`, `spend:key:<this>`)."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_index_for(end_user: str, seed: int, count: int) -> int:
    """The key index every request of `end_user` uses (stable across processes and hosts)."""
    if count <= 0:
        raise ValueError("no keys")
    h = hashlib.sha256(f"{seed}:{end_user}".encode()).digest()
    return int.from_bytes(h[:8], "big") % count


def team_index_for(key_index: int, teams: int) -> int | None:
    """The team of key `key_index` when keys are spread over `teams` teams (round robin); None without teams."""
    return None if teams <= 0 else key_index % teams
