"""The `harness` command line: up | down | status | run | analyze | matrix | bisect | catalog | doctor | env |
images | report."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import click
import typer
from rich.console import Console

from harness.errors import HarnessError, Interrupted
from harness.run import exclusive as exclusive_defaults

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproduce and load-test the LiteLLM proxy's phantom-budget bug.")
env_app = typer.Typer(no_args_is_help=True, help="Cached LiteLLM environments (.cache/litellm/<version>/).")
app.add_typer(env_app, name="env")
images_app = typer.Typer(no_args_is_help=True, help="The Compose backend's images (official, or built here).")
app.add_typer(images_app, name="images")
report_app = typer.Typer(no_args_is_help=True, help="A run's report.md, on GitHub (with the gh CLI).")
app.add_typer(report_app, name="report")

console = Console(stderr=True)
DEFAULT_EXCLUSIVE_WAIT_S = exclusive_defaults.DEFAULT_WAIT_S

# --json / --junit of run, analyze, matrix, catalog, bisect (harness/results_io/; schema in docs/results-schema.json)
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON summary object on stdout at the end "
                                                      "(everything else goes to stderr); docs/machine-readable.md")]
JunitOpt = Annotated[Path | None, typer.Option("--junit", help="write a JUnit XML file: one test case per run, "
                                                              "a failure when the verdict contradicts the "
                                                              "expectation")]
# one machine, one experiment (harness/run/exclusive.py) and repeats (harness/matrix/cells.py: the agreement rule)
ExclusiveOpt = Annotated[bool, typer.Option(help="wait until no other harness run or stack is on this machine "
                                                 "(a starved stack's verdict is noise)")]
ExclusiveWaitOpt = Annotated[float, typer.Option(min=0, help="--exclusive: give up (exit 2) after this many "
                                                              "seconds")]
RepeatOpt = Annotated[int, typer.Option(min=1, help="runs, each on a fresh stack, judged together (the verdict "
                                                    "their quiet runs agree on)")]


# -- environments ----------------------------------------------------------------------------------
@env_app.command("build")
def env_build(versions: Annotated[list[str], typer.Argument(help="LiteLLM versions, e.g. 1.84.0 1.108.7, or "
                                                                 "candidate builds: a wheel file, a source tree")]
              ) -> None:
    """Build (or reuse) the cached environment of each version or candidate build (keyed by its content)."""
    from harness.litellm import env as litellm_env

    for version in versions:
        env = litellm_env.ensure(version, console=console)
        console.print(f"LiteLLM {env.version}: ready in {env.root}")


@images_app.command("build")
def images_build(versions: Annotated[list[str], typer.Argument(help="LiteLLM versions, e.g. 1.84.0 1.108.7")]) -> None:
    """Pull the official images, or build them here from packages when none can be pulled (HARNESS_IMAGES)."""
    from harness.litellm.versions import resolve
    from harness.stack.compose.images import ImageBuilder
    from harness.stack.compose.stack import docker_client

    builder = ImageBuilder(docker_client(), console=console)
    for version in versions:
        exact = resolve(version).version
        choice = builder.ensure(builder.choose(exact), exact)
        console.print(f"LiteLLM {version}: {choice.describe()}", highlight=False)
        for ref, image_id in choice.ids.items():
            console.print(f"  {ref}  {image_id.removeprefix('sha256:')[:12]}", highlight=False)


@env_app.command("list")
def env_list() -> None:
    """List cached LiteLLM environments (a candidate build's: with what it was built from)."""
    from harness.litellm import env as litellm_env
    from harness.litellm.candidate import describe_build

    for env in litellm_env.cached():
        build = env.info().get("litellm")
        source = f"\t{describe_build(build)}" if isinstance(build, dict) and build.get("kind") != "pypi" else ""
        console.print(f"{env.version}\t{env.root}{source}", highlight=False, markup=False, soft_wrap=True)


# -- stack -----------------------------------------------------------------------------------------
@app.command()
def up(
    litellm: Annotated[str, typer.Option(help="LiteLLM version (exact PyPI release), or a candidate build: "
                                              "a wheel file or a source tree (local backend)")] = "1.84.0",
    replicas: Annotated[int, typer.Option(min=1, max=32, help="number of proxy replicas")] = 2,
    name: Annotated[str, typer.Option(help="stack name (state in .state/<name>/)")] = "default",
    budget: Annotated[float, typer.Option(help="default end-user max budget in $")] = 50.0,
    base_port: Annotated[int | None, typer.Option(help="first port to use (else free ports)")] = None,
    transaction_buffer: Annotated[bool, typer.Option(help="use_redis_transaction_buffer")] = True,
    counters: Annotated[str, typer.Option(help="where the proxies keep their spend counters: redis (a Redis cache "
                                               "in their config) | memory (no cache: each process counts in its own "
                                               "memory; local backend)")] = "redis",
    backend: Annotated[str, typer.Option(help="local (processes) | compose (Docker)")] = "local",
    proxy_host: Annotated[str, typer.Option(help="the address the proxies listen on (local backend): 127.0.0.1, "
                                                 "or this host's own address on a test network, so Locust on "
                                                 "other hosts can reach them (Redis, Postgres, mock stay on "
                                                 "loopback)")] = "127.0.0.1",
    scenario: Annotated[Path | None, typer.Option(help="shape the stack like this scenario (pricing, budget, "
                                                       "mock, LiteLLM settings, replicas, version), so `harness run "
                                                       "SCENARIO --backend external` can drive it; --litellm / "
                                                       "--replicas still override")] = None,
) -> None:
    """Start Redis, Postgres, the mock LLM and N LiteLLM proxy replicas (local processes by default)."""
    from harness.litellm import candidate
    from harness.stack.backends import make_stack
    from harness.stack.base import StackSpec
    from harness.stack.external.target import is_loopback
    from harness.util.netutil import is_own_address

    if proxy_host != "127.0.0.1" and backend != "local":
        raise HarnessError(f"--proxy-host {proxy_host}: only the local backend binds another address",
                           "drop --proxy-host or use --backend local")
    if not is_loopback(proxy_host) and not is_own_address(proxy_host):
        raise HarnessError(f"--proxy-host {proxy_host} is not an address of this host",
                           "use 127.0.0.1 or an address `ip addr` shows here")
    if scenario is not None:
        from click.core import ParameterSource

        from harness.scenario.model import load_scenario

        ctx = click.get_current_context()
        given = {p: ctx.get_parameter_source(p) == ParameterSource.COMMANDLINE
                 for p in ("litellm", "replicas", "budget", "transaction_buffer", "counters")}
        shaped = load_scenario(scenario, {"litellm": litellm if given["litellm"] else None,
                                          "replicas": replicas if given["replicas"] else None})
        build = candidate.parse(shaped.litellm)
        candidate.check_backend(build, backend)
        spec = StackSpec.from_scenario(shaped)
        spec.base_port, spec.candidate, spec.proxy_host = base_port, build, proxy_host
        if given["budget"]:
            spec.default_budget = budget
        if given["counters"]:
            spec.counters = _counters_option(counters)
        endpoints = make_stack(backend, name).up(spec, console=console)
        print(endpoints.describe())
        return
    build = candidate.parse(litellm)
    candidate.check_backend(build, backend)
    spec = StackSpec(version=build.version, replicas=replicas, default_budget=budget, base_port=base_port,
                     litellm_settings={"use_redis_transaction_buffer": transaction_buffer}, candidate=build,
                     proxy_host=proxy_host, counters=_counters_option(counters))
    endpoints = make_stack(backend, name).up(spec, console=console)
    print(endpoints.describe())


def _counters_option(value: str) -> str:
    if value not in ("redis", "memory"):
        raise HarnessError(f"--counters {value}: not understood", "use redis or memory")
    return value


@app.command()
def down(
    name: Annotated[str, typer.Option(help="stack name")] = "default",
    all_stacks: Annotated[bool, typer.Option("--all", help="stop every stack in .state/, of every backend")] = False,
    backend: Annotated[str | None, typer.Option(help="local | compose (default: the backend whose state the "
                                                     "stack left)")] = None,
) -> None:
    """Stop every process/container a stack recorded and wait until they are gone; leave no port behind."""
    from harness.stack.backends import find_stacks, list_stacks, make_stack

    if all_stacks:
        stacks = list_stacks()
    elif backend is not None:
        stacks = [make_stack(backend, name)]
    else:
        stacks = find_stacks(name)
        if not stacks:
            console.print(f"no stack named '{name}' (nothing recorded in .state/{name}/)")
            return
    if not stacks:
        console.print("no stacks")
    for stack in stacks:
        stopped = stack.down()
        console.print(f"stack '{stack.name}' ({stack.backend}): stopped {stopped}")


@app.command()
def status(
    name: Annotated[str | None, typer.Option(help="stack name (default: every stack)")] = None,
    format_: Annotated[str, typer.Option("--format", help="text (processes and endpoints) | target (a target file "
                                                          "for `harness run --backend external --target`; needs "
                                                          "--name)")] = "text",
) -> None:
    """Show each stack's processes/containers and endpoints (every stack of every backend, or one)."""
    from harness.stack.backends import find_stacks, list_stacks

    if format_ not in ("text", "target"):
        raise HarnessError(f"--format {format_!r} is not known", "use text or target")
    if format_ == "target":
        from harness.stack.external.fromstack import target_yaml

        if name is None:
            raise HarnessError("--format target describes one stack", "add --name <stack>")
        running = [s for s in find_stacks(name) if s.is_running() and s.backend != "external"]
        if not running:
            raise HarnessError(f"stack '{name}' is not running", f"start it with `harness up --name {name}`")
        print(target_yaml(running[0]), end="")
        return
    stacks = list_stacks() if name is None else find_stacks(name)
    if not stacks:
        print("no stacks" if name is None else f"stack '{name}': not running")
        return
    print("\n\n".join(stack.status() for stack in stacks))


target_app = typer.Typer(no_args_is_help=True, help="Deployments the external backend drives (target files).")
app.add_typer(target_app, name="target")


@target_app.command("check")
def target_check(target: Annotated[Path, typer.Argument(help="target file (stack/external/target.py)")]) -> None:
    """Say what of a target is reachable and which capabilities it has, without sending load.

    Exit 0 when everything a run needs answers, 1 when something does not, 2 for a bad target file."""
    from harness.stack.external.probe import probe
    from harness.stack.external.target import load_target

    found_target = load_target(target)
    found = probe(found_target)
    print(f"target {found_target.name} ({target}): LiteLLM {found.version or '?'}")
    print(found.table())
    caps = [k for k, v in found.capabilities.items() if v]
    print(f"capabilities: {', '.join(caps) or 'none'} (mock faults always)")
    if found.failures:
        print(f"NOT READY: {len(found.failures)} required part(s) do not answer")
        raise typer.Exit(1)
    print("ready: `harness run SCENARIO --backend external --target " + str(target) + "`")


# -- experiments -----------------------------------------------------------------------------------
@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file")],
    litellm: Annotated[str | None, typer.Option(help="override the scenario's LiteLLM version; or a candidate "
                                                     "build: a wheel file or a LiteLLM source tree (git checkout, "
                                                     "unpacked sdist)")] = None,
    backend: Annotated[str | None, typer.Option(help="override the scenario's backend: local | compose | external "
                                                     "(with --target)")] = None,
    target: Annotated[Path | None, typer.Option(help="--backend external: the target file naming the deployment "
                                                     "(`harness target check`; `harness status --format target` "
                                                     "prints one for a stack the harness started)")] = None,
    replicas: Annotated[int | None, typer.Option(help="override the scenario's replica count")] = None,
    duration: Annotated[float | None, typer.Option(help="override the load duration (s)")] = None,
    seed: Annotated[int | None, typer.Option(help="override the scenario's seed")] = None,
    reuse: Annotated[bool, typer.Option(help="reuse a running stack (`harness up`)")] = False,
    keep: Annotated[bool, typer.Option(help="leave the stack running afterwards")] = False,
    name: Annotated[str | None, typer.Option(help="stack name (default: 'default' with --reuse, "
                                             "else run-<run-id>)")] = None,
    processes: Annotated[int, typer.Option(min=1, help="Locust worker processes")] = 1,
    out: Annotated[Path | None, typer.Option(help="run folder (default results/<run-id>; with --repeat the "
                                            "repeat folder, default results/repeat-<id>)")] = None,
    repeat: RepeatOpt = 1,
    exclusive: ExclusiveOpt = False,
    exclusive_wait: ExclusiveWaitOpt = DEFAULT_EXCLUSIVE_WAIT_S,
    bisect: Annotated[bool, typer.Option("--bisect", help="for `git bisect run`: exit 0 when the bug is absent "
                                                          "(NOT REPRODUCED), 1 when present (REPRODUCED), 125 when "
                                                          "nothing was decided (INCONCLUSIVE, uninstallable tree, "
                                                          "broken stack, bad input), 130 interrupted — whatever "
                                                          "the scenario expects; docs/git-bisect.md")] = False,
    min_phantoms: Annotated[int, typer.Option(min=0, help="--bisect: REPRODUCED is bad only with this many "
                                                          "phantom rejections …")] = 0,
    min_leaked: Annotated[float, typer.Option(min=0, help="… or this much leaked $ after the drain; weaker "
                                                          "evidence counts as good")] = 0.0,
    json_out: JsonOpt = False,
    junit: JunitOpt = None,
) -> None:
    """Run one scenario end to end and analyze it; exit 0 when the verdict matches the expectation.

    --bisect: exit codes for `git bisect run` instead (0 bug absent, 1 present, 125 undecided, 130 interrupted;
    harness/matrix/gitbisect.py).

    --repeat N: N runs, each on a fresh stack, judged together (a one-cell matrix in results/repeat-<id>:
    the verdict all quiet repeats agree on, starved repeats set aside; harness/matrix/cells.py).

    Bad input (scenario, version, backend, a fault the backend cannot do, --reuse without a running stack)
    exits 2 before anything starts, with no run folder. Ctrl-C during the load or drain still drains and writes
    the report, then exits 130.
    """
    from harness.results_io import ResultsOutput, cells_results, run_results
    from harness.run.experiment import RunOptions, run_scenario

    results = ResultsOutput(json_out, junit)
    opts = RunOptions(litellm=litellm, backend=backend, replicas=replicas, duration=duration, seed=seed, reuse=reuse,
                      keep=keep, processes=processes, out=out, stack_name=name, exclusive=exclusive,
                      exclusive_wait_s=exclusive_wait, target=target)
    if (min_phantoms or min_leaked) and not bisect:
        raise HarnessError("--min-phantoms / --min-leaked only apply with --bisect", "add --bisect or drop them")
    if bisect and repeat > 1:
        raise HarnessError("--bisect decides from one run: --repeat does not apply", "drop --repeat")
    if repeat > 1:
        from harness.matrix import repeat_command

        with results.capture():
            res = repeat_command(scenario, repeat, opts, console)
        results.emit(cells_results("run-repeat", res.results, res.exit_code, str(res.out_dir.absolute())))
        raise typer.Exit(res.exit_code)
    run_dirs: list[Path] = []
    with results.capture():
        code = run_scenario(scenario, opts, console=console, on_run_dir=run_dirs.append)
        if bisect:
            from harness.analyze.summary import read_summary
            from harness.matrix import gitbisect

            code = gitbisect.run_exit(run_dirs[0], code, min_phantoms, min_leaked)
            summary = read_summary(run_dirs[0])
            gitbisect.say(console, code, gitbisect.describe(code, summary.verdict if summary else None))
    results.emit(run_results("run", run_dirs[0], code))
    raise typer.Exit(code)


