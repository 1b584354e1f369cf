"""One cell of a matrix / one bisect probe: a scenario on a LiteLLM version → `CellResult`.

The matrix and bisect logic only see the `Runner` protocol, so they are tested with a fake runner.
`RealRunner` builds (or reuses) the version's environment, calls `run_scenario` with the cell's run folder
and reads the numbers back (`read_run_folder`): the flat summary of verdict.json
(harness.analyze.summary, which also reads the schema-1 files of older run folders) and the latency
percentiles of requests.csv.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console

from harness.analyze.summary import outcome_of, read_summary
from harness.errors import HarnessError
from harness.run.runfolder import REQUESTS_FILE, VERDICT_FILE

if TYPE_CHECKING:
    from harness.run.experiment import RunOptions

# Cell status: the run happened (ok), the version cannot be installed, the scenario cannot run on that
# version (a setting it lacks), or something broke (stack did not come up, analysis failed).
OK, UNINSTALLABLE, UNSUPPORTED, ERROR = "ok", "uninstallable", "unsupported", "error"


@dataclass
class CellResult:
    """What one run of one scenario on one version showed. Numbers are None when not measured."""

    scenario: str
    version: str
    status: str = OK
    verdict: str | None = None           # REPRODUCED | NOT REPRODUCED | INCONCLUSIVE
    expected: str | None = None          # reproduced | clean (the scenario's expectation for the version)
    phantoms: int | None = None          # phantom budget rejections
    phantom_users: int | None = None
    first_phantom_s: float | None = None          # seconds after the load started
    max_inflation_usd: float | None = None       # max over time of Σ Redis counters − Σ true spend (high)
    user_max_inflation_usd: float | None = None  # the same for the worst single end user
    leaked_usd: float | None = None      # leaked reservations still on the counters after the drain
    leaked_users: int | None = None
    deflated_usd: float | None = None    # counters below the true spend after the drain
    deflated_users: int | None = None
    requests: int | None = None
    req_per_s: float | None = None
    p50_s: float | None = None           # latency of HTTP 200 requests
    p99_s: float | None = None
    wall_s: float | None = None          # the whole cell: env + stack + load + drain + analysis
    env_s: float | None = None           # building / checking the version's environment
    run_dir: str = ""
    reason: str = ""                     # first verdict reason, or why the cell did not run
    repeat: int = 1
    starved: bool | None = None          # the stack was starved during the load (None: not recorded)
    foreign_cpu_share: float | None = None   # CPU share of the machine taken outside this run (+ steal)

    @property
    def outcome(self) -> str | None:
        """The scenario's outcome label: reproduced / clean, None when the run decided nothing."""
        if self.status != OK:
            return None
        return outcome_of(self.verdict)

    @property
    def matches(self) -> bool | None:
        """Does the cell agree with its expectation? None: not applicable (version cannot run the scenario).

        INCONCLUSIVE and errors do not match: a release gate cannot pass a cell that decided nothing.
        """
        if self.status in (UNINSTALLABLE, UNSUPPORTED):
            return None
        return self.outcome is not None and self.outcome == self.expected

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out["match"] = {True: "yes", False: "no", None: "n/a"}[self.matches]
        return out

    @classmethod
    def from_row(cls, row: dict[str, str]) -> CellResult:
        """Back from a matrix.csv row (a baseline)."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            raw = row.get(f.name, "")
            if raw in ("", None):
                if f.name in ("scenario", "version", "run_dir", "reason", "status"):
                    kwargs[f.name] = raw or (OK if f.name == "status" else "")
                continue
            kind = str(f.type)
            if kind.startswith("bool"):
                kwargs[f.name] = raw.strip().lower() in ("true", "1", "yes")
            elif kind.startswith("int"):
                kwargs[f.name] = int(float(raw))
            elif kind.startswith("float"):
                kwargs[f.name] = float(raw)
            else:
                kwargs[f.name] = raw
        return cls(**kwargs)


class Runner(Protocol):
    """Run `scenario_path` on LiteLLM `version` with its run folder at `out_dir`."""

    def __call__(self, scenario_path: Path, version: str, out_dir: Path) -> CellResult: ...


class RealRunner:
    """The real thing: env (cached), `run_scenario` (stack up → load → drain → stack down → analysis)."""

    def __init__(self, console: Console, duration: float | None = None, retry_errors: int = 1,
                 backend: str | None = None, options: RunOptions | None = None) -> None:
        self.console = console
        self.duration = duration
        self.retry_errors = retry_errors    # a stack that did not come up (port race, slow start) is retried
        self.backend = backend              # None: each scenario's own
        self.options = options              # the other `harness run` options of every cell (--exclusive, …)

    def __call__(self, scenario_path: Path, version: str, out_dir: Path) -> CellResult:
        from harness.litellm import candidate
        from harness.litellm import env as litellm_env
        from harness.run.experiment import RunOptions, resolve_scenario, run_scenario
        from harness.scenario.model import load_scenario

        t0 = time.monotonic()
        name = load_scenario(scenario_path).name
        cell = CellResult(scenario=name, version=version, run_dir=str(out_dir))
        opts = replace(self.options or RunOptions(), litellm=version, out=out_dir, duration=self.duration,
                       backend=self.backend)
        try:
            candidate.parse(version)        # a release, or a wheel / source tree (its path or its label)
        except HarnessError as exc:
            return _done(cell, t0, status=UNINSTALLABLE, reason=exc.problem)
        try:
            scenario = resolve_scenario(scenario_path, opts)
        except HarnessError as exc:
            return _done(cell, t0, status=UNSUPPORTED, reason=exc.problem)
        cell.expected = scenario.expectation_for(scenario.litellm)      # a candidate's declared version
        try:
            if scenario.backend == "local":     # a local environment; Compose runs the version's image
                litellm_env.ensure(version, console=self.console)
        except HarnessError as exc:
            return _done(cell, t0, status=UNINSTALLABLE, reason=exc.problem)
        cell.env_s = round(time.monotonic() - t0, 1)
        for attempt in range(self.retry_errors + 1):
            if attempt:
                out_dir = out_dir.with_name(f"{out_dir.name.split('.retry')[0]}.retry{attempt}")
                opts.out = out_dir
                cell.run_dir = str(out_dir)
                self.console.print(f"[yellow]LiteLLM {version}: {cell.reason} — retrying once in {out_dir}[/]")
            try:
                code = run_scenario(scenario_path, opts, console=self.console)
                break
            except HarnessError as exc:
                cell.reason = exc.line()
        else:
            return _done(cell, t0, status=ERROR)
        cell.reason = ""
        read_run_folder(cell, out_dir)
        if cell.verdict is None:
            cell.status = ERROR
            cell.reason = cell.reason or f"no {VERDICT_FILE} (analysis exit code {code})"
        return _done(cell, t0)


def _done(cell: CellResult, t0: float, **changes: Any) -> CellResult:
    for key, value in changes.items():
        setattr(cell, key, value)
    cell.wall_s = round(time.monotonic() - t0, 1)
    return cell


def read_run_folder(cell: CellResult, run_dir: Path) -> CellResult:
    """Fill `cell` from a finished run folder: the summary of verdict.json (+ requests.csv for latency)."""
    summary = read_summary(run_dir)
    if summary is None:
        return cell
    cell.verdict = summary.verdict
    cell.expected = summary.expected or cell.expected
    cell.reason = summary.reason[:300]
    for name in ("phantoms", "phantom_users", "first_phantom_s", "max_inflation_usd", "user_max_inflation_usd",
                 "leaked_usd", "leaked_users", "deflated_usd", "deflated_users", "requests", "req_per_s",
                 "starved", "foreign_cpu_share"):
        setattr(cell, name, getattr(summary, name))
    cell.p50_s, cell.p99_s = latency_percentiles(run_dir / REQUESTS_FILE)
    return cell


def latency_percentiles(path: Path) -> tuple[float | None, float | None]:
    """p50 / p99 of `latency_s` over the HTTP 200 rows of requests.csv."""
    if not path.exists():
        return None, None
    import pandas as pd

    try:
        frame = pd.read_csv(path, usecols=["status", "latency_s"], on_bad_lines="skip")
    except (ValueError, pd.errors.EmptyDataError):
        return None, None
    status = pd.to_numeric(frame["status"], errors="coerce")
    lat = pd.to_numeric(frame["latency_s"], errors="coerce")[status == 200].dropna()
    if lat.empty:
        return None, None
    p50, p99 = (float(lat.quantile(q)) for q in (0.5, 0.99))
    return (round(p50, 4) if math.isfinite(p50) else None), (round(p99, 4) if math.isfinite(p99) else None)
