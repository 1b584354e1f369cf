"""`harness run SCENARIO`: Jepsen's `run!` skeleton over one run context.

1. Validate everything (scenario file and overrides, LiteLLM version, backend, the capabilities the fault
   windows need, `--reuse`'s running stack, the backend's preflight: binaries, Docker engine; a new run folder).
   Bad input raises HarnessError before anything exists: no process started, NO run folder.
2. Create the run folder (scenario.yaml, meta.json) and bring the stack up (or reuse the running one).
3. Thread one RunContext through the stages (harness/run/stages.py): start them in order, wait while one is
   busy (the load) with a live table, stop them in reverse order on every exit path (normal end, Ctrl-C /
   SIGTERM, an error). The drain is the drain stage's stop, after the load's and the nemesis's.
4. The stack goes down (unless --keep / --reuse) and its state is forgotten: last, whatever happened.
5. Analysis, when a load ran and nothing failed (also after Ctrl-C: the drain still ran, the report is written,
   and the exit code is 130 whatever the verdict — the analyzer calls an interrupted run INCONCLUSIVE).

meta.json's `status` goes starting → stack up → load → drain → done (or interrupted / failed, with `failed_at`
naming the step and `error` the exception); `status_history` keeps every step with its time. Everything a later
stage needs is written to the run folder as it happens (layout: harness/run/runfolder.py).

The stage list, the stack factory, the clock and the analyzer are parameters, so the whole skeleton runs in
unit tests with tests/conftest.py's FakeStack and fake stages.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape

from harness import __version__
from harness.errors import HarnessError, Interrupted
from harness.litellm import candidate
from harness.litellm.candidate import Candidate
from harness.paths import results_dir
from harness.run.context import Clock, RunContext
from harness.run.exclusive import DEFAULT_WAIT_S, machine_turn
from harness.run.progress import PlainProgress, progress_line, progress_table
from harness.run.runfolder import META_FILE, SCENARIO_FILE, MetaWriter, new_run_id
from harness.run.stages import Stage, default_stages, load_where
from harness.scenario.model import Scenario, load_scenario
from harness.stack.base import Endpoints, Stack, StackSpec

StackFactory = Callable[[str, str], Stack]      # (backend, stack name) -> an unstarted Stack
Analyzer = Callable[[Path, Console], int]       # run folder -> exit code
POLL_S = 0.5
INTERRUPTED_EXIT = 130     # the shell convention for SIGINT, as `harness` exits for any interrupt


@dataclass
class RunOptions:
    litellm: str | Candidate | None = None     # a release, a wheel / source tree (path), or its Candidate
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
    exclusive: bool = False           # wait until no other harness run or stack is on the machine
    exclusive_wait_s: float = DEFAULT_WAIT_S
    target: Path | None = None        # --backend external: the target file (harness/stack/external/target.py)


def resolve_scenario(path: Path, opts: RunOptions) -> Scenario:
    """The scenario with the command line's overrides, its LiteLLM build checked (HarnessError if bad); its
    `litellm` is the build's declared version (resolve_build also returns the build)."""
    return resolve_build(path, opts)[0]


def resolve_build(path: Path, opts: RunOptions) -> tuple[Scenario, Candidate]:
    """The scenario with the command line's overrides and the LiteLLM build it runs (a release, or a candidate:
    harness/litellm/candidate.py). The scenario's `litellm` becomes the build's *declared* version, so that
    `expect_by_version`, the run id and every version rule see a version, never a path."""
    litellm = None if isinstance(opts.litellm, Candidate) else opts.litellm
    overrides: dict[str, Any] = {"litellm": litellm, "backend": opts.backend, "replicas": opts.replicas,
                                 "seed": opts.seed}
    scenario = load_scenario(path, overrides)
    if opts.duration is not None:
        scenario.load.duration_s = opts.duration
        scenario.load.stages = []
    if opts.processes > 1:
        scenario.load.processes = opts.processes
    build = candidate.parse(opts.litellm if isinstance(opts.litellm, Candidate) else scenario.litellm)
    candidate.check_backend(build, scenario.backend)
    scenario.litellm = build.version
    if scenario.pricing.cost_map_model:
        _price_from_cost_map(scenario, build)
    lv = build.traits()
    if scenario.litellm_settings.disable_budget_reservation is not None and not lv.has_disable_budget_reservation:
        raise HarnessError(f"{path}: litellm_settings.disable_budget_reservation needs LiteLLM 1.89.1 or newer "
                           f"(scenario runs {scenario.litellm})", "remove the setting or pick a newer version")
    return scenario, build


