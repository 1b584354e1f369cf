"""The machine-readable results (`--json`): pydantic models, defined here once; docs/results-schema.json is
generated from them (`python -m harness.results_io`) and a test keeps the committed file equal to it.

One document per command: `RunResults` (run, analyze: one run folder), `CellsResults` (matrix, catalog: one
entry per run of a cell) or `BisectResults` (bisect: the probes and the answer). All carry `schema`
(RESULTS_SCHEMA, bumped when a field changes meaning or goes away; new fields may appear without a bump) and
`command`, which tells them apart.

Each run / cell also has a `gate` — passed | failed | error | skipped — the one classification the JSON counts,
the JUnit file (harness/results_io/junit.py) and the exit code agree on:

- passed: the verdict matches the expectation;
- failed: it does not (including INCONCLUSIVE: a release gate cannot pass a run that decided nothing);
- error: the harness could not produce a verdict (stack did not come up, analysis failed; cell status `error`);
- skipped: the version cannot run the scenario (cell status `uninstallable` / `unsupported`), or the run
  contradicts its expectation but its stack was starved (`starved`: another harness stack or foreign CPU
  during the load; the repeats' agreement rule in harness/matrix/cells.py sets it aside); not counted by the
  gate.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, RootModel

from harness.analyze.summary import Summary
from harness.matrix.bisect import BisectResult
from harness.matrix.execute import ERROR, OK, UNINSTALLABLE, UNSUPPORTED, CellResult

RESULTS_SCHEMA = 1
Gate = Literal["passed", "failed", "error", "skipped"]


def verdict_line(verdict: str | None, expected: str | None, status: str = OK, reason: str = "") -> str:
    """The one line a failure shows: "REPRODUCED — expected clean", or "uninstallable: <why>" for a cell that
    did not run."""
    if status != OK:
        return f"{status}: {reason}" if reason else status
    return f"{verdict or 'no verdict'} — expected {expected or 'nothing'}"


def cell_gate(status: str, matches: bool | None, starved: bool | None = None) -> Gate:
    if status in (UNINSTALLABLE, UNSUPPORTED):
        return "skipped"
    if status == ERROR:
        return "error"
    if matches:
        return "passed"
    return "skipped" if starved else "failed"


def _typed_command() -> str:
    from harness.matrix.matrix import command_line

    return command_line(sys.argv[1:])


class _Doc(BaseModel):
    # `schema` is a (deprecated) BaseModel method, so the field is named schema_version and spelled `schema`
    # in the JSON (serialization alias; reading accepts both spellings)
    # every field is always written: the schema of the output says so (defaults are for building, not reading)
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    schema_version: int = Field(default=RESULTS_SCHEMA, serialization_alias="schema",
                                validation_alias=AliasChoices("schema", "schema_version"),
                                description="Version of this document's layout (RESULTS_SCHEMA).")
    exit_code: int = Field(description="The command's exit code: 0 every verdict matched its expectation, 1 one "
                                       "did not (or decided nothing), 130 interrupted.")
    command_line: str = Field(default_factory=_typed_command,
                              description="The command as typed, e.g. `harness matrix --versions 1.84.0 --json`.")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class Counts(BaseModel):
    """How many runs / cells ended in each gate."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    passed: int = Field(0, description="verdict matches the expectation")
    failed: int = Field(0, description="verdict contradicts the expectation, or is INCONCLUSIVE")
    error: int = Field(0, description="no verdict: the harness broke (stack, analysis)")
    skipped: int = Field(0, description="the version cannot run the scenario (uninstallable / unsupported)")

    @classmethod
    def of(cls, gates: list[Gate]) -> Counts:
        return cls(passed=gates.count("passed"), failed=gates.count("failed"), error=gates.count("error"),
                   skipped=gates.count("skipped"))


class RunResults(_Doc):
    """`harness run --json` / `harness analyze --json`: one run folder and its verdict.json summary."""

    command: Literal["run", "analyze"] = Field(description="The harness command that wrote this document.")
    run_dir: str = Field(description="The run folder (absolute).")
    report: str | None = Field(description="report.md in the run folder; null when the analysis did not write it.")
    gate: Gate = Field(description="passed | failed | error (no verdict.json) — see the module docs.")
    verdict_line: str = Field(description='e.g. "REPRODUCED — expected clean": the JUnit failure message.')
    summary: Summary | None = Field(description="verdict.json's flat `summary` (harness/analyze/summary.py); "
                                                "null when the run has no readable verdict.json.")


