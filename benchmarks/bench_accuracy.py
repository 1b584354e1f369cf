"""The verdict's measured accuracy: detection rate on a broken release, false-alarm rate on a fixed one, on a quiet
machine and with one core kept busy by a CPU hog.

    .venv/bin/python benchmarks/bench_accuracy.py [--repeats 3] [--broken 1.84.0] [--fixed 1.108.7]
        [--scenarios phantom-budget.yaml,phantom-budget-rare-walkaway.yaml] [--conditions quiet,hog]
        [--out results/accuracy-<stamp>] [--resume DIR]

Every run is a real `harness run SCENARIO --litellm V --exclusive --json` (a fresh stack each time, waiting
until no other harness stack is on the machine), one at a time, interleaved (repeat → condition → scenario →
version) so a drift of the machine spreads over every cell. `hog`: one `python -c "while True: pass"` process,
started before the stack and killed after the run — a process outside the run, so the run's contention figures
see it as foreign CPU (half the machine on 2 cores).

Results are appended to accuracy.csv as each run finishes (`--resume DIR` skips the runs already there); the
end prints the table and writes accuracy.md. Detection rate = REPRODUCED ÷ runs on the broken release; false
alarms = REPRODUCED ÷ runs on the fixed one; INCONCLUSIVE is neither (counted on its own). The harness commit
is recorded: the thresholds are the analyzer's documented derivation at that commit (harness/analyze/README.md),
the same for every run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import _path  # noqa: F401 - repository root on sys.path

from harness.paths import REPO_ROOT, results_dir

COLUMNS = ("repeat", "condition", "scenario", "version", "role", "verdict", "expected", "exit_code", "starved",
           "foreign_cpu_share", "phantoms", "leaked_usd", "orphaned_users", "requests", "wall_s", "run_dir")
HARNESS = REPO_ROOT / ".venv" / "bin" / "harness"


def start_hog() -> subprocess.Popen[bytes]:
    """One core busy: a process of its own session (not a descendant of the run, so it counts as foreign)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)


def run_one(scenario: Path, version: str, run_dir: Path, log: Path) -> tuple[int, dict[str, object]]:
    cmd = [str(HARNESS), "run", str(scenario), "--litellm", version, "--exclusive", "--out", str(run_dir), "--json"]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=REPO_ROOT, start_new_session=True)
        try:
            out, _ = proc.communicate()
        except BaseException:
            os.killpg(proc.pid, signal.SIGINT)      # the harness drains, writes its report and stops its stack
            proc.wait(timeout=180)
            raise
    try:
        doc = json.loads(out or b"{}")
    except ValueError:
        doc = {}
    return proc.returncode, doc


def read_done(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def append(path: Path, row: dict[str, object]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})