def _price_from_cost_map(scenario: Scenario, build: Candidate) -> None:
    """The scenario's prices from the cost map of the very LiteLLM build it runs (its environment, built if
    missing): the proxy looks the model up there itself (harness/litellm/costmap.py)."""
    from harness.litellm import env as litellm_env
    from harness.litellm.costmap import cost_map_file, model_prices

    model = scenario.pricing.cost_map_model
    assert model is not None
    path = cost_map_file(litellm_env.ensure(build).venv)
    price_in, price_out, max_out = model_prices(path, model)
    scenario.pricing.input_cost_per_token = price_in
    scenario.pricing.output_cost_per_token = price_out
    scenario.pricing.max_output_tokens = max_out


@dataclass
class Prepared:
    """Everything validated, nothing created yet (no run folder, nothing started)."""

    scenario: Scenario
    run_id: str
    run_dir: Path
    stack: Stack
    spec: StackSpec              # what up() brings up (preflight checked it)
    reused: Endpoints | None     # the running stack's endpoints with --reuse, else None: bring one up


def prepare(path: Path, opts: RunOptions, stack_factory: StackFactory) -> Prepared:
    """Step 1: every check that can refuse the run, before the run folder exists."""
    from harness.nemesis.registry import check_capabilities

    scenario, build = resolve_build(path, opts)
    run_id = new_run_id(scenario.name, build.label)
    run_dir = (opts.out or results_dir() / run_id).resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise HarnessError(f"run folder {run_dir} exists and is not empty", "pass another --out")
    stack_name = opts.stack_name or ("default" if opts.reuse else f"run-{run_id}")
    if scenario.probe is not None and scenario.backend == "external":
        raise HarnessError("probe: the counter probe changes the budgets of the run's keys for a moment through "
                           "every replica; the external backend never changes a deployment",
                           "remove `probe` or run on the local backend")
    if scenario.backend == "external":
        stack = _external_stack(stack_name, scenario, run_id, opts)
    else:
        if opts.target is not None:
            raise HarnessError("--target names a deployment for --backend external", "add --backend external")
        stack = stack_factory(scenario.backend, stack_name)      # refuses an unknown or unimplemented backend
    spec = StackSpec.from_scenario(scenario, run_dir)
    spec.candidate = build
    try:
        check_capabilities(scenario.faults, stack)
        load_where(scenario.load.where, stack)     # `stack` on a backend that cannot run the load: refused here
        reused = _running_endpoints(stack, scenario, build) if opts.reuse else None
        if reused is None:
            stack.preflight(spec)   # no engine / binary: refused here
    except HarnessError:
        if not opts.reuse:
            stack.forget()     # a backend may have made an (empty) state folder for the new stack
        raise
    return Prepared(scenario, run_id, run_dir, stack, spec, reused)


def _external_stack(name: str, scenario: Scenario, run_id: str, opts: RunOptions) -> Stack:
    """The external backend's stack on the target file (read and checked: remote hosts need allow_remote), and
    the scenario's end users renamed to carry this run's own prefix (a shared deployment: never touch others)."""
    from harness.stack.external import load_target, with_target

    if opts.reuse:
        raise HarnessError("--reuse does not apply to --backend external (the target is always reused)",
                           "drop --reuse")
    stack = with_target(name, load_target(opts.target))
    scope_end_users(scenario, run_id)
    return stack


