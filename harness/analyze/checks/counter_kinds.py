"""Every counter kind: the run's own virtual keys and teams (`spend:key:<hashed token>`, `spend:team:<team_id>`),
judged exactly as end users are — by the same functions, on an entity view of the context
(harness/analyze/entities.py): leaked reservations after the drain (`judge_drain`), orphaned reservations over
time (`judge_orphans`), N× inflation (a counter far above its entity's true spend after the drain is a leak;
its ratio is reported) — counted as `leak` — and phantom rejections (`judge_rejections`), counted as `phantom` by
the `kind_phantom` check after it.

Kinds the run did not create (the master key's counter, users, orgs: counters.csv of a run without keys of its
own) have no ground truth here: they are evidence only (`observed`: counters, Σ counter vs Σ DB spend at the end).
A run folder without counters.csv and without entities of its own (every folder from before they existed) gets
nothing from these checks: no section, no finding, no note, no summary number — its verdict is what it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.analyze.checker import Check, CheckResult, Results, prerequisite
from harness.analyze.checks.drain import DrainResult, judge_drain
from harness.analyze.checks.inflation import InflationResult, measure_inflation, version_has_counters
from harness.analyze.checks.orphans import OrphanResult, UnheldResult, judge_orphans, judge_unheld
from harness.analyze.checks.phantom import PhantomResult, judge_rejections
from harness.analyze.checks.sanity import MIN_REQUESTS
from harness.analyze.context import Context
from harness.analyze.entities import KINDS, Entity, entity_view, observed_kinds, run_entities
from harness.analyze.jsonable import num
from harness.analyze.report import secs
from harness.util.fmt import money


@dataclass
class KindResult:
    kind: str
    entities: list[Entity]
    view: Context
    inflation: InflationResult
    phantom: PhantomResult
    drain: DrainResult
    orphans: OrphanResult
    unheld: UnheldResult | None = None     # probed in-process counters only (see judge_kinds)

    def per_entity(self) -> list[dict[str, Any]]:
        """One row per entity: budget, counter / DB / true spend at the drain sample, leaked, phantoms, ratio."""
        rows: list[dict[str, Any]] = []
        dr = self.drain.table if self.drain.ran else None
        ph = self.phantom.table
        orph = self.orphans.table
        for code, e in enumerate(sorted(self.entities, key=lambda x: x.index)):
            row: dict[str, Any] = {"name": e.name, "counter_id": e.counter_id, "budget": e.budget}
            if e.team is not None:
                row["team"] = e.team
            if dr is not None and len(dr) and (dr["code"] == code).any():
                d = dr.loc[dr["code"] == code].iloc[0]
                reference = max(float(d["true_high"]), float(np.nan_to_num(d["db"])))
                row.update(counter=num(d["counter"]), db=num(d["db"]), true_low=num(d["true_low"]),
                           true_high=num(d["true_high"]), leaked=num(d["leaked"]),
                           ratio=num(d["counter"] / reference) if reference > 0 else None)
            row["phantoms"] = int((ph["phantom"] & (ph["end_user"] == e.name)).sum()) if len(ph) else 0
            row["orphaned_max_excess"] = num(orph.loc[orph["end_user"] == e.name, "max_excess"].max()) \
                if len(orph) and (orph["end_user"] == e.name).any() else None
            rows.append(row)
        return rows

    def max_ratio(self) -> float | None:
        ratios = [r["ratio"] for r in self.per_entity() if r.get("ratio") is not None]
        return max(ratios) if ratios else None

    def evidence(self) -> dict[str, Any]:
        """Its part of the `counter_kinds` section; the end-user checks' own evidence shapes, whose `end_user`
        fields name the entity (key alias, team id)."""
        return {"entities": len(self.entities), "max_reservation": self.view.max_reservation,
                "counters_observed": self.inflation.counters_observed, "inflation": self.inflation.evidence(self.view),
                "phantom": self.phantom.evidence(self.view), "drain": self.drain.evidence(self.view),
                "orphans": self.orphans.evidence(), "max_ratio_after_drain": num(self.max_ratio()),
                "unheld": self.unheld.evidence() if self.unheld is not None else None,
                "per_entity": self.per_entity()}


@dataclass
class CounterKindsResult:
    kinds: dict[str, KindResult] = field(default_factory=dict)
    observed: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return bool(self.kinds or self.observed)


def judge_kinds(ctx: Context) -> CounterKindsResult:
    entities = run_entities(ctx.data.meta)
    out = CounterKindsResult(observed=observed_kinds(ctx.data.counters, ctx.t_load_end))
    for kind in KINDS:
        view = entity_view(ctx, kind, entities)
        if view is None:
            continue
        infl = measure_inflation(view)
        # A probe reads an in-process counter while the load runs, so a reading with nothing in flight (what the
        # orphan check judges) is rare; its readings are also judged against what the requests in flight could
        # hold. Redis-sampled counters keep the orphan check alone (this bound is not applied to them yet).
        unheld = judge_unheld(view, infl) if ctx.data.counter_source == "probe" else None
        out.kinds[kind] = KindResult(kind=kind, entities=entities[kind], view=view, inflation=infl,
                                     phantom=judge_rejections(view, infl), drain=judge_drain(view, infl),
                                     orphans=judge_orphans(view, infl), unheld=unheld)
    return out


def probe_evidence(ctx: Context) -> dict[str, Any]:
    """What the in-process probe did (probes.csv) and what it cost the load."""
    from harness.analyze.classify import PROBE_ARTIFACT

    p = ctx.data.probes
    read = p["counter"].notna() & (p["admitted"].fillna(0) != 1)
    failed = p.loc[~read]
    gap = (p["counter"] - p["db_spend"]).loc[read].dropna()
    return {"rounds": int(p["round"].nunique()), "reads": int(read.sum()), "failed": len(failed),
            "admitted": int((p["admitted"].fillna(0) == 1).sum()),
            "entities": int(p["id"].nunique()), "replicas": int(p["replica"].nunique()),
            "first_error": str(failed["error"].iloc[0])[:200] if len(failed) else None,
            "max_counter_minus_db": num(gap.max()) if len(gap) else None,
            "load_rejections": int((ctx.requests["detail"] == PROBE_ARTIFACT).sum())}


def _plural(kind: str, n: int) -> str:
    return f"{n} {kind}{'' if n == 1 else 's'}"


class CounterKinds(Check):
    name = "counter_kinds"
    counted_as = "leak"
    section = "counter_kinds"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        res = judge_kinds(ctx)
        if not res.measured:
            return CheckResult(data=res)
        findings: list[str] = []
        blockers: list[str] = []
        notes: list[str] = []
        passed: list[str] = []
        for kind, k in res.kinds.items():
            lk = k.drain.leaked
            if len(lk):
                w = lk.loc[lk["leaked"].idxmax()]
                ratio = k.max_ratio()
                findings.append(
                    f"{_plural(kind, len(lk))} of the run kept {money(float(lk['leaked'].sum()))} of leaked "
                    f"reservations on spend:{kind}:* after the drain (worst {w['end_user']}: counter "
                    f"{money(w['counter'])}, DB {money(w['db'])}, true spend {money(w['true_low'])}–"
                    f"{money(w['true_high'])}"
                    + (f"; the largest counter {ratio:.1f}× its {kind}'s spend)" if ratio is not None and ratio >= 2
                       else ")"))
            ot = k.orphans.table
            if len(ot):
                findings.append(f"{_plural(kind, len(ot))} held orphaned reservations on spend:{kind}:* (Σ of each "
                                f"one's largest excess {money(float(ot['max_excess'].sum()))}) after every request "
                                "that could hold them had ended")
            ut = k.unheld.table if k.unheld is not None else None
            if ut is not None and len(ut):
                w = ut.loc[ut["beyond"].idxmax()]
                findings.append(
                    f"{_plural(kind, len(ut))}: a probed counter stood above the true spend by more than every "
                    f"request in flight could hold (worst {w['end_user']} at {secs(w['at'])}: counter "
                    f"{money(w['counter'])} vs true spend/DB ≤ {money(w['reference'])}, {int(w['in_flight'])} "
                    f"request(s) in flight × {money(w['per_reservation'])}: {money(w['beyond'])} owned by no request)")
            source = "probes.csv" if ctx.data.counter_source == "probe" else "counters.csv"
            if not k.drain.ran and len(ctx.requests) >= MIN_REQUESTS and k.inflation.counters_observed:
                blockers.append(f"the drain check of the run's {kind}s could not run: {k.drain.why_not}")
            if ctx.data.counters_in_memory and not k.inflation.counters_observed:
                notes.append(f"the run's {kind}s' counters live in process memory and no probe read them "
                             f"({source}): judged by their rejections only")
            elif not k.inflation.counters_observed and not k.phantom.budget_rejections_end_user and \
                    len(ctx.requests) >= MIN_REQUESTS and version_has_counters(ctx.data.version):
                blockers.append(f"no spend:{kind}:* counter of the run's {_plural(kind, len(k.entities))} was "
                                f"observed ({source}) and no budget rejection named one")
            small = k.drain.within_billing
            if len(small):
                notes.append(f"{_plural(kind, len(small))} kept a counter above the true spend after the drain by up "
                             f"to {money(float(small['excess'].max()))}: within the billing disagreement, not a leak")
            if ut is not None and not len(ut) and k.unheld is not None and k.unheld.samples_judged:
                passed.append(f"every one of {k.unheld.samples_judged} probe reading(s) of the run's {kind}s lies "
                              "within the true spend plus what its requests in flight could hold")
            if k.drain.ran and not len(lk) and not len(ot):
                passed.append(f"after the drain all {len(k.drain.table)} spend:{kind}:* counter(s) of the run lie "
                              "within the true-spend band; no orphaned reservation on them")
        ev: dict[str, Any] = {"kinds": {kind: k.evidence() for kind, k in res.kinds.items()},
                              "observed": res.observed, "counter_source": ctx.data.counter_source}
        if len(ctx.data.probes):
            ev["probe"] = probe_evidence(ctx)
        return CheckResult(findings=findings, blockers=blockers, notes=notes, passed=passed, evidence=ev,
                           summary=self._summary(res), data=res)

    @staticmethod
    def _summary(res: CounterKindsResult) -> dict[str, Any]:
        if not res.kinds:
            return {}
        leaked = {kind: k.drain.leaked for kind, k in res.kinds.items()}
        ratios = [r for r in (k.max_ratio() for k in res.kinds.values()) if r is not None]
        out: dict[str, Any] = {
            "kinds_judged": ",".join(res.kinds),
            "kind_leaked_entities": sum(len(v) for v in leaked.values()),
            "kind_leaked_usd": num(sum(float(v["leaked"].sum()) for v in leaked.values() if len(v))),
            "kind_orphaned_entities": sum(len(k.orphans.table) for k in res.kinds.values()),
            "kind_orphaned_usd": num(sum(float(k.orphans.table["max_excess"].sum()) for k in res.kinds.values()
                                         if len(k.orphans.table))),
            "kind_max_ratio": num(max(ratios)) if ratios else None,
        }
        unheld = [k.unheld.table for k in res.kinds.values() if k.unheld is not None]
        if unheld:
            out["kind_unheld_entities"] = sum(len(t) for t in unheld)
            out["kind_unheld_usd"] = num(sum(float(t["beyond"].max()) for t in unheld if len(t)))
        for kind in ("key", "team"):
            if kind in leaked:
                v = leaked[kind]
                out[f"{kind}_leaked_usd"] = num(float(v["leaked"].sum())) if len(v) else 0.0
        return out

    def report_rows(self, section: dict[str, Any]) -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        pr = section.get("probe")
        if section.get("counter_source") == "probe" or pr:
            where = ("process memory (counters: memory), read by the in-process probe"
                     if section.get("counter_source") == "probe" else "Redis (sampled); the probe read them too")
            line = f"{where}: {pr['reads']} reads of {pr['entities']} key(s) through {pr['replicas']} replica(s) " \
                   f"in {pr['rounds']} rounds" if pr else where
            if pr and pr.get("failed"):
                line += f"; {pr['failed']} probe(s) read nothing ({pr.get('first_error') or '–'})"
            if pr and pr.get("load_rejections"):
                line += f"; {pr['load_rejections']} load request(s) met a probed budget of 0 (not counted)"
            rows.append(("counter evidence", line))
        for kind, k in section.get("kinds", {}).items():
            dr, ph, orph = k["drain"], k["phantom"], k["orphans"]
            head = f"{kind} counters ({k['entities']} of the run's)"
            if dr.get("ran"):
                rows.append((head, f"after the drain: leaked {dr['leaked_users']} {kind}s, {money(dr['leaked_total'])}"
                             f" (Σ counter {money(dr['counter_total'])}, DB {money(dr['db_total'])}, true "
                             f"{money(dr['true_low_total'])}–{money(dr['true_high_total'])}); largest counter / spend "
                             + (f"{k['max_ratio_after_drain']:.1f}×" if k.get("max_ratio_after_drain") else "–")))
            else:
                rows.append((head, f"drain check not run: {dr.get('why_not')}"))
            rows.append((f"{kind} phantom rejections", f"{ph['count']:,} of {ph['budget_rejections_naming_end_user']:,}"
                         f" budget rejections naming a {kind}"))
            if ph.get("first"):
                f = ph["first"]
                rows.append((f"first {kind} phantom", f"{secs(f['t_rel'])}: {f['end_user']} printed "
                             f"{money(f['printed_counter'])}, true spend {money(f['true_low'])}–"
                             f"{money(f['true_high'])}, budget {money(f['budget'])}"))
            if orph.get("orphaned_users"):
                rows.append((f"{kind} orphaned reservations", f"{orph['orphaned_users']} {kind}s, Σ "
                             f"{money(orph['orphaned_usd'])}"))
        for kind, o in section.get("observed", {}).items():
            if kind in section.get("kinds", {}):
                continue
            rows.append((f"spend:{kind}:* (not the run's own)", f"{o['entities']} counter(s) seen; at the end Σ "
                         f"counter {money(o['final_counter_total'])}, DB {money(o['final_db_total'])} (not judged: "
                         "no ground truth)"))
        return rows


class KindPhantoms(Check):
    """Phantom rejections naming the run's own keys and teams (counted as `phantom`); the numbers are in the
    `counter_kinds` section."""

    name = "kind_phantom"
    counted_as = "phantom"

    def run(self, ctx: Context, done: Results) -> CheckResult:
        res = prerequisite(done, "counter_kinds", CounterKindsResult)
        if not res.kinds:
            return CheckResult()
        findings: list[str] = []
        notes: list[str] = []
        passed: list[str] = []
        summary: dict[str, Any] = {}
        firsts: list[float] = []
        total = entities = 0
        for kind, k in res.kinds.items():
            ph: PhantomResult = k.phantom
            total += ph.count
            entities += len(ph.affected_users)
            summary[f"{kind}_phantoms"] = ph.count
            late = int(ph.table["released_late_s"].notna().sum()) if len(ph.table) else 0
            if late:
                notes.append(f"{late} budget rejection(s) naming a {kind} were late releases, not phantoms")
            if ph.count:
                first = ph.table.loc[ph.table["phantom"]].sort_values("t_rel").iloc[0]
                firsts.append(float(first["t_rel"]))
                findings.append(f"{ph.count} phantom budget rejection(s) naming {_plural(kind, len(ph.affected_users))}"
                                f" of the run, first at {first['t_rel']:.1f} s ({first['end_user']} printed "
                                f"{money(first['printed_counter'])}, true spend {money(first['true_low'])}–"
                                f"{money(first['true_high'])}, budget {money(first['budget'])})")
            else:
                passed.append(f"0 phantom rejections among {ph.budget_rejections_end_user} budget rejection(s) "
                              f"naming a {kind}")
        summary.update(kind_phantoms=total, kind_phantom_entities=entities,
                       first_kind_phantom_s=num(min(firsts)) if firsts else None)
        return CheckResult(findings=findings, notes=notes, passed=passed, summary=summary)
