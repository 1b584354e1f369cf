"""`harness run SCENARIO`: stack up, budgets, load + faults + sampler, drain, stack down, analysis.

Everything a later stage needs is written to the run folder as it happens (layout: harness/run/runfolder.py).
"""

from __future__ import annotations

import json
import platform
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from harness import __version__
from harness.errors import HarnessError, Interrupted
from harness.litellm import versions
from harness.paths import results_dir
from harness.run.budgets import create_end_users
from harness.run.runfolder import META_FILE, SCENARIO_FILE, new_run_id
from harness.scenario.model import Scenario, load_scenario
from harness.stack.base import Endpoints, StackSpec
from harness.util.fsutil import atomic_write_text


@dataclass
class RunOptions:
    litellm: str | None = None
    backend: str | None = None
    replicas: int | None = None
    duration: float | None = None
    seed: int | None = None
    reuse: bool = False
    keep: bool = False
    processes: int = 1
    out: Path | None = None
    stack_name: str | None = None
    analyze: bool = True


class MetaWriter:
    """meta.json, rewritten atomically whenever something is learned (never holds secrets)."""

    def __init__(self, path: Path, initial: dict[str, Any]) -> None:
        self.path = path
        self.data = dict(initial)
        self.write()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.write()

    def write(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=2, default=str))


def resolve_scenario(path: Path, opts: RunOptions) -> Scenario:
    overrides: dict[str, Any] = {"litellm": opts.litellm, "backend": opts.backend, "replicas": opts.replicas,
                                 "seed": opts.seed}
    scenario = load_scenario(path, overrides)
    if opts.duration is not None:
        scenario.load.duration_s = opts.duration
        scenario.load.stages = []
    if opts.processes > 1:
        scenario.load.processes = opts.processes
    versions.resolve(scenario.litellm)
    if scenario.litellm_settings.disable_budget_reservation is not None:
        lv = versions.resolve(scenario.litellm)
        if not lv.has_disable_budget_reservation:
            raise HarnessError(f"{path}: litellm_settings.disable_budget_reservation needs LiteLLM 1.89.1 or newer "
                               f"(scenario runs {scenario.litellm})", "remove the setting or pick a newer version")
    return scenario


def _command_line(path: Path, opts: RunOptions, scenario: Scenario) -> str:
    parts = ["harness", "run", str(path), "--litellm", scenario.litellm, "--seed", str(scenario.seed)]
    if opts.replicas:
        parts += ["--replicas", str(opts.replicas)]
    if opts.duration:
        parts += ["--duration", str(opts.duration)]
    if scenario.backend != "local":
        parts += ["--backend", scenario.backend]
    return shlex.join(parts)


def _progress_table(scenario: Scenario, t_start: float, planned: float, stats: dict[str, Any],
                    phase: str, max_gap: float | None) -> Table:
    table = Table.grid(padding=(0, 2))
    elapsed = time.time() - t_start
    table.add_row(f"[bold]{scenario.name}[/] on LiteLLM {scenario.litellm} × {scenario.replicas}",
                  f"{phase}: {elapsed:5.0f} s / {planned:.0f} s")
    table.add_row(f"requests {stats.get('requests', 0):>7}   ok {stats.get('ok', 0):>7}",
                  f"budget rejections {stats.get('budget_rejections', 0):>6}   errors {stats.get('errors', 0):>6}")
    gap = "–" if max_gap is None else f"${max_gap:,.4f}"
    table.add_row("largest Redis counter − DB spend (one end user)", gap)
    return table