def scope_end_users(scenario: Scenario, run_id: str) -> str:
    """Prefix every end-user id of `scenario` (the generated ones and `budget.per_user`'s) with a tag derived
    from `run_id`; returns the tag. The ids stay valid LiteLLM user ids and short enough to read."""
    tag = "r" + hashlib.sha256(run_id.encode()).hexdigest()[:10] + "-"
    scenario.end_users.prefix = tag + scenario.end_users.prefix
    scenario.budget.per_user = {tag + user: budget for user, budget in scenario.budget.per_user.items()}
    return tag


def _running_endpoints(stack: Stack, scenario: Scenario, build: Candidate) -> Endpoints:
    endpoints = stack.endpoints() if stack.is_running() else None
    if endpoints is None:
        raise HarnessError(f"--reuse: no running {stack.backend} stack named '{stack.name}'",
                           "start one with `harness up` (or run without --reuse)")
    # a stack that names its build must run this one; one that does not (older state) must run this release
    other_build = endpoints.build != build.label if (endpoints.build or build.kind != "pypi") else False
    if endpoints.version != scenario.litellm or other_build:
        raise HarnessError(f"--reuse: the running stack is LiteLLM {endpoints.build or endpoints.version}, the "
                           f"scenario wants {build.label}", "run without --reuse or pass --litellm")
    if endpoints.counters != scenario.counters:
        raise HarnessError(f"--reuse: the running stack keeps its counters in {endpoints.counters}, the scenario "
                           f"wants counters: {scenario.counters}",
                           f"run without --reuse or start it with `harness up --counters {scenario.counters}`")
    return endpoints


def _command_line(path: Path, opts: RunOptions, scenario: Scenario, build: Candidate | None = None) -> str:
    litellm = build.cli_arg if build is not None else scenario.litellm      # a candidate: its path
    parts = ["harness", "run", str(path), "--litellm", litellm, "--seed", str(scenario.seed)]
    if opts.replicas:
        parts += ["--replicas", str(opts.replicas)]
    if opts.duration:
        parts += ["--duration", str(opts.duration)]
    if scenario.backend != "local":
        parts += ["--backend", scenario.backend]
    if opts.target is not None:
        parts += ["--target", str(opts.target)]
    if opts.exclusive:
        parts += ["--exclusive"]
    return shlex.join(parts)


def _default_stack_factory(backend: str, name: str) -> Stack:
    from harness.stack.backends import make_stack

    return make_stack(backend, name)


def _default_analyzer(run_dir: Path, console: Console) -> int:
    from harness.analyze import analyze_cli

    return analyze_cli(run_dir, console=console)


def run_scenario(path: Path, opts: RunOptions, console: Console, *, stack_factory: StackFactory | None = None,
                 stages: Callable[[], Sequence[Stage]] = default_stages, clock: Clock | None = None,
                 analyzer: Analyzer | None = None, on_run_dir: Callable[[Path], None] | None = None) -> int:
    """Run one scenario end to end; returns the analysis' exit code (0 without analysis), or INTERRUPTED_EXIT
    when interrupted during the load or drain (the partial run is still analysed and its report written).
    `on_run_dir(run folder)` is called once the run folder exists (e.g. for `--json`, which names it).

    Raises HarnessError for bad input (nothing created), re-raises a stage's error after every stop ran and the
    stack went down, raises Interrupted when interrupted before the load started (nothing to analyse).
    """
    prep = prepare(path, opts, stack_factory or _default_stack_factory)
    # the machine lock: shared, or (--exclusive) alone on the machine; waiting happens before the run folder
    started = False
    try:
        with machine_turn(opts.exclusive, own_stacks=0 if prep.reused is None else 1,
                          wait_s=opts.exclusive_wait_s,
                          say=lambda text: console.print(text, soft_wrap=True, highlight=False)):
            started = True
            return _run_prepared(prep, path, opts, console, stages, clock or Clock(), analyzer, on_run_dir)
    finally:
        if not started and prep.reused is None:
            prep.stack.forget()     # gave up waiting (or Ctrl-C meanwhile): nothing was started


