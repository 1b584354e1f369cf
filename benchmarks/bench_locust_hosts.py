"""The load generator's own scaling across hosts: Locust master + 1 worker host vs master + 3 worker hosts.

    sudo .venv/bin/python benchmarks/bench_locust_hosts.py [--users 64] [--duration 30] [--repeat 3]
        [--chunk-delay 0] [--markdown docs/locust-hosts.md]

Hosts are network namespaces on one bridge (harness.util.nethosts, root only): the mock LLM in host0 (it
answers /chat/completions itself, so no proxy limits the rate), the master in host1, workers in host2…host4.
(a) master + 1 worker host, (b) master + 3 worker hosts (one worker each), the same users and duration, run
one after the other `--repeat` times, through harness.load.distributed (rows reach the master as messages).

Measured over a steady window (from 1 s after the first rows reached the master to 0.5 s before the run
time ends, so start-up imports and the final drain are left out): requests/s = requests.csv rows whose t_end
falls in the window / its length; CPU seconds (user + system, psutil) of each worker, the master and the mock
in that window. The ratios (b)/(a) are printed side by side. Namespaces share this machine's cores: on a
2-core machine three workers, the master and the mock compete for the same CPUs, so (b)/(a) says how the
generator behaves under that sharing, not what three real machines would give. The load average is printed
first; a busy machine makes every figure here unreliable.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import _path  # noqa: F401
import httpx
import psutil

from harness.load.config import LoadConfig
from harness.load.distributed import DistributedLocust, run_locust_distributed
from harness.load.launch import LOCUST_LOG, LiveStats
from harness.run.runfolder import REQUESTS_FILE
from harness.stack.external.target import Load, Workers
from harness.util.nethosts import NetHosts
from harness.util.procs import wait_until

ROOT = Path(__file__).resolve().parent.parent
MOCK_PORT = 8000
WARMUP_S = 1.0
TAIL_S = 0.5


@dataclass
class Result:
    label: str
    worker_hosts: int
    users: int
    window_s: float
    requests: int
    errors: int
    worker_cpu: list[float]
    master_cpu: float
    mock_cpu: float

    @property
    def rps(self) -> float:
        return self.requests / self.window_s if self.window_s > 0 else 0.0

    @property
    def rps_per_worker_cpu(self) -> float:
        cpu = sum(self.worker_cpu)
        return self.requests / cpu if cpu > 0 else 0.0


def machine_load() -> str:
    """`uptime`'s line (or /proc/loadavg) and a warning when the machine is busy."""
    try:
        line = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()  # noqa: S607
    except (OSError, subprocess.CalledProcessError):
        line = "load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    cores = os.cpu_count() or 1
    one = os.getloadavg()[0]
    note = f"{cores} cores"
    if one > 0.5 * cores:
        note += f"; BUSY: 1-minute load {one:.2f} > half the cores — the figures below are unreliable"
    return f"{line} ({note})"


