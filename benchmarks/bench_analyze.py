"""Analyzer speed on a big synthetic run: 1 M sample rows, 200 k requests and a matching ledger.

    .venv/bin/python benchmarks/bench_analyze.py [--samples 1000000] [--requests 200000] [--keep DIR]

Goal: the whole `harness analyze` (load, checks, verdict, three PNGs, report) in ≤ 5 s on a 2-core machine.
Prints the time of each stage, with and without the pictures, wall and CPU time (on a machine shared with
other work the wall time stretches; the CPU time is what an idle machine's wall time would be, roughly).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from harness.run import runfolder as rf

T0 = 1_700_000_000.0
P_IN, P_OUT = 1e-6, 1e-5
BUDGET = 2.0


def generate(root: Path, n_samples: int, n_requests: int, n_users: int = 1000, seed: int = 7) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    rounds = max(1, n_samples // n_users)
    load_s = rounds * 0.95                       # sampling at 1 Hz; the last 5 % of rounds are the drain
    users = np.array([f"eu-{i:05d}" for i in range(n_users)], dtype=object)

    # requests: 80 % streams, 20 % of streams cut after one chunk, 3 % budget rejections, 1 % upstream errors
    t_start = np.sort(rng.uniform(0, load_s, n_requests))
    dur = rng.uniform(0.2, 2.0, n_requests)
    u = rng.integers(0, n_users, n_requests)
    stream = rng.random(n_requests) < 0.8
    disc = stream & (rng.random(n_requests) < 0.2)
    kind = rng.random(n_requests)
    budget_rej = ~disc & (kind < 0.03)
    upstream = ~disc & ~budget_rej & (kind < 0.04)
    status = np.where(budget_rej, 400, np.where(upstream, 503, 200))
    error_text = np.full(n_requests, "", dtype=object)
    counters = rng.uniform(0.5, 2.5, budget_rej.sum())
    error_text[budget_rej] = [
        f'{{"error": {{"message": "Budget has been exceeded! EndUser={users[x]} Current cost: {float(c)!r}, '
        f'Max budget: {BUDGET}", "type": "budget_exceeded"}}}}' for x, c in zip(u[budget_rej], counters, strict=True)]
    error_text[upstream] = "litellm.ServiceUnavailableError: OpenAIException - injected by the mock"
    error_type = np.where(status == 200, np.where(disc, "client_disconnect", ""), "http_error")
    rid = np.array([f"r{i}" for i in range(n_requests)], dtype=object)
    requests = pd.DataFrame({
        "t_start": T0 + t_start, "t_end": T0 + t_start + dur, "end_user": users[u], "replica": u % 2,
        "stream": stream.astype(int), "disconnect_after": np.where(disc, "1", ""), "disconnected": disc.astype(int),
        "chunks": np.where(disc, 1, np.where(stream, 20, 0)), "status": status, "error_type": error_type,
        "error_text": error_text, "latency_s": dur, "attempt": 0, "request_id": rid})

    # ledger: every forwarded request (not the budget rejections)
    fw = ~budget_rej
    n_fw = int(fw.sum())
    prompt = rng.integers(20, 120, n_fw)
    promised = rng.integers(50, 256, n_fw)
    outcome = np.where(disc[fw], "client_gone", np.where(upstream[fw], "fault:mock_error", "ok"))
    delivered = np.where(disc[fw], 10, np.where(upstream[fw], 0, promised))
    ledger = pd.DataFrame({
        "t_start": T0 + t_start[fw] + 0.01, "t_end": T0 + t_start[fw] + dur[fw] - 0.01, "request_id": rid[fw],
        "model": "mock-gpt", "end_user": users[u[fw]], "stream": stream[fw].astype(int), "prompt_tokens": prompt,
        "completion_tokens_promised": promised, "completion_tokens_delivered": delivered, "chunks_sent": 20,
        "outcome": outcome})

    # samples: counter = true spend (billed part) + leaked reservations of cut streams; DB lags 10 s
    ok = outcome == "ok"
    cost = np.where(ok, prompt * P_IN + promised * P_OUT, 0.0)
    leak = np.where(outcome == "client_gone", 0.003, 0.0)
    ev = pd.DataFrame({"u": u[fw], "t": ledger["t_end"].to_numpy(), "cost": cost, "leak": leak})
    ev = ev.sort_values("t")
    ev["cum"] = ev.groupby("u")["cost"].cumsum()
    ev["cum_leak"] = ev.groupby("u")["leak"].cumsum()
    grid_t = T0 + np.arange(1, rounds + 1, dtype=float)
    samples = pd.DataFrame({"t": np.repeat(grid_t, n_users) + np.tile(np.arange(n_users) * 1e-4, rounds),
                            "sample": np.repeat(np.arange(rounds), n_users),
                            "u": np.tile(np.arange(n_users), rounds)})
    samples = samples.sort_values("t")
    m = pd.merge_asof(samples, ev[["t", "u", "cum", "cum_leak"]], on="t", by="u", direction="backward")
    lag = samples.assign(t=samples["t"] - 10.0)
    mdb = pd.merge_asof(lag, ev[["t", "u", "cum"]], on="t", by="u", direction="backward")
    counter = (m["cum"].fillna(0) + m["cum_leak"].fillna(0)).to_numpy()
    out = pd.DataFrame({"t": m["t"], "sample": m["sample"], "end_user": users[m["u"].to_numpy()],
                        "redis_counter": np.where(counter > 0, counter, np.nan),
                        "counter_ttl": np.where(counter > 0, 55.0, np.nan),
                        "db_spend": mdb["cum"].fillna(0).to_numpy()})

    root.mkdir(parents=True, exist_ok=True)
    scenario = {"name": "bench", "expect": "reproduced", "litellm": "1.84.0", "replicas": 2,
                "pricing": {"input_cost_per_token": P_IN, "output_cost_per_token": P_OUT},
                "budget": {"default_max_budget": BUDGET}, "end_users": {"count": n_users},
                "mix": {"max_tokens": {"choices": [256]}}}
    (root / rf.SCENARIO_FILE).write_text(yaml.safe_dump(scenario, sort_keys=False))
    meta = {"run_id": root.name, "scenario": "bench", "litellm_version": "1.84.0", "replicas": 2, "backend": "local",
            "seed": seed, "harness_version": "bench", "t_load_start": T0, "t_load_end": T0 + load_s,
            "t_drain_end": T0 + rounds, "command": "benchmarks/bench_analyze.py"}
    (root / rf.META_FILE).write_text(json.dumps(meta))
    requests.to_csv(root / rf.REQUESTS_FILE, index=False, columns=list(rf.REQUESTS_COLUMNS))
    ledger.to_csv(root / rf.LEDGER_FILE, index=False, columns=list(rf.LEDGER_COLUMNS))
    out.to_csv(root / rf.SAMPLES_FILE, index=False, columns=list(rf.SAMPLES_COLUMNS))
    pd.DataFrame([
        {"t": T0 + 100, "event": "start", "window": 0, "kind": "redis_latency", "target": "redis", "params": "{}",
         "note": ""},
        {"t": T0 + 160, "event": "end", "window": 0, "kind": "redis_latency", "target": "redis", "params": "{}",
         "note": ""},
        {"t": T0 + 400, "event": "start", "window": 1, "kind": "kill_replica", "target": "1", "params": "{}",
         "note": ""},
        {"t": T0 + 430, "event": "end", "window": 1, "kind": "kill_replica", "target": "1", "params": "{}",
         "note": "replica 1 restarted"},
    ]).to_csv(root / rf.FAULTS_FILE, index=False)
    return {"samples": len(out), "requests": len(requests), "ledger": len(ledger),
            "MB": sum(p.stat().st_size for p in root.iterdir()) / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="write the run folder here and keep it")
    args = ap.parse_args()

    tmp = None
    root = args.keep
    if root is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-analyze-"))
        root = tmp / "run"
    t = time.perf_counter()
    sizes = generate(root, args.samples, args.requests)
    print(f"generated {sizes['samples']:,} sample rows, {sizes['requests']:,} requests, {sizes['ledger']:,} ledger "
          f"rows ({sizes['MB']:.0f} MB) in {time.perf_counter() - t:.1f} s → {root}")

    t_imp = time.perf_counter()
    from harness.analyze import analyze
    from harness.util.fmt import money

    import_s = time.perf_counter() - t_imp
    try:
        for plots in (False, True):
            for i in range(args.repeat):
                t, c = time.perf_counter(), time.process_time()
                res = analyze(root, plots=plots)
                wall, cpu = time.perf_counter() - t, time.process_time() - c
                stages = ", ".join(f"{k} {v:.2f}" for k, v in res.timings.items() if k != "total")
                print(f"{'with' if plots else 'without'} pictures, run {i + 1}: {wall:.2f} s wall, {cpu:.2f} s CPU "
                      f"({stages})")
        s = res.summary
        print(f"import of harness.analyze: {import_s:.2f} s (plus matplotlib on first plot)")
        print(f"verdict {res.verdict}: phantom {s.phantoms}, leaked users {s.leaked_users}, "
              f"leaked {money(s.leaked_usd)}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