@app.command()
def analyze(
    run_dir: Annotated[Path, typer.Argument(help="a run folder, results/<run-id>")],
    json_out: JsonOpt = False,
    junit: JunitOpt = None,
) -> None:
    """Turn a run folder into verdict.json, pictures and report.md; exit 0/1/2 as the verdict says."""
    from harness.analyze import analyze_cli
    from harness.results_io import ResultsOutput, run_results

    results = ResultsOutput(json_out, junit)
    with results.capture():
        code = analyze_cli(run_dir, console=console)
    if code != 2:       # 2: an unusable folder, already said in one line; nothing to summarise
        results.emit(run_results("analyze", run_dir, code))
    raise typer.Exit(code)


@app.command()
def matrix(
    versions: Annotated[str, typer.Option(help="comma-separated LiteLLM versions, e.g. 1.83.14,1.84.0,1.108.7; "
                                               "candidate builds by path (wheel file, source tree) too")],
    scenario: Annotated[list[Path] | None, typer.Option(help="scenario YAML (repeatable); default the seed")] = None,
    repeat: Annotated[int, typer.Option(min=1, help="runs per cell (their spread is the noise band)")] = 1,
    baseline: Annotated[Path | None, typer.Option(help="a previous results/matrix-<id> to compare with")] = None,
    duration: Annotated[float | None, typer.Option(help="override the load duration (s)")] = None,
    out: Annotated[Path | None, typer.Option(help="matrix folder (default results/matrix-<id>)")] = None,
    backend: Annotated[str | None, typer.Option(help="override each scenario's backend: local | compose")] = None,
    exclusive: ExclusiveOpt = False,
    exclusive_wait: ExclusiveWaitOpt = DEFAULT_EXCLUSIVE_WAIT_S,
    json_out: JsonOpt = False,
    junit: JunitOpt = None,
) -> None:
    """Every scenario on every version: matrix.csv/.md, summary.png; exit 1 if a cell contradicts its expectation
    on a quiet machine (a contradiction seen only in starved runs is reported, not failed)."""
    from harness.matrix import matrix_command
    from harness.results_io import ResultsOutput, cells_results
    from harness.run.experiment import RunOptions

    results = ResultsOutput(json_out, junit)
    opts = RunOptions(exclusive=exclusive, exclusive_wait_s=exclusive_wait)
    with results.capture():
        res = matrix_command(versions, scenario, repeat, baseline, duration, out, console, backend, options=opts)
    results.emit(cells_results("matrix", res.results, res.exit_code, str(res.out_dir.absolute())))
    raise typer.Exit(res.exit_code)