class CellEntry(BaseModel):
    """One run of one scenario on one LiteLLM version (a matrix repeat or a catalog cell): the matrix's
    CellResult (harness/matrix/execute.py) plus what it implies. Numbers are null when not measured."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    scenario: str = Field(description="Scenario name (JUnit classname).")
    version: str = Field(description="LiteLLM version (JUnit name, with ` r<repeat>` for repeats > 1).")
    repeat: int = Field(1, description="Which repeat of the cell this run is (1-based).")
    status: str = Field(description="ok | uninstallable | unsupported | error: did the run happen.")
    gate: Gate = Field(description="passed | failed | error | skipped — see the module docs.")
    verdict_line: str = Field(description='e.g. "REPRODUCED — expected clean" or "uninstallable: <why>".')
    verdict: str | None = Field(None, description="REPRODUCED | NOT REPRODUCED | INCONCLUSIVE; null if no run.")
    expected: str | None = Field(None, description="reproduced | clean: the scenario's expectation for the version.")
    matches: bool | None = Field(None, description="Verdict agrees with the expectation; null: not applicable.")
    phantoms: int | None = Field(None, description="Phantom budget rejections.")
    phantom_users: int | None = Field(None, description="End users who got a phantom rejection.")
    first_phantom_s: float | None = Field(None, description="First phantom, seconds after the load started.")
    max_inflation_usd: float | None = Field(None, description="Max over time of Σ Redis counters − Σ true spend.")
    user_max_inflation_usd: float | None = Field(None, description="The same for the worst single end user.")
    leaked_usd: float | None = Field(None, description="Leaked reservations on the counters after the drain.")
    leaked_users: int | None = Field(None, description="End users whose counter leaked.")
    deflated_usd: float | None = Field(None, description="Counters below the true spend after the drain.")
    deflated_users: int | None = Field(None, description="End users whose counter is deflated.")
    requests: int | None = Field(None, description="Requests sent during the load.")
    req_per_s: float | None = Field(None, description="Requests per second over the load.")
    p50_s: float | None = Field(None, description="Median latency of HTTP 200 requests (s).")
    p99_s: float | None = Field(None, description="99th percentile latency of HTTP 200 requests (s).")
    wall_s: float | None = Field(None, description="The whole cell: env + stack + load + drain + analysis (s).")
    env_s: float | None = Field(None, description="Building / checking the version's environment (s).")
    run_dir: str = Field("", description="The run folder (a matrix's: relative to its matrix folder).")
    reason: str = Field("", description="First verdict reasons, or why the cell did not run.")
    starved: bool | None = Field(None, description="The stack was starved during the load (another harness stack "
                                                   "or foreign CPU); null: not recorded.")
    foreign_cpu_share: float | None = Field(None, description="CPU share of the machine taken outside the run "
                                                              "during the load (+ hypervisor steal).")

    @classmethod
    def of(cls, cell: CellResult) -> CellEntry:
        # only the fields this model knows: a CellResult field added later must not lose a finished matrix's
        # output (tests/results_io checks that every CellResult field is here)
        known = {k: v for k, v in asdict(cell).items() if k in cls.model_fields}
        return cls(**known, matches=cell.matches, gate=cell_gate(cell.status, cell.matches, cell.starved),
                   verdict_line=verdict_line(cell.verdict, cell.expected, cell.status, cell.reason))


class CellsResults(_Doc):
    """`harness matrix --json` / `harness catalog --json` / `harness run --repeat N --json` (command
    `run-repeat`): one entry per run, in the order they ran."""

    command: Literal["matrix", "catalog", "run-repeat"] = Field(
        description="The harness command that wrote this document.")
    out_dir: str | None = Field(description="The matrix / catalog folder (matrix.md, catalog.csv); null when the "
                                            "command wrote none (catalog --reanalyze, --schema-only).")
    counts: Counts = Field(description="Runs per gate.")
    cells: list[CellEntry] = Field(description="One entry per run (per repeat), in the order they ran.")


class BisectProbe(BaseModel):
    """One version `harness bisect` ran (harness/matrix/bisect.py Probe), in the order it ran."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    step: int = Field(description="1-based; end checks (--check-ends) come first.")
    version: str = Field(description="LiteLLM version probed (JUnit name).")
    status: str = Field(description="ok | uninstallable | unsupported | error: did the run happen.")
    verdict: str | None = Field(description="REPRODUCED | NOT REPRODUCED | INCONCLUSIVE; null if no run.")
    outcome: str | None = Field(description="reproduced | clean as the search counted it (after --min-phantoms / "
                                            "--min-leaked); null: the probe decided nothing and was skipped.")
    gate: Gate = Field(description="passed: the probe decided its side; skipped: uninstallable / unsupported; "
                                   "error: the stack broke; failed: ran but decided nothing (INCONCLUSIVE).")
    range_before: str = Field(description="The (lo..hi) range when the version was chosen.")
    decision: str = Field(description="What the search did with the probe, e.g. \"first change is after 1.90.0\".")
    phantoms: int | None = Field(description="Phantom budget rejections.")
    leaked_usd: float | None = Field(description="Leaked reservations on the counters after the drain.")
    wall_s: float | None = Field(description="The whole probe (s).")
    run_dir: str = Field(description="The probe's run folder, relative to the bisect folder.")
    reason: str = Field(description="Why the probe decided nothing (uv's resolver reason, the stack error), else \"\".")