def _run_prepared(prep: Prepared, path: Path, opts: RunOptions, console: Console,
                  stages: Callable[[], Sequence[Stage]], clock: Clock, analyzer: Analyzer | None,
                  on_run_dir: Callable[[Path], None] | None) -> int:
    scenario, run_dir, stack = prep.scenario, prep.run_dir, prep.stack
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SCENARIO_FILE).write_text(scenario.dump_yaml())
    meta = MetaWriter(run_dir / META_FILE, {
        "run_id": prep.run_id, "scenario": scenario.name, "scenario_file": str(path),
        "litellm_version": scenario.litellm, "replicas": scenario.replicas, "backend": scenario.backend,
        "litellm_build": prep.spec.candidate.public() if prep.spec.candidate else None,
        "stack": stack.name, "seed": scenario.seed, "expect": scenario.expectation_for(scenario.litellm),
        "harness_version": __version__, "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count() or 1, "platform": platform.platform()},
        "command": _command_line(path, opts, scenario, prep.spec.candidate),
        "t_created": clock.time(), "status": "starting",
        "exclusive": opts.exclusive})
    console.print(f"run folder: {run_dir}", soft_wrap=True, highlight=False)
    if on_run_dir is not None:
        on_run_dir(run_dir)

    ctx: RunContext | None = None
    started_stack = prep.reused is None
    step = "stack.up"
    try:
        if prep.reused is None:
            t0 = clock.time()
            endpoints = stack.up(prep.spec, console=console)
            meta.update(t_stack_up=clock.time() - t0)
        else:
            endpoints = prep.reused
        step = "stack.facts"
        facts = stack.facts()
        meta.update(endpoints=endpoints.public(), status="stack up", redis_version=facts.redis_version,
                    postgres_version=facts.postgres_version, timings=facts.timings)
        if facts.images:
            meta.update(images=facts.images)
        ctx = RunContext(scenario=scenario, run_id=prep.run_id, run_dir=run_dir, stack=stack, endpoints=endpoints,
                         meta=meta, console=console, clock=clock, processes=scenario.load.processes)
        run_stages(ctx, stages())
    except (KeyboardInterrupt, Interrupted):     # while the stack came up (the stages handle their own)
        meta.update(status="interrupted", t_finished=clock.time())
        raise
    except Exception as exc:
        if ctx is None:     # the stages record their own failure
            meta.update(status="failed", failed_at=step, error=_describe(exc))
        meta.update(t_finished=clock.time())
        raise
    finally:
        _finish_stack(stack, meta, console, stop=started_stack and not opts.keep)

    assert ctx is not None      # every path that leaves ctx None raised above
    if ctx.outcome == "interrupted" and ctx.t_load_start is None:
        meta.update(status="interrupted", t_finished=clock.time())
        raise Interrupted("interrupted before the load started")
    meta.update(status="interrupted" if ctx.outcome == "interrupted" else "done", t_finished=clock.time())
    code = (analyzer or _default_analyzer)(run_dir, console) if opts.analyze else 0
    # a run that did not finish says nothing about the version: the caller must not read a verdict's 0/1
    return INTERRUPTED_EXIT if ctx.outcome == "interrupted" else code


def _finish_stack(stack: Stack, meta: MetaWriter, console: Console, stop: bool) -> None:
    """Step 4: the processes' final figures into meta.json, then the stack down and forgotten (when ours)."""
    try:
        meta.update(processes=stack.facts().processes)
    except Exception as exc:  # noqa: BLE001 - figures only; must not hide the error being raised, if any
        meta.update(processes_error=_describe(exc))
    if stop:
        console.print("releasing the target: what the run started stops, the deployment stays up …"
                      if stack.backend == "external" else "stopping the stack …")
        stack.down()
        stack.forget()
    else:
        console.print(f"stack '{stack.name}' left running (`harness down --name {stack.name}`)", soft_wrap=True)