@app.command()
def bisect(
    good: Annotated[str, typer.Option(help="a version where the scenario is clean (NOT REPRODUCED); or a "
                                           "candidate build (wheel file, source tree)")],
    bad: Annotated[str, typer.Option(help="a version (or candidate build) where the scenario reproduces")],
    scenario: Annotated[Path, typer.Option(help="scenario YAML")] = Path("scenarios/phantom-budget.yaml"),
    duration: Annotated[float | None, typer.Option(help="override the load duration (s)")] = None,
    check_ends: Annotated[bool, typer.Option(help="run --good and --bad first to confirm them")] = False,
    out: Annotated[Path | None, typer.Option(help="bisect folder (default results/bisect-<id>)")] = None,
    min_phantoms: Annotated[int, typer.Option(help="REPRODUCED counts only with this many phantoms …")] = 0,
    min_leaked: Annotated[float, typer.Option(help="… or this much leaked $; weaker evidence counts as clean")] = 0.0,
    resume: Annotated[Path | None, typer.Option(help="reuse the probes of an earlier results/bisect-<id>")] = None,
    exclusive: ExclusiveOpt = False,
    exclusive_wait: ExclusiveWaitOpt = DEFAULT_EXCLUSIVE_WAIT_S,
    json_out: JsonOpt = False,
    junit: JunitOpt = None,
) -> None:
    """First released version where the outcome changes (first bad, or first fixed when bad is older)."""
    from harness.matrix import run_bisect
    from harness.results_io import ResultsOutput, bisect_results
    from harness.run.experiment import RunOptions

    results = ResultsOutput(json_out, junit)
    with results.capture():
        res, out_dir = run_bisect(scenario, good, bad, duration, check_ends, out, console, min_phantoms,
                                  min_leaked, resume,
                                  options=RunOptions(exclusive=exclusive, exclusive_wait_s=exclusive_wait))
    results.emit(bisect_results(res, res.exit_code, str(out_dir.absolute())))
    raise typer.Exit(res.exit_code)