class BisectResults(_Doc):
    """`harness bisect --json`: the probes, in the order they ran, and the answer."""

    command: Literal["bisect"] = Field(description="The harness command that wrote this document.")
    out_dir: str = Field(description="The bisect folder (bisect.md, bisect.csv, runs/).")
    scenario: str = Field(description="Scenario name.")
    good: str = Field(description="--good: a version where the scenario is clean.")
    bad: str = Field(description="--bad: a version where it reproduces.")
    direction: Literal["first bad", "first fixed"] = Field(
        description="first bad (good older than bad) or first fixed (bad older than good).")
    first: str | None = Field(description="The first version with the newer end's outcome (the first bad or the "
                                          "first fixed release); null when an end did not show its outcome. When "
                                          "`exact` is false it is the last of `candidates`.")
    last_before: str | None = Field(description="The last version known with the older end's outcome.")
    exact: bool = Field(description="true: `first` is the answer; false: one of `candidates` is, or no answer.")
    candidates: list[str] = Field(description="Versions the answer may be: [first] when exact, else the "
                                              "undecided versions then `first`; [] when there is no answer.")
    headline: str = Field(description="The answer as bisect.md states it.")
    error: str = Field(description="Why there is no answer (an end did not show its stated outcome), else \"\".")
    excluded: dict[str, str] = Field(description="Releases between the ends the harness did not try, and why.")
    probes: list[BisectProbe] = Field(description="Every probe, in the order it ran.")


class Results(RootModel[Annotated[RunResults | CellsResults | BisectResults, Field(discriminator="command")]]):
    """What `harness run|analyze|matrix|catalog|bisect --json` prints: exactly one JSON object on stdout."""


def cells_results(command: Literal["matrix", "catalog", "run-repeat"], cells: list[CellResult], exit_code: int,
                  out_dir: str | None) -> CellsResults:
    entries = [CellEntry.of(c) for c in cells]
    return CellsResults(command=command, exit_code=exit_code, out_dir=out_dir,
                        counts=Counts.of([e.gate for e in entries]), cells=entries)


def probe_gate(status: str, outcome: str | None) -> Gate:
    if status in (UNINSTALLABLE, UNSUPPORTED):
        return "skipped"
    if status == ERROR:
        return "error"
    return "passed" if outcome is not None else "failed"


def bisect_results(res: BisectResult, exit_code: int, out_dir: str) -> BisectResults:
    probes = [BisectProbe(step=p.step, version=p.version, status=p.result.status, verdict=p.result.verdict,
                          outcome=p.outcome, gate=probe_gate(p.result.status, p.outcome),
                          range_before=f"{p.range_before[0]}..{p.range_before[1]}", decision=p.decision,
                          phantoms=p.result.phantoms, leaked_usd=p.result.leaked_usd, wall_s=p.result.wall_s,
                          run_dir=p.result.run_dir, reason=p.result.reason if p.outcome is None else "")
              for p in res.probes]
    first = res.first
    candidates = [] if first is None else [*res.ambiguous, first]
    return BisectResults(command="bisect", exit_code=exit_code, out_dir=out_dir, scenario=res.scenario,
                         good=res.good, bad=res.bad, direction=res.direction,  # type: ignore[arg-type]
                         first=first, last_before=(res.lo or None) if first is not None else None,
                         exact=res.exact, candidates=candidates, headline=res.headline(), error=res.error,
                         excluded=dict(res.excluded), probes=probes)


def run_gate(summary: Summary | None) -> Gate:
    if summary is None or summary.verdict is None:
        return "error"
    return "passed" if summary.matches_expectation else "failed"


def schema_document() -> dict[str, Any]:
    """The JSON Schema of `Results` (what docs/results-schema.json holds)."""
    doc = Results.model_json_schema(by_alias=True, mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **doc}


def schema_text() -> str:
    return json.dumps(schema_document(), indent=2, ensure_ascii=False) + "\n"