def run_stages(ctx: RunContext, stages: Sequence[Stage]) -> None:
    """Step 3. Interrupts end in ctx.outcome = "interrupted" (not raised); an error is recorded in meta.json
    (status failed, failed_at, error) and re-raised once every started stage has stopped."""
    started: list[Stage] = []
    step = ""
    error: Exception | None = None
    try:
        for stage in stages:
            step = f"{stage.name}.start"
            started.append(stage)       # stopped even if its start raises: stop() undoes a partial start
            stage.start(ctx)
        step = "load"
        _wait_while_busy(ctx, started)
    except (KeyboardInterrupt, Interrupted):
        ctx.outcome = "interrupted"
        ctx.meta.update(status="interrupted")
        ctx.say("[yellow]interrupted: stopping the load, then draining[/]")
    except Exception as exc:
        error = exc
        _fail(ctx, step, exc)
    finally:
        stop_error = _stop_all(ctx, started)
    if error is not None:
        raise error
    if stop_error is not None:
        raise stop_error


def _stop_all(ctx: RunContext, started: list[Stage]) -> Exception | None:
    """Stop in reverse order; each stop runs whatever the previous one did. Returns the first stop error."""
    first: Exception | None = None
    for stage in reversed(started):
        try:
            stage.stop(ctx)
        except (KeyboardInterrupt, Interrupted):
            if ctx.outcome == "running":
                ctx.outcome = "interrupted"
                ctx.meta.update(status="interrupted")
        except Exception as exc:
            ctx.meta.update(stop_errors=[*ctx.meta.data.get("stop_errors", []),
                                         f"{stage.name}.stop: {_describe(exc)}"])
            if ctx.outcome != "failed":
                _fail(ctx, f"{stage.name}.stop", exc)
                first = exc
    return first


def _fail(ctx: RunContext, step: str, exc: Exception) -> None:
    ctx.outcome = "failed"
    ctx.meta.update(status="failed", failed_at=step, error=_describe(exc))
    ctx.say(f"[red]{step} failed:[/] {escape(_describe(exc))} — stopping everything")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _wait_while_busy(ctx: RunContext, stages: Sequence[Stage]) -> None:
    """Poll the stages until none is busy, showing the progress: the live table in a terminal; in a log (not a
    terminal: CI), a plain line every few seconds and one with the final figures (harness/run/progress.py)."""
    planned = ctx.scenario.load.planned_duration_s

    def figures() -> tuple[float, dict[str, Any]]:
        stats: dict[str, Any] = {}
        for stage in stages:
            stats.update(stage.progress())
        now = ctx.clock.time()
        return now - (ctx.t_load_start or now), stats

    def busy() -> bool:
        return any([stage.busy(ctx) for stage in stages])   # every stage polled (a list, not a generator)

    if not ctx.console.is_terminal:
        plain = PlainProgress(ctx.console, ctx.clock)

        def line() -> str:
            elapsed, stats = figures()
            return progress_line(ctx.scenario, "load", elapsed, planned, stats)

        plain.tick(line)
        while busy():
            plain.tick(line)
            ctx.clock.sleep(POLL_S)
        elapsed, stats = figures()
        plain.tick(lambda: progress_line(ctx.scenario, "load ended", elapsed, planned, stats), force=True)
        return

    def table() -> Any:
        elapsed, stats = figures()
        return progress_table(ctx.scenario, "load", elapsed, planned, stats)

    with Live(table(), console=ctx.console, refresh_per_second=2, transient=False) as display:
        while busy():
            display.update(table())
            ctx.clock.sleep(POLL_S)
        display.update(table())