@app.command()
def catalog(
    versions: Annotated[str | None, typer.Option(help="comma-separated versions to keep (default: each's own)")] = None,
    scenarios: Annotated[str | None, typer.Option(help="comma-separated scenario names (default: all)")] = None,
    update_readme: Annotated[bool, typer.Option(help="write the outcome table into scenarios/README.md")] = False,
    schema_only: Annotated[bool, typer.Option(help="only refresh the schema and catalog list in the README")] = False,
    duration: Annotated[float | None, typer.Option(help="override the load duration (s)")] = None,
    reanalyze: Annotated[bool, typer.Option(help="re-analyse the run folders the README table links, "
                                            "without running anything")] = False,
    repeat: RepeatOpt = 1,
    exclusive: ExclusiveOpt = False,
    exclusive_wait: ExclusiveWaitOpt = DEFAULT_EXCLUSIVE_WAIT_S,
    add_runs: Annotated[str | None, typer.Option(help="comma-separated finished run folders of catalog scenarios "
                                                      "to put into the README table (read, not re-run)")] = None,
    json_out: JsonOpt = False,
    junit: JunitOpt = None,
) -> None:
    """Each catalog scenario on the versions it names, one run at a time: the outcome table."""
    from harness.matrix.catalog import catalog_command
    from harness.matrix.execute import CellResult
    from harness.results_io import ResultsOutput, cells_results
    from harness.run.experiment import RunOptions

    results = ResultsOutput(json_out, junit)
    cells: list[CellResult] = []
    out_dirs: list[Path] = []
    with results.capture():
        code = catalog_command(versions, scenarios, update_readme, schema_only, duration, console,
                               reanalyze=reanalyze, on_cell=cells.append, on_out_dir=out_dirs.append,
                               add_runs=[Path(p.strip()) for p in (add_runs or "").split(",") if p.strip()],
                               repeat=repeat,
                               options=RunOptions(exclusive=exclusive, exclusive_wait_s=exclusive_wait))
    results.emit(cells_results("catalog", cells, code, str(out_dirs[0].absolute()) if out_dirs else None))
    raise typer.Exit(code)


