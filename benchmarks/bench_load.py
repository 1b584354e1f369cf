"""Load generator throughput: requests per CPU-second of the Locust process, against tests/fakeproxy.py.

    .venv/bin/python benchmarks/bench_load.py [--users 32] [--seconds 10] [--clients]

Part 1 runs the real locustfile (harness.load) headless and divides the requests.csv rows by the CPU time
Locust used (user+sys, from getrusage of the reaped child), so the figure does not depend on how much of the
2 cores the fake proxy took. `--clients` also compares raw HTTP clients under gevent in one process
(geventhttpclient as used by the locustfile vs httpx), the choice the locustfile rests on.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _path  # noqa: F401

from harness.load.config import LoadConfig
from harness.load.launch import LiveStats, run_locust
from harness.util.ports import free_port
from harness.util.procs import ProcessGroup, http_ok, wait_until

ROOT = Path(__file__).resolve().parent.parent


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench_locust(url: str, key_file: Path, work: Path, users: int, seconds: int, stream_share: float,
                 label: str) -> None:
    run = work / f"run-{label}"
    cfg = LoadConfig(run_dir=str(run), proxy_urls=[url], master_key_file=str(key_file),
                     end_users=[f"eu-{i}" for i in range(100)], stream_share=stream_share, disconnect_share=0.2,
                     disconnect_after_chunks=(1, 3), client_timeout_s=10, prompt_chars=(40, 400), wait_s=(0, 0),
                     users=users, spawn_rate=users, duration_s=seconds)
    cpu0 = _cpu_children()
    handle = run_locust(cfg, run)
    try:
        handle.wait(timeout=seconds + 60)
    finally:
        handle.stop()
    cpu = _cpu_children() - cpu0
    stats = LiveStats(run).poll()
    n = stats["requests"]
    if stats["errors"]:
        import csv
        with open(run / "requests.csv") as fh:
            kinds = {(r["error_type"], r["error_text"][:80]) for r in csv.DictReader(fh) if r["error_type"]}
        print(f"  errors: {sorted(kinds)[:5]}")
    print(f"  locust {label:<22} {n:6d} requests in {seconds} s = {n / seconds:6.0f} req/s wall; "
          f"Locust CPU {cpu:5.1f} s -> {n / cpu:6.0f} req/s per core (errors {stats['errors']})")


CLIENT_SNIPPET = r"""
import gevent.monkey; gevent.monkey.patch_all()
import sys, time, resource, gevent, orjson
url, key, which, n_green, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi " * 50}], "user": "eu-1",
                     "stream": True, "stream_options": {"include_usage": True}})
hdr = {"Authorization": "Bearer " + key, "Content-Type": "application/json", "x-harness-request-id": "x"}
count = 0
def worker_ghc():
    global count
    from geventhttpclient import HTTPClient
    c = HTTPClient.from_url(url, concurrency=1)
    while time.monotonic() < end:
        r = c.request("POST", "/chat/completions", body=body, headers=hdr)
        while r.readline(b"\n"):
            pass
        count += 1
def worker_httpx():
    global count
    import httpx
    c = httpx.Client(base_url=url)
    while time.monotonic() < end:
        with c.stream("POST", "/chat/completions", content=body, headers=hdr) as r:
            for _ in r.iter_lines():
                pass
        count += 1
end = time.monotonic() + seconds
t0 = resource.getrusage(resource.RUSAGE_SELF)
gevent.joinall([gevent.spawn(worker_ghc if which == "geventhttpclient" else worker_httpx) for _ in range(n_green)])
t1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (t1.ru_utime - t0.ru_utime) + (t1.ru_stime - t0.ru_stime)
print(f"{count} {cpu}")
"""


def bench_clients(url: str, key: str, users: int, seconds: int) -> None:
    for which in ("geventhttpclient", "httpx"):
        out = subprocess.run([sys.executable, "-c", CLIENT_SNIPPET, url, key, which, str(users), str(seconds)],
                             capture_output=True, text=True, check=True).stdout.split()
        n, cpu = int(out[0]), float(out[1])
        print(f"  raw {which:<17} {n:6d} streamed requests in {seconds} s, CPU {cpu:5.1f} s -> "
              f"{n / cpu:6.0f} req/s per core")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key = "sk-bench-" + os.urandom(6).hex()
        key_file = work / "key"
        key_file.write_text(key)
        group = ProcessGroup(work / "state")
        try:
            port = free_port()
            group.start("fake", [sys.executable, "-m", "tests.fakeproxy", "--port", str(port), "--key-file",
                                 str(key_file), "--chunks", "8", "--chunk-delay", "0"], log=work / "fake.log",
                        cwd=ROOT, port=port)
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: http_ok(f"{url}/health"), deadline_s=20, what="fake proxy", interval=0.05)
            print(f"{args.users} users, no think time, fake proxy answers at once (8 chunks per stream), "
                  f"{os.cpu_count()} cores shared with it")
            bench_locust(url, key_file, work, args.users, args.seconds, 0.8, "80% streams, 20% cut")
            bench_locust(url, key_file, work, args.users, args.seconds, 0.0, "non-streaming")
            if args.clients:
                time.sleep(0.5)
                bench_clients(url, key, args.users, args.seconds)
        finally:
            group.stop_all()


if __name__ == "__main__":
    main()
