"""report.md: a GitHub-issue-ready write-up of one run (verdict, numbers, pictures, environment, command)."""

from __future__ import annotations

from typing import Any

from harness.analyze.scrub import scrub
from harness.analyze.summary import Summary
from harness.util.fmt import md_cell, money, pct

_ENV_KEYS = (
    ("LiteLLM version", "litellm_version"), ("LiteLLM build", "litellm_build"), ("replicas", "replicas"),
    ("backend", "backend"),
    ("images", "images"), ("Redis", "redis_version"), ("Postgres", "postgres_version"), ("scenario", "scenario"),
    ("seed", "seed"),
    ("harness", "harness_version"), ("run id", "run_id"),
)


def secs(v: Any) -> str:
    return "–" if v is None else f"{float(v):.1f} s"


def _n(v: int | None) -> str:
    return "?" if v is None else f"{v:,}"


def summary_paragraph(vj: dict[str, Any], meta: dict[str, Any]) -> str:
    """The paragraph under the title: the numbers of the summary, the named examples from the check sections."""
    s = Summary.from_verdict(vj)
    ph = vj.get("phantom") or {}
    dr = vj.get("drain") or {}
    env = (f"LiteLLM {s.litellm_version}, {meta.get('replicas', '?')} replica(s), "
           f"{meta.get('backend', '?')} backend, scenario `{s.scenario}`")
    parts = [f"**{s.verdict}** ({env}; expected: {s.expected}, "
             f"{'matches' if s.matches_expectation else 'does NOT match'})."]
    parts.append(f"{_n(s.requests)} requests: {_n(s.requests_ok)} ok, {_n(s.budget_rejections)} budget "
                 f"rejections, {_n(s.requests_upstream)} upstream errors, "
                 f"{_n(s.requests_disconnect)} client walk-aways, {_n(s.requests_other)} other errors.")
    if s.phantoms:
        first, worst = ph.get("first") or {}, ph.get("worst") or {}
        parts.append(
            f"{s.phantoms:,} of them ({pct(s.phantom_share_of_rejections)} of all rejections) were **phantom**: "
            f"{s.phantom_users} end user(s) were rejected while their true spend was below their budget "
            f"minus the reservations they could hold (one per request in flight, at most "
            f"{money(ph.get('max_reservation'))} each); the first at "
            f"{secs(s.first_phantom_s)} ({first.get('end_user', '?')}, true spend "
            f"{money(first.get('true_high'))}, budget {money(first.get('budget'))})"
            + (f", the worst printed a counter {money(worst.get('excess'))} above true spend "
               f"({worst.get('end_user')})." if worst else "."))
    elif s.phantoms is None:
        parts.append("The phantom check did not run.")
    else:
        parts.append(f"No phantom rejection among {_n(s.budget_rejections)} budget rejection(s).")
    if s.drain_ran:
        if s.leaked_users:
            worst = dr.get("worst") or {}
            parts.append(
                f"After the drain ({secs(dr.get('after_load_end_s'))} after the load ended) {s.leaked_users} of "
                f"{s.users_checked} end users' counters still held **{money(s.leaked_usd)} of leaked "
                f"reservations** (Redis {money(s.counter_total_usd)} vs DB {money(s.db_total_usd)} vs true "
                f"{money(s.true_low_total_usd)}–{money(s.true_high_total_usd)}; worst {worst.get('end_user')}: "
                f"{money(worst.get('leaked'))}).")
        else:
            parts.append(f"After the drain all {s.users_checked} remaining counters matched true spend "
                         f"(Redis {money(s.counter_total_usd)} vs DB {money(s.db_total_usd)} vs true "
                         f"{money(s.true_low_total_usd)}–{money(s.true_high_total_usd)}).")
    else:
        parts.append(f"The drain check did not run: {s.drain_why_not}.")
    if s.counter_source == "probe":
        parts.append(_probe_sentence(vj.get("counter_kinds") or {}))
    if s.max_inflation_usd is not None:
        t = ((vj.get("inflation") or {}).get("total_max_counter_minus_true_high") or {}).get("t")
        parts.append(f"Largest total inflation (Redis counters − true spend): {money(s.max_inflation_usd)} at "
                     f"{secs(t)}.")
    return " ".join(parts)


def _probe_sentence(ck: dict[str, Any]) -> str:
    """A run whose counters lived in process memory: what the in-process probe read of the run's keys."""
    pr = ck.get("probe") or {}
    key = (ck.get("kinds") or {}).get("key") or {}
    dr = key.get("drain") or {}
    text = (f"The proxies kept their counters in process memory (no Redis cache): the in-process probe read the "
            f"run's keys' counters {_n(pr.get('reads'))} times through the proxies' own budget check")
    if dr.get("ran"):
        text += (f"; after the drain {dr.get('leaked_users', 0)} of {dr.get('users_checked')} keys held leaked "
                 f"reservations ({money(dr.get('leaked_total'))}; probed Σ {money(dr.get('counter_total'))} vs DB "
                 f"{money(dr.get('db_total'))} vs true {money(dr.get('true_low_total'))}–"
                 f"{money(dr.get('true_high_total'))})")
    return text + "."


