"""The verdict.json contract other stages read: the verdict words, the schema version and the flat `summary`.

verdict.json (harness/run/runfolder.VERDICT_FILE) holds the analyzer's full evidence (sections per check, see
harness/analyze/README.md); programs read only its `summary` object, one flat `Summary` (numbers and the
verdict), through `read_summary(run_dir)`:

- schema 2 (this code): `summary` is written by the analyzer (each check fills its fields, see
  harness/analyze/checks/);
- schema 1 (run folders analysed before the checks became units, e.g. main at ca743df) has no `summary`:
  `Summary.from_verdict` derives it from the old sections, here and nowhere else. A reader that wants the
  new fields filled in can re-run the analyzer instead (`harness analyze`, `harness catalog --reanalyze`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from harness.run.runfolder import VERDICT_FILE

SCHEMA_VERSION = 2
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "REPRODUCED", "NOT REPRODUCED", "INCONCLUSIVE"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
# a scenario's expectation words (scenario `expect`) and the verdict each one means
OUTCOMES = {REPRODUCED: "reproduced", NOT_REPRODUCED: "clean"}

Value = int | float | str | bool | None


def outcome_of(verdict: str | None) -> str | None:
    """reproduced / clean for a verdict that decided something, None for INCONCLUSIVE (or no verdict)."""
    return OUTCOMES.get(verdict or "")


class Summary(BaseModel):
    """One run in numbers: what the matrix, the catalog, the report and the console line show.

    None: not measured (the check did not run, or an old verdict.json lacks it). Money in $.
    """

    # unknown keys are ignored: a newer analyzer may add fields an older reader does not know
    model_config = ConfigDict(extra="ignore", frozen=True)

    verdict: str | None = None
    expected: str | None = None                 # reproduced | clean (the scenario's expectation for the version)
    matches_expectation: bool | None = None
    reason: str = ""                            # the verdict's reasons, joined by "; "
    scenario: str | None = None
    litellm_version: str | None = None
    # the load (sanity check)
    requests: int | None = None
    requests_ok: int | None = None
    requests_budget: int | None = None
    requests_upstream: int | None = None
    requests_disconnect: int | None = None      # our own walk-aways
    requests_other: int | None = None           # stack errors
    load_s: float | None = None
    req_per_s: float | None = None
    # phantom rejections
    rejections: int | None = None               # every failed request but our own walk-aways
    budget_rejections: int | None = None
    phantoms: int | None = None
    late_release_rejections: int | None = None  # looked phantom, but the counter came back down later (not a leak)
    phantom_users: int | None = None
    phantom_share_of_rejections: float | None = None
    first_phantom_s: float | None = None        # seconds after the load started
    # inflation over time
    counter_source: str | None = None           # redis (the sampler read Redis) | probe (counters in process memory,
                                                # read by the in-process probe: probes.csv)
    counters_observed: int | None = None
    max_inflation_usd: float | None = None      # max over time of Σ Redis counters − Σ true spend (high)
    user_max_inflation_usd: float | None = None  # the same for the worst single end user
    # the drain (conservation) check; the numbers are None when it did not run
    drain_ran: bool | None = None
    drain_why_not: str | None = None
    users_checked: int | None = None
    leaked_users: int | None = None
    leaked_usd: float | None = None             # leaked reservations still on the counters after the drain
    counter_total_usd: float | None = None
    db_total_usd: float | None = None
    true_low_total_usd: float | None = None
    true_high_total_usd: float | None = None
    billing_disagreement_usd: float | None = None   # largest billing-sized DB-vs-ledger gap of one end user
    within_billing_users: int | None = None     # counters above the band after the drain, within billing
    # orphaned reservations over time: counter excess with no request left that could hold it
    orphaned_users: int | None = None
    orphaned_usd: float | None = None           # Σ over those end users of their largest orphaned excess
    orphaned_expired_users: int | None = None   # of those, whose counter was gone (expired) at the drain sample
    # deflation: counters below the true spend (low bound) after the drain
    deflated_users: int | None = None
    deflated_usd: float | None = None
    # every counter kind (checks/counter_kinds.py): the run's own keys and teams, judged like end users (None: the
    # run created none, e.g. a folder from before)
    kinds_judged: str | None = None             # e.g. "key,team"
    kind_phantoms: int | None = None            # phantom rejections naming a key or team of the run
    kind_phantom_entities: int | None = None
    first_kind_phantom_s: float | None = None
    key_phantoms: int | None = None
    team_phantoms: int | None = None
    kind_leaked_entities: int | None = None     # keys/teams with leaked reservations after the drain
    kind_leaked_usd: float | None = None
    key_leaked_usd: float | None = None
    team_leaked_usd: float | None = None
    kind_orphaned_entities: int | None = None
    kind_orphaned_usd: float | None = None
    kind_max_ratio: float | None = None         # largest counter / max(true spend, DB spend) of one key or team
                                                # after the drain (N× inflation)
    kind_unheld_entities: int | None = None     # probed in-process counters (counters: memory) read above the true
    kind_unheld_usd: float | None = None        # spend by more than the requests in flight could hold (Σ worst)
    # fault coverage: fault windows that errored or never started (None: the run folder does not record it)
    fault_problems: int | None = None
    # completeness: blockers + vetoes about missing evidence (interrupted run, ground truth, sampler gaps)
    evidence_problems: int | None = None
    unmatched_ledger_rows: int | None = None       # ledger rows naming no end user of the scenario
    # per-request billing reconciliation: LiteLLM's spend-log rows vs the ledger (never the verdict; None: not
    # measured — no spend logs, or a run folder from before they were collected; harness/analyze/reconcile.py)
    reconciled_requests: int | None = None      # requests with a spend-log row judged against the ledger
    overbilled_requests: int | None = None      # billed more than the upstream delivered
    overbilled_usd: float | None = None
    underbilled_requests: int | None = None     # billed less than the upstream delivered (cut streams included)
    underbilled_usd: float | None = None
    unbilled_requests: int | None = None        # delivered upstream, no spend-log row after the drain
    unbilled_usd: float | None = None
    # contention: was the stack starved during the load (None: not recorded; rule: analyze/checks/contention.py)
    starved: bool | None = None
    foreign_cpu_share: float | None = None      # CPU share of the machine taken outside this run (+ steal)
    other_stacks: int | None = None             # other harness stacks running at the same time (most at once)

    @property
    def outcome(self) -> str | None:
        return outcome_of(self.verdict)

    @classmethod
    def from_verdict(cls, ev: dict[str, Any]) -> Summary:
        """The summary of a parsed verdict.json: its `summary` object, or (schema 1) derived from its sections."""
        if isinstance(ev.get("summary"), dict):
            return cls.model_validate(ev["summary"])
        return cls.model_validate(_from_sections(ev))


def read_summary(run_dir: Path) -> Summary | None:
    """The summary of a run folder's verdict.json; None when there is none or it cannot be read."""
    path = Path(run_dir) / VERDICT_FILE
    try:
        ev = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return Summary.from_verdict(ev) if isinstance(ev, dict) else None