@report_app.command("post")
def report_post(
    run_dir: Annotated[Path, typer.Argument(help="a run folder with report.md, results/<run-id>")],
    repo: Annotated[str, typer.Option(help="OWNER/REPO of the issue, e.g. BerriAI/litellm")],
    issue: Annotated[int, typer.Option(min=1, help="issue (or pull request) number")],
    push_images: Annotated[bool, typer.Option(help="commit the linked PNGs to --branch of --fork and link "
                                                   "their raw URLs (else one line says they are in the run "
                                                   "folder)")] = False,
    fork: Annotated[str | None, typer.Option(help="OWNER/REPO you can push to (with --push-images)")] = None,
    branch: Annotated[str, typer.Option(help="branch of --fork for the PNGs; created from the fork's default "
                                             "branch when missing")] = "harness-reports",
) -> None:
    """Post report.md as a comment on an issue with `gh`; prints the comment's URL."""
    from harness.report_post import post_report

    print(post_report(run_dir, repo, issue, push_images=push_images, fork=fork, branch=branch))


@app.command()
def doctor() -> None:
    """Check binaries, ports, disk, Node, cached versions; say what to fix."""
    from harness.doctor import run_doctor

    raise typer.Exit(run_doctor(console=console))


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted(f"signal {signum}")


def main() -> NoReturn:
    """`harness …`; `harness run … --bisect` exits only with 0, 1, 125 or 130 whatever ends it (git bisect run)."""
    args = sys.argv[1:]
    if not (args[:1] == ["run"] and "--bisect" in args):
        _main()
    from harness.matrix.gitbisect import SKIP_EXIT, cli_exit, say

    try:
        _main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) or exc.code is None else SKIP_EXIT
    except KeyboardInterrupt:
        code = 130
    except BaseException:     # a crash must not read as "bad" (exit 1)
        import traceback

        traceback.print_exc()
        say(console, SKIP_EXIT, "this commit could not be tested (the harness crashed)")
        sys.exit(SKIP_EXIT)
    final = cli_exit(code)
    if final != code:
        say(console, final, f"this commit could not be tested (harness exit {code})")
    sys.exit(final)


def _main() -> NoReturn:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        rc = app(standalone_mode=False)
    except HarnessError as exc:
        console.print("[bold red]error:[/] ", end="", soft_wrap=True)
        console.print(exc.line(), highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, Interrupted):
        console.print("[yellow]interrupted: everything started was stopped[/]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