def run_scenario(path: Path, opts: RunOptions, console: Console) -> int:
    scenario = resolve_scenario(path, opts)
    run_id = new_run_id(scenario.name, scenario.litellm)
    run_dir = (opts.out or results_dir() / run_id).resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise HarnessError(f"run folder {run_dir} exists and is not empty", "pass another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SCENARIO_FILE).write_text(scenario.dump_yaml())
    meta = MetaWriter(run_dir / META_FILE, {
        "run_id": run_id, "scenario": scenario.name, "scenario_file": str(path), "litellm_version": scenario.litellm,
        "replicas": scenario.replicas, "backend": scenario.backend, "seed": scenario.seed,
        "expect": scenario.expectation_for(scenario.litellm), "harness_version": __version__,
        "python": platform.python_version(), "machine": {"cpus": _cpus(), "platform": platform.platform()},
        "command": _command_line(path, opts, scenario), "t_created": time.time(), "status": "starting"})
    console.print(f"run folder: {run_dir}")

    from harness.stack.backends import make_stack

    stack_name = opts.stack_name or ("default" if opts.reuse else f"run-{run_id}")
    stack = make_stack(scenario.backend, stack_name)
    interrupted = False
    started_stack = False
    try:
        if opts.reuse:
            endpoints = getattr(stack, "endpoints", None)
            if endpoints is None or not stack_is_running(stack):
                raise HarnessError(f"--reuse: no running stack named '{stack_name}'", "start one with `harness up`")
            if endpoints.version != scenario.litellm:
                raise HarnessError(f"--reuse: the running stack is LiteLLM {endpoints.version}, the scenario wants "
                                   f"{scenario.litellm}", "run without --reuse or pass --litellm")
        else:
            t0 = time.time()
            started_stack = True
            endpoints = stack.up(StackSpec.from_scenario(scenario, run_dir), console=console)
            meta.update(t_stack_up=time.time() - t0)
        meta.update(endpoints=endpoints.public(), status="stack up",
                    **_stack_facts(stack))
        counts = create_end_users(scenario, endpoints)
        meta.update(end_users_created=counts)
        interrupted = _experiment(scenario, stack, endpoints, run_dir, meta, console)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
        meta.update(status="interrupted")
        console.print("[yellow]interrupted[/]")
    finally:
        if started_stack and not opts.keep:
            _collect_processes(stack, meta)
            console.print("stopping the stack …")
            stack.down()
            forget = getattr(stack, "forget", None)
            if callable(forget):
                forget()
        elif opts.keep:
            console.print(f"stack '{stack_name}' left running (`harness down --name {stack_name}`)")
    meta.update(status="interrupted" if interrupted else "done", t_finished=time.time())
    if not opts.analyze:
        return 0
    from harness.analyze import analyze_cli

    return analyze_cli(run_dir, console=console)


def stack_is_running(stack: Any) -> bool:
    check = getattr(stack, "is_running", None)
    return bool(check()) if callable(check) else True


def _stack_facts(stack: Any) -> dict[str, Any]:
    extra = getattr(getattr(stack, "group", None), "extra", {}) or {}
    return {k: extra[k] for k in ("redis_version", "postgres_version", "timings") if k in extra}


def _collect_processes(stack: Any, meta: MetaWriter) -> None:
    procs = getattr(stack, "processes", None)
    if callable(procs):
        try:
            meta.update(processes=procs())
        except Exception:  # noqa: BLE001 - figures only
            pass


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def _experiment(scenario: Scenario, stack: Any, endpoints: Endpoints, run_dir: Path, meta: MetaWriter,
                console: Console) -> bool:
    """Load + faults + sampler, then the drain. Returns True when interrupted (the drain still ran)."""
    from harness.load.launch import LiveStats, LoadConfig, run_locust
    from harness.nemesis.schedule import Nemesis
    from harness.run.sampler import Sampler
    from harness.util.procs import ProcessGroup

    # Locust is recorded in the stack's own state file when it has one, so `harness down` finds it too.
    group = getattr(stack, "group", None) or ProcessGroup(run_dir / ".load-state")
    sampler = Sampler(endpoints.redis_direct_url, endpoints.postgres_dsn, run_dir, scenario.sampling.interval_s,
                      namespace=endpoints.redis_namespace)
    nemesis = Nemesis(scenario.faults, stack, endpoints, run_dir)
    config = LoadConfig.from_scenario(scenario, endpoints, run_dir)
    live = LiveStats(run_dir)
    planned = scenario.load.planned_duration_s
    interrupted = False
    from harness.run.cpu import CpuMeter

    cpu = CpuMeter({rec.name: rec.pid for rec in getattr(group, "records", {}).values()})
    sampler.start()
    cpu.start()
    t_load_start = time.time()
    meta.update(t_load_start=t_load_start, status="load")
    nemesis.start(t_load_start)
    handle = run_locust(config, run_dir, group, processes=scenario.load.processes)
    try:
        with Live(console=console, refresh_per_second=2, transient=False) as display:
            while handle.poll() is None:
                display.update(_progress_table(scenario, t_load_start, planned, live.poll(), "load",
                                               getattr(sampler, "max_counter_minus_db", None)))
                time.sleep(0.5)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
        console.print("[yellow]interrupted: stopping the load, then draining[/]")
        stop = getattr(handle, "stop", None)
        if callable(stop):
            stop()
    finally:
        if handle.poll() is None:
            handle.stop()
        group.stop(handle.name, timeout=10)
        # the load ended here; ending the fault windows (e.g. waiting for a killed replica to be healthy
        # again) is part of the drain, which must stay under the 60 s counter TTL
        t_load_end = time.time()
        nemesis.stop()
    meta.update(t_load_end=t_load_end, status="drain", load_exit_code=handle.poll(), cpu_during_load=cpu.stop(),
                sampler={"samples": sampler.samples, "errors": sampler.errors,
                         "last_duration_ms": round((sampler.last_duration_s or 0) * 1000, 1)})
    # The drain: in-flight requests have ended (Locust exited); keep sampling past the DB batch-write
    # interval (and under the 60 s counter TTL) so the final reconciliation has data.
    console.print(f"draining for {scenario.drain_s:.0f} s (sampling continues) …")
    drain_end = t_load_end + scenario.drain_s
    try:
        while time.time() < drain_end:
            time.sleep(min(0.5, max(0.0, drain_end - time.time())))
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
    sampler.sample_once()
    sampler.stop()
    meta.update(t_drain_end=time.time(), requests_seen=live.poll())
    return interrupted