def _from_sections(ev: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 (no `summary`): the same numbers from the nested sections it had."""

    def sec(name: str) -> dict[str, Any]:
        value = ev.get(name)
        return value if isinstance(value, dict) else {}

    def value_of(obj: Any) -> Any:
        return obj.get("value") if isinstance(obj, dict) else None

    req, ph, infl, dr = sec("requests"), sec("phantom"), sec("inflation"), sec("drain")
    by_class: dict[str, Any] = req["by_class"] if isinstance(req.get("by_class"), dict) else {}
    load_s = sec("time").get("load_s")
    total = req.get("total")
    ran = dr.get("ran")
    first: dict[str, Any] = ph["first"] if isinstance(ph.get("first"), dict) else {}
    out: dict[str, Any] = {
        "verdict": ev.get("verdict"), "expected": ev.get("expected"),
        "matches_expectation": ev.get("matches_expectation"),
        "reason": "; ".join(ev.get("reasons") or []), "scenario": ev.get("scenario"),
        "litellm_version": ev.get("litellm_version"),
        "requests": total, "load_s": load_s,
        "req_per_s": round(total / load_s, 2) if total is not None and load_s else None,
        "rejections": ph.get("rejections"), "budget_rejections": ph.get("budget_rejections"),
        "phantoms": ph.get("count"), "phantom_users": ph.get("affected_end_users"),
        "phantom_share_of_rejections": ph.get("share_of_rejections"), "first_phantom_s": first.get("t_rel"),
        "counters_observed": infl.get("counters_observed"),
        "max_inflation_usd": value_of(infl.get("total_max_counter_minus_true_high")),
        "user_max_inflation_usd": value_of(infl.get("user_max_counter_minus_true_high")),
        "drain_ran": ran, "drain_why_not": dr.get("why_not"),
    }
    for cls_name in ("ok", "budget", "upstream", "disconnect", "other"):
        out[f"requests_{cls_name}"] = by_class.get(cls_name)
    if ran:
        out.update({
            "users_checked": dr.get("users_checked"), "leaked_users": dr.get("leaked_users"),
            "leaked_usd": dr.get("leaked_total"), "counter_total_usd": dr.get("counter_total"),
            "db_total_usd": dr.get("db_total"), "true_low_total_usd": dr.get("true_low_total"),
            "true_high_total_usd": dr.get("true_high_total"), "deflated_users": dr.get("undercounted_users"),
            "deflated_usd": dr.get("undercounted_total"),
        })
    return out