def _cpu(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return float("nan")


def run_one(hosts: NetHosts, mock_url: str, mock_pid: int, worker_hosts: int, args: argparse.Namespace,
            work: Path, label: str, port: int) -> Result:
    run = work / label
    master = hosts[1]
    load = Load(master_host=master.address, master_port=port, master_command=master.exec_prefix,
                workers=[Workers(command=hosts[2 + i].exec_prefix, count=1) for i in range(worker_hosts)])
    cfg = LoadConfig(run_dir=str(run), proxy_urls=[mock_url], master_key_file=None,
                     end_users=[f"eu-{i}" for i in range(100)], stream_share=0.8, disconnect_share=0.2,
                     disconnect_after_chunks=(1, 3), client_timeout_s=10, prompt_chars=(40, 400), wait_s=(0.0, 0.0),
                     users=args.users, spawn_rate=max(args.users, 1), duration_s=args.duration, stop_timeout_s=5)
    handle = run_locust_distributed(cfg, run, load)
    try:
        live = LiveStats(run)
        wait_until(lambda: live.poll()["requests"] > 0, deadline_s=90, what=f"{label}: first rows",
                   still_alive=lambda: handle.poll() is None,
                   on_fail=lambda: (run / LOCUST_LOG).read_text(errors="replace")[-2000:])
        first = time.time()
        time.sleep(WARMUP_S)                    # measurement timing, not synchronisation
        w0 = time.time()
        pids = handle.tracked()
        cpu0 = {name: _cpu(pid) for name, pid in pids.items()} | {"mock": _cpu(mock_pid)}
        end = first + args.duration - TAIL_S - 1.0       # the first rows came ~1 s after the run time began
        time.sleep(max(0.5, end - time.time()))
        w1 = time.time()
        cpu1 = {name: _cpu(pid) for name, pid in pids.items()} | {"mock": _cpu(mock_pid)}
        code = handle.wait(timeout=args.duration + 120)
    finally:
        handle.stop()
    if code != 0:
        print(f"  {label}: Locust master exit {code} (see {run / LOCUST_LOG})", file=sys.stderr)
    cpu = {name: cpu1[name] - cpu0[name] for name in cpu0}
    requests = errors = 0
    with open(run / REQUESTS_FILE, newline="") as fh:
        for row in csv.DictReader(fh):
            if w0 <= float(row["t_end"]) < w1:
                requests += 1
                errors += bool(row["error_type"])
    return Result(label=label, worker_hosts=worker_hosts, users=args.users, window_s=w1 - w0, requests=requests,
                  errors=errors, worker_cpu=[cpu[n] for n in _worker_names(handle)], master_cpu=cpu["locust"],
                  mock_cpu=cpu["mock"])


def _worker_names(handle: DistributedLocust) -> list[str]:
    return [n for n in handle.tracked() if n != handle.name]


def _row(r: Result) -> list[str]:
    return [str(r.worker_hosts), str(r.users), f"{r.rps:.0f}", f"{r.rps_per_worker_cpu:.0f}",
            " / ".join(f"{c:.2f}" for c in r.worker_cpu), f"{r.master_cpu:.2f}", f"{r.mock_cpu:.2f}",
            f"{r.window_s:.1f}", str(r.errors)]


HEADER = ["worker hosts", "users", "req/s", "req per worker CPU-s", "CPU s per worker", "CPU s master",
          "CPU s mock", "window s", "errors"]


def _median(results: list[Result], worker_hosts: int) -> Result:
    rs = [r for r in results if r.worker_hosts == worker_hosts]
    mid = sorted(rs, key=lambda r: r.rps)[len(rs) // 2]
    return mid


def report(results: list[Result], load_line: str, args: argparse.Namespace) -> str:
    a, b = _median(results, 1), _median(results, 3)
    ratio = [("req/s", a.rps, b.rps), ("worker CPU s (sum)", sum(a.worker_cpu), sum(b.worker_cpu)),
             ("master CPU s", a.master_cpu, b.master_cpu), ("mock CPU s", a.mock_cpu, b.mock_cpu),
             ("req per worker CPU-s", a.rps_per_worker_cpu, b.rps_per_worker_cpu)]
    lines = [f"Load generator scaling across hosts (network namespaces), {args.users} users, {args.duration:g} s "
             f"runs, {args.repeat} repeat(s), mock chunk delay {args.chunk_delay:g} s", "",
             f"Machine before the runs: `{load_line}`", "",
             "| " + " | ".join(["run", *HEADER]) + " |", "|" + "---|" * (len(HEADER) + 1)]
    for r in results:
        lines.append("| " + " | ".join([r.label, *_row(r)]) + " |")
    lines += ["", "Median run of each (by req/s), (b) 3 worker hosts over (a) 1 worker host:", "",
              "| figure | (a) 1 worker host | (b) 3 worker hosts | (b)/(a) |", "|---|---|---|---|"]
    for name, va, vb in ratio:
        lines.append(f"| {name} | {va:.2f} | {vb:.2f} | {vb / va if va else float('nan'):.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per run (Locust -t)")
    parser.add_argument("--repeat", type=int, default=1, help="(a) and (b) this many times each, interleaved")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="the mock's pause between stream chunks")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the markdown report here")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (printed)")
    args = parser.parse_args()

    load_line = machine_load()
    print(f"machine: {load_line}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-locust-hosts-"))
    results: list[Result] = []
    try:
        with NetHosts(5) as hosts:
            host0 = hosts[0]
            mock_cfg = f'{{"stream": {{"chunks": 8, "chunk_delay_s": {args.chunk_delay}}}}}'
            with open(work / "mock.log", "wb") as log:
                mock = subprocess.Popen(  # noqa: S603
                    [*host0.exec_prefix, sys.executable, "-m", "harness.mockllm", "--host", host0.address,
                     "--port", str(MOCK_PORT), "--ledger", str(work / "ledger.csv"), "--events",
                     str(work / "events.csv"), "--config", mock_cfg], stdout=log, stderr=subprocess.STDOUT,
                    cwd=ROOT, start_new_session=True)
            url = f"http://{host0.address}:{MOCK_PORT}"
            try:
                wait_until(lambda: _up(url), deadline_s=30, what="mock", still_alive=lambda: mock.poll() is None)
                port = 5557
                for i in range(args.repeat):
                    for worker_hosts, name in ((1, "a"), (3, "b")):
                        label = f"{name}{i + 1}"
                        print(f"run {label}: master + {worker_hosts} worker host(s), {args.users} users, "
                              f"{args.duration:g} s ...", flush=True)
                        res = run_one(hosts, url, mock.pid, worker_hosts, args, work, label, port)
                        port += 1
                        results.append(res)
                        print("  " + "  ".join(f"{h}={v}" for h, v in zip(HEADER, _row(res), strict=True)),
                              flush=True)
            finally:
                mock.terminate()
                mock.wait(timeout=15)
    finally:
        if args.keep:
            print(f"run folders: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = report(results, load_line, args)
    print()
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
        print(f"written: {args.markdown}")
    return 0


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
