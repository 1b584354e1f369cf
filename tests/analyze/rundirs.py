"""Build small synthetic run folders (the run-folder contract of harness/run/runfolder.py) for analyzer tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml

from harness.run import runfolder as rf

T0 = 1_700_000_000.0
P_IN, P_OUT = 1e-6, 1e-5


def cost(prompt: int = 100, completion: int = 200) -> float:
    return prompt * P_IN + completion * P_OUT


def base_scenario(**overrides: Any) -> dict[str, Any]:
    scen: dict[str, Any] = {
        "name": "synthetic", "expect": "reproduced", "litellm": "1.84.0", "replicas": 2,
        "pricing": {"input_cost_per_token": P_IN, "output_cost_per_token": P_OUT},
        "budget": {"default_max_budget": 1.0},
        "end_users": {"count": 10},
        "mix": {"max_tokens": {"choices": [256]}},
        "drain_s": 25,
    }
    scen.update(overrides)
    return scen


class RunBuilder:
    """Collects rows, then writes scenario.yaml, meta.json and the CSVs into `root`."""

    def __init__(self, root: Path, scenario: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
                 load_s: float = 60.0, drain_s: float = 25.0) -> None:
        self.root = root
        self.scenario = scenario if scenario is not None else base_scenario()
        self.meta: dict[str, Any] = {
            "run_id": root.name, "scenario": self.scenario.get("name"), "litellm_version": "1.84.0",
            "replicas": 2, "backend": "local", "seed": 42, "harness_version": "0.1.0",
            "redis_version": "7.2.4", "postgres_version": "16.2", "t_load_start": T0,
            "t_load_end": T0 + load_s, "t_drain_end": T0 + load_s + drain_s,
            "command": "harness run scenarios/synthetic.yaml --litellm 1.84.0",
        }
        if meta is not None:
            self.meta.update(meta)
        self.requests: list[dict[str, Any]] = []
        self.ledger: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self._n = 0

    # -- rows -----------------------------------------------------------------------------------------
    def request(self, t: float, end_user: str, status: int = 200, error_text: str = "", dur: float = 0.5,
                stream: int = 0, disconnected: int = 0, error_type: str | None = None,
                request_id: str | None = None) -> str:
        self._n += 1
        rid = request_id or f"r{self._n}"
        if error_type is None:
            error_type = "" if 200 <= status < 300 and not disconnected else (
                "connection" if status == 0 else "http_error")
        self.requests.append({
            "t_start": T0 + t, "t_end": T0 + t + dur, "end_user": end_user, "replica": self._n % 2,
            "stream": stream, "disconnect_after": 1 if disconnected else None, "disconnected": disconnected,
            "chunks": 1 if disconnected else (20 if stream else 0), "status": status, "error_type": error_type,
            "error_text": error_text, "latency_s": dur, "attempt": 0, "request_id": rid})
        return rid

    def call(self, t: float, end_user: str, prompt: int = 100, promised: int = 200, delivered: int | None = None,
             outcome: str = "ok", dur: float = 0.5, request_id: str = "", stream: int = 0) -> None:
        self.ledger.append({
            "t_start": T0 + t, "t_end": T0 + t + dur, "request_id": request_id, "model": "mock-gpt",
            "end_user": end_user, "stream": stream, "prompt_tokens": prompt,
            "completion_tokens_promised": promised,
            "completion_tokens_delivered": promised if delivered is None else delivered,
            "chunks_sent": 20, "outcome": outcome})

    def ok(self, t: float, end_user: str, prompt: int = 100, completion: int = 200, dur: float = 0.5) -> str:
        """A successful request and its upstream call."""
        rid = self.request(t, end_user, dur=dur)
        self.call(t + 0.01, end_user, prompt=prompt, promised=completion, dur=dur - 0.02, request_id=rid)
        return rid

    def sample(self, t: float, end_user: str, counter: float | None, db: float | None, sample: int | None = None,
               ttl: float | None = None) -> None:
        self.samples.append({"t": T0 + t, "sample": int(t) if sample is None else sample, "end_user": end_user,
                             "redis_counter": counter, "counter_ttl": ttl if ttl is not None else (
                                 55.0 if counter is not None else None), "db_spend": db})

    def fault(self, t: float, event: str, window: int, kind: str, target: str = "", note: str = "") -> None:
        self.faults.append({"t": T0 + t, "event": event, "window": window, "kind": kind, "target": target,
                            "params": "{}", "note": note})

    # -- output ---------------------------------------------------------------------------------------
    def write(self, skip: tuple[str, ...] = ()) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        if rf.SCENARIO_FILE not in skip:
            (self.root / rf.SCENARIO_FILE).write_text(yaml.safe_dump(self.scenario, sort_keys=False))
        if rf.META_FILE not in skip:
            (self.root / rf.META_FILE).write_text(json.dumps(self.meta, indent=2))
        for name, cols, rows in ((rf.REQUESTS_FILE, rf.REQUESTS_COLUMNS, self.requests),
                                 (rf.LEDGER_FILE, rf.LEDGER_COLUMNS, self.ledger),
                                 (rf.SAMPLES_FILE, rf.SAMPLES_COLUMNS, self.samples),
                                 (rf.FAULTS_FILE, rf.FAULTS_COLUMNS, self.faults)):
            if name in skip:
                continue
            write_csv(self.root / name, cols, rows)
        return self.root


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for row in rows:
            w.writerow(["" if row.get(c) is None else (repr(float(row[c])) if isinstance(row[c], float) else row[c])
                        for c in columns])


def budget_text(user: str, counter: float, budget: float) -> str:
    return f"Budget has been exceeded! EndUser={user} Current cost: {counter}, Max budget: {budget}"


def read_time_text(user: str, spend: float, budget: float) -> str:
    return f"ExceededBudget: End User={user} over budget. Spend={spend}, Budget={budget}"


def steady_users(b: RunBuilder, users: list[str], n_each: int = 10, start: float = 1.0, step: float = 5.0,
                 samples_until: float = 80.0, sample_every: float = 5.0) -> dict[str, float]:
    """Each user makes n_each successful calls; samples show counter == DB == true spend (DB lagging 10 s).

    Returns each user's final true spend.
    """
    spend: dict[str, list[tuple[float, float]]] = {u: [] for u in users}
    for i in range(n_each):
        for j, u in enumerate(users):
            t = start + i * step + j * 0.1
            b.ok(t, u)
            spend[u].append((t + 0.5, cost()))
    k = 0
    t = sample_every
    while t <= samples_until:
        for u in users:
            true = sum(c for te, c in spend[u] if te <= t)
            db_true = sum(c for te, c in spend[u] if te <= t - 10)
            b.sample(t, u, counter=true if true > 0 else None, db=db_true, sample=k)
        k += 1
        t += sample_every
    return {u: sum(c for _, c in spend[u]) for u in users}
