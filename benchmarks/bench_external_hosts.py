"""The same scenario twice, side by side: a plain local run, and through the external backend with the stack on one
network-namespace test host, Locust's master on a second and its workers on N more (issue 15's done-when).

    .venv/bin/python benchmarks/bench_external_hosts.py [--scenario scenarios/phantom-budget.yaml] [--workers 2]
        [--skip-local]

Steps: `harness run SCENARIO` (local, the reference) → NetHosts(2 + N) → in h0 `harness up --scenario SCENARIO
--proxy-host <h0>` → `harness status --format target` + a `load:` section (master on h1, one worker per further
host) → in h0 `harness run SCENARIO --backend external --target …` → `harness down`. Prints each run's verdict,
phantom rejections, leaked $, requests and req/s, and the load average before each; the run folders stay in
results/. Root only (namespaces). One experiment at a time: nothing else may run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _path  # noqa: F401
import yaml

from harness.util.nethosts import NetHosts

REPO = Path(__file__).resolve().parents[1]


def harness(prefix: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    print("$", " ".join([*prefix, "harness", *args]), flush=True)
    proc = subprocess.run([*prefix, sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "COLUMNS": "200"})
    tail = [line for line in proc.stderr.splitlines() if line.startswith(("REPRODUCED", "NOT REPRODUCED",
                                                                          "INCONCLUSIVE", "error", "run folder"))]
    print("\n".join(f"  {line}" for line in tail), f"  (exit {proc.returncode})", sep="\n", flush=True)
    return proc


def figures(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((run_dir / "verdict.json").read_text())["summary"]
    return {"verdict": summary.get("verdict"), "phantoms": summary.get("phantoms"),
            "leaked": round(summary.get("leaked_usd") or 0.0, 2), "requests": summary.get("requests"),
            "req_per_s": summary.get("req_per_s"), "starved": summary.get("starved"), "run": run_dir.name}


def run_folder(proc: subprocess.CompletedProcess[str]) -> Path:
    for line in proc.stderr.splitlines():
        if line.startswith("run folder: "):
            return Path(line.removeprefix("run folder: ").strip())
    raise SystemExit(f"no run folder in the output:\n{proc.stderr[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="scenarios/phantom-budget.yaml")
    parser.add_argument("--workers", type=int, default=2, help="worker hosts (one Locust worker each)")
    parser.add_argument("--skip-local", action="store_true", help="only the run across hosts")
    args = parser.parse_args()
    rows: list[tuple[str, float, dict[str, Any]]] = []
    if not args.skip_local:
        load = os.getloadavg()[0]
        proc = harness([], "run", args.scenario)
        rows.append(("local (Locust on this host)", load, figures(run_folder(proc))))
    name = f"hosts-bench-{int(time.time())}"
    with NetHosts(2 + args.workers) as hosts:
        h0, h1, *workers = hosts.hosts
        try:
            up = harness(h0.exec_prefix, "up", "--scenario", args.scenario, "--name", name, "--proxy-host", h0.address)
            if up.returncode != 0:
                print(up.stderr[-3000:])
                return 1
            target = yaml.safe_load(harness([], "status", "--name", name, "--format", "target").stdout)
            target["load"] = {"master_host": h1.address, "master_command": h1.exec_prefix,
                              "workers": [{"command": w.exec_prefix} for w in workers]}
            target_file = REPO / "results" / f"{name}-target.yaml"
            target_file.write_text(yaml.safe_dump(target))
            print(f"target file: {target_file}\n{yaml.safe_dump(target)}", flush=True)
            load = os.getloadavg()[0]
            proc = harness(h0.exec_prefix, "run", args.scenario, "--backend", "external", "--target", str(target_file))
            rows.append((f"external, master on {h1.name}, {len(workers)} worker host(s)", load,
                         figures(run_folder(proc))))
        finally:
            harness([], "down", "--name", name)
    print("\n| run | load avg before | verdict | phantom rejections | leaked $ | requests | req/s | starved | folder |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, load, f in rows:
        print(f"| {label} | {load:.2f} | {f['verdict']} | {f['phantoms']} | {f['leaked']} | {f['requests']} | "
              f"{f['req_per_s']} | {f['starved']} | {f['run']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