def evidence_rows(vj: dict[str, Any]) -> list[tuple[str, str]]:
    """The evidence table: the run's facts, then each check's rows from its section (in registration order)."""
    from harness.analyze.checks import CHECKS

    req = vj["requests"]
    rows: list[tuple[str, str]] = [
        ("verdict", f"{vj['verdict']} — " + "; ".join(vj["reasons"])),
        ("expected for this version", f"{vj['expected']} → exit code {vj['exit_code']}"),
        ("requests", f"{req['total']:,} sent, {req['reached_proxy']:,} answered by the proxy; by class: "
         + ", ".join(f"{k} {v:,}" for k, v in req["by_class"].items())),
        ("HTTP status codes", ", ".join(f"{k}: {v:,}" for k, v in req["status_codes"].items()) or "–"),
    ]
    for check in CHECKS:
        section = vj.get(check.section) if check.section else None
        if not isinstance(section, dict):
            continue
        if section.get("error"):
            rows.append((f"{check.name} check", str(section["error"])))
        else:
            rows += check.report_rows(section)
    if vj["faults"]:
        rows.append(("fault windows", "; ".join(
            f"{f['kind']} {secs(f['start'])}–{secs(f['end'])}" for f in vj["faults"][:12])))
    for w in vj["warnings"]:
        rows.append(("warning", w))
    return rows


def render_report(vj: dict[str, Any], meta: dict[str, Any], scenario_yaml: str, pictures: list[str],
                  run_dir_display: str, chart: list[str] | None = None) -> str:
    """`chart`: the headline chart as a Mermaid block + caption (harness/analyze/mermaid.py), shown before the
    PNGs: GitHub renders it in a comment pasted as-is, where the PNGs' relative links show nothing."""
    title = f"# Phantom budget: {vj['verdict']} — LiteLLM {vj['litellm_version']}, scenario `{vj['scenario']}`"
    out = [title, "", summary_paragraph(vj, meta), ""]
    if chart:
        out += [*chart, ""]
    from harness.analyze.checks import CHECKS

    alt = {c.picture: c.picture_alt for c in CHECKS if c.picture}
    for pic in pictures:
        out += [f"![{alt.get(pic, pic)}]({pic})", ""]
    out += ["## Evidence", "", "| | |", "|---|---|"]
    out += [f"| {k} | {md_cell(v)} |" for k, v in evidence_rows(vj)]
    signals = vj.get("proxy_log_signals") or {}
    if signals:
        out += ["", "## What the proxies logged", "", "| signal | lines | replicas | meaning |", "|---|---|---|---|"]
        for key, sig in sorted(signals.items(), key=lambda kv: -kv[1]["count"]):
            replicas = ", ".join(f"{k} ×{v}" for k, v in sorted(sig["replicas"].items()))
            out.append(f"| `{key}` | {sig['count']:,} | {md_cell(replicas)} | {md_cell(sig['meaning'])} |")
        out += ["", "Example lines: `proxy_log_signals` in `verdict.json`."]
    out += ["", "Full evidence: `verdict.json` next to this report.", "", "## Environment", "", "| | |", "|---|---|"]
    for label, key in _ENV_KEYS:
        value = meta.get(key)
        if key == "litellm_version":
            value = value or vj["litellm_version"]
        if key == "scenario":
            value = value or vj["scenario"]
        if key == "litellm_build" and isinstance(value, dict):    # release / wheel / tree, named exactly
            from harness.litellm.candidate import describe_build

            value = describe_build(value)
        if value is not None and value != "":
            out.append(f"| {label} | {md_cell(str(value))} |")
    out += ["", "## Reproduce", "", "```sh", _command(vj, meta), "```", "",
            "<details><summary>Resolved scenario (scenario.yaml)</summary>", "", "```yaml",
            scenario_yaml.rstrip(), "```", "", "</details>", "",
            "## Posting this to an issue", "",
            f"`harness report post {run_dir_display} --repo OWNER/REPO --issue N` posts this text with the `gh` CLI "
            "(`gh issue comment`; the chart above is Mermaid, which GitHub renders); GitHub cannot show the "
            "pictures' relative links, so it says they are in the run folder — or, with "
            "`--push-images --fork YOU/REPO`, commits the PNGs to a branch of your fork and links them. "
            "This section is left out of the comment.", ""]
    return scrub("\n".join(out))


def _command(vj: dict[str, Any], meta: dict[str, Any]) -> str:
    cmd = meta.get("command")
    if isinstance(cmd, list):
        cmd = " ".join(str(c) for c in cmd)
    if cmd:
        return str(cmd)
    return f"harness run scenarios/{vj['scenario']}.yaml --litellm {vj['litellm_version']}" + (
        f" --seed {meta['seed']}" if meta.get("seed") is not None else "")