def table(rows: list[dict[str, str]]) -> str:
    """Markdown: per role × scenario × condition — runs, REPRODUCED, NOT REPRODUCED, INCONCLUSIVE, starved, rate."""
    lines = ["| release | scenario | condition | runs | REPRODUCED | NOT REPRODUCED | INCONCLUSIVE | judged starved "
             "| foreign CPU (mean) | rate |", "|---|---|---|---|---|---|---|---|---|---|"]
    keys: list[tuple[str, str, str, str]] = []
    for r in rows:
        k = (r["role"], r["version"], r["scenario"], r["condition"])
        if k not in keys:
            keys.append(k)
    keys.sort(key=lambda k: (k[0] != "broken", k[2], k[3]))
    for role, version, scenario, condition in keys:
        cell = [r for r in rows if (r["role"], r["version"], r["scenario"], r["condition"]) ==
                (role, version, scenario, condition)]
        n = len(cell)
        rep = sum(r["verdict"] == "REPRODUCED" for r in cell)
        clean = sum(r["verdict"] == "NOT REPRODUCED" for r in cell)
        inc = n - rep - clean
        starved = sum(r["starved"] == "True" for r in cell)
        shares = [float(r["foreign_cpu_share"]) for r in cell if r["foreign_cpu_share"]]
        mean = f"{100 * sum(shares) / len(shares):.0f} %" if shares else "–"
        rate = (f"detection {rep}/{n}" if role == "broken" else f"false alarms {rep}/{n}")
        lines.append(f"| {role} {version} | {scenario} | {condition} | {n} | {rep} | {clean} | {inc} | {starved} | "
                     f"{mean} | {rate} |")
    broken = [r for r in rows if r["role"] == "broken"]
    fixed = [r for r in rows if r["role"] == "fixed"]
    det = sum(r["verdict"] == "REPRODUCED" for r in broken)
    fa = sum(r["verdict"] == "REPRODUCED" for r in fixed)
    lines += ["", f"Detection rate (broken): {det}/{len(broken)}"
              + (f" = {100 * det / len(broken):.0f} %" if broken else "")
              + f"; false-alarm rate (fixed): {fa}/{len(fixed)}"
              + (f" = {100 * fa / len(fixed):.0f} %" if fixed else "")]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--broken", default="1.84.0")
    ap.add_argument("--fixed", default="1.108.7")
    ap.add_argument("--scenarios", default="phantom-budget.yaml,phantom-budget-rare-walkaway.yaml")
    ap.add_argument("--conditions", default="quiet,hog")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--resume", type=Path)
    args = ap.parse_args()
    out = args.resume or args.out or results_dir() / time.strftime("accuracy-%Y%m%d-%H%M%S", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "accuracy.csv"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                            text=True).stdout.strip()
    (out / "accuracy.json").write_text(json.dumps({"argv": sys.argv, "harness_commit": commit,
                                                   "t_started": time.time()}, indent=2))
    done = {(r["repeat"], r["condition"], r["scenario"], r["version"]) for r in read_done(csv_path)}
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    plan = [(k, c, s, role, v) for k in range(1, args.repeats + 1) for c in conditions for s in scenarios
            for role, v in (("broken", args.broken), ("fixed", args.fixed))]
    print(f"accuracy: {len(plan)} run(s) → {out} (harness {commit})", flush=True)
    for i, (k, condition, scen, role, version) in enumerate(plan, 1):
        name = Path(scen).stem
        if (str(k), condition, name, version) in done:
            continue
        run_dir = out / "runs" / f"{name}-{version}-{condition}-r{k}"
        hog = start_hog() if condition == "hog" else None
        t0 = time.monotonic()
        try:
            code, doc = run_one(REPO_ROOT / "scenarios" / scen, version, run_dir, out / f"{run_dir.name}.log")
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
        summary = doc.get("summary") if isinstance(doc.get("summary"), dict) else {}
        assert isinstance(summary, dict)
        row: dict[str, object] = {
            "repeat": k, "condition": condition, "scenario": name, "version": version, "role": role,
            "verdict": summary.get("verdict") or f"no verdict (exit {code})", "expected": summary.get("expected"),
            "exit_code": code, "starved": summary.get("starved"), "foreign_cpu_share": summary.get("foreign_cpu_share"),
            "phantoms": summary.get("phantoms"), "leaked_usd": summary.get("leaked_usd"),
            "orphaned_users": summary.get("orphaned_users"), "requests": summary.get("requests"),
            "wall_s": round(time.monotonic() - t0, 1), "run_dir": str(run_dir.relative_to(out))}
        append(csv_path, row)
        print(f"[{i}/{len(plan)}] {name} × {version} ({condition}, r{k}): {row['verdict']}, starved "
              f"{row['starved']}, foreign CPU {row['foreign_cpu_share']}, phantoms {row['phantoms']}, leaked "
              f"{row['leaked_usd']}, {row['wall_s']} s", flush=True)
    text = table(read_done(csv_path))
    (out / "accuracy.md").write_text(f"# Accuracy benchmark {out.name} (harness {commit})\n\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
