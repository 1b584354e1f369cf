"""report.md: a GitHub-issue-ready write-up of one run (verdict, numbers, pictures, environment, command)."""

from __future__ import annotations

from typing import Any

from harness.analyze.scrub import scrub
from harness.util.fmt import money, pct

_ENV_KEYS = (
    ("LiteLLM version", "litellm_version"), ("replicas", "replicas"), ("backend", "backend"),
    ("Redis", "redis_version"), ("Postgres", "postgres_version"), ("scenario", "scenario"), ("seed", "seed"),
    ("harness", "harness_version"), ("run id", "run_id"),
)


def _secs(v: Any) -> str:
    return "–" if v is None else f"{float(v):.1f} s"


def summary_paragraph(vj: dict[str, Any], meta: dict[str, Any]) -> str:
    req, ph, dr, infl = vj["requests"], vj["phantom"], vj["drain"], vj["inflation"]
    env = (f"LiteLLM {vj['litellm_version']}, {meta.get('replicas', '?')} replica(s), "
           f"{meta.get('backend', '?')} backend, scenario `{vj['scenario']}`")
    parts = [f"**{vj['verdict']}** ({env}; expected: {vj['expected']}, "
             f"{'matches' if vj['matches_expectation'] else 'does NOT match'})."]
    parts.append(f"{req['total']:,} requests: {req['by_class']['ok']:,} ok, {ph['budget_rejections']:,} budget "
                 f"rejections, {req['by_class']['upstream']:,} upstream errors, "
                 f"{req['by_class']['disconnect']:,} client walk-aways, {req['by_class']['other']:,} other errors.")
    if ph["count"]:
        first, worst = ph["first"] or {}, ph["worst"] or {}
        parts.append(
            f"{ph['count']:,} of them ({pct(ph['share_of_rejections'])} of all rejections) were **phantom**: "
            f"{ph['affected_end_users']} end user(s) were rejected while their true spend was below their budget "
            f"minus the reservations they could hold (one per request in flight, at most "
            f"{money(ph['max_reservation'])} each); the first at "
            f"{_secs(first.get('t_rel'))} ({first.get('end_user', '?')}, true spend "
            f"{money(first.get('true_high'))}, budget {money(first.get('budget'))})"
            + (f", the worst printed a counter {money(worst.get('excess'))} above true spend "
               f"({worst.get('end_user')})." if worst else "."))
    else:
        parts.append(f"No phantom rejection among {ph['budget_rejections']:,} budget rejection(s).")
    if dr["ran"]:
        if dr["leaked_users"]:
            worst = dr["worst"] or {}
            parts.append(
                f"After the drain ({_secs(dr['after_load_end_s'])} after the load ended) {dr['leaked_users']} of "
                f"{dr['users_checked']} end users' counters still held **{money(dr['leaked_total'])} of leaked "
                f"reservations** (Redis {money(dr['counter_total'])} vs DB {money(dr['db_total'])} vs true "
                f"{money(dr['true_low_total'])}–{money(dr['true_high_total'])}; worst {worst.get('end_user')}: "
                f"{money(worst.get('leaked'))}).")
        else:
            parts.append(f"After the drain all {dr['users_checked']} remaining counters matched true spend "
                         f"(Redis {money(dr['counter_total'])} vs DB {money(dr['db_total'])} vs true "
                         f"{money(dr['true_low_total'])}–{money(dr['true_high_total'])}).")
    else:
        parts.append(f"The drain check did not run: {dr.get('why_not')}.")
    mx = infl.get("total_max_counter_minus_true_high")
    if mx:
        parts.append(f"Largest total inflation (Redis counters − true spend): {money(mx['value'])} at "
                     f"{_secs(mx['t'])}.")
    return " ".join(parts)


def evidence_rows(vj: dict[str, Any]) -> list[tuple[str, str]]:
    req, ph, dr, infl = vj["requests"], vj["phantom"], vj["drain"], vj["inflation"]
    rows: list[tuple[str, str]] = [
        ("verdict", f"{vj['verdict']} — " + "; ".join(vj["reasons"])),
        ("expected for this version", f"{vj['expected']} → exit code {vj['exit_code']}"),
        ("requests", f"{req['total']:,} sent, {req['reached_proxy']:,} answered by the proxy; by class: "
         + ", ".join(f"{k} {v:,}" for k, v in req["by_class"].items())),
        ("HTTP status codes", ", ".join(f"{k}: {v:,}" for k, v in req["status_codes"].items()) or "–"),
        ("budget rejections", f"{ph['budget_rejections']:,} (wordings: "
         + (", ".join(f"{k} {v:,}" for k, v in ph["wordings"].items()) or "–") + "; status: "
         + (", ".join(f"{k} {v:,}" for k, v in ph["budget_rejection_status_codes"].items()) or "–") + ")"),
        ("phantom rejections", f"{ph['count']:,} ({pct(ph['share_of_rejections'])} of rejections, "
         f"{ph['affected_end_users']} end users)"),
    ]
    if ph["first"]:
        f = ph["first"]
        rows.append(("first phantom", f"{_secs(f['t_rel'])}: {f['end_user']} printed {money(f['printed_counter'])}"
                     f", true spend {money(f['true_low'])}–{money(f['true_high'])}, budget {money(f['budget'])}"))
    if ph["worst"]:
        w = ph["worst"]
        rows.append(("worst phantom", f"{_secs(w['t_rel'])}: {w['end_user']} printed {money(w['printed_counter'])}"
                     f" vs true {money(w['true_high'])} (+{money(w['excess'])})"))
    rows.append(("max reservation (threshold margin)", money(ph["max_reservation"])))
    mx = infl.get("total_max_counter_minus_true_high")
    if mx:
        rows.append(("max total counter − true spend", f"{money(mx['value'])} at {_secs(mx['t'])}"))
    mu = infl.get("user_max_counter_minus_true_high")
    if mu:
        rows.append(("max per-user counter − true spend",
                     f"{money(mu['value'])} ({mu['end_user']}, {_secs(mu['t'])})"))
    md = infl.get("total_max_counter_minus_db")
    if md:
        rows.append(("max total counter − DB spend", f"{money(md['value'])} at {_secs(md['t'])}"))
    rows.append(("DB lag allowance", f"{infl['db_lag_allowance_s']:.0f} s; DB behind the lagged truth in "
                 f"{infl['db_behind_lagged_truth_rows']:,} sample(s), ahead of the truth in "
                 f"{infl['db_ahead_of_truth_rows']:,}"))
    if dr["ran"]:
        rows.append(("drain check", f"last sample {_secs(dr['after_load_end_s'])} after load end; "
                     f"{dr['users_checked']} counters checked, {dr['counters_absent']} end users without a counter; "
                     f"leaked: {dr['leaked_users']} users, {money(dr['leaked_total'])}"))
        for key in ("first", "worst", "last"):
            x = dr.get(key)
            if x:
                rows.append((f"{key} leak", f"{x['end_user']}: counter {money(x['counter'])}, DB {money(x['db'])}, "
                             f"true {money(x['true_low'])}–{money(x['true_high'])}, leaked {money(x['leaked'])}, "
                             f"above true spend since {_secs(x.get('t_leak_from'))}"))
        if dr["undercounted_users"]:
            rows.append(("counter below true spend", f"{dr['undercounted_users']} end users (not a leak; "
                         "e.g. a Redis restart from an old snapshot)"))
    else:
        rows.append(("drain check", f"not run: {dr.get('why_not')}"))
    if vj["faults"]:
        rows.append(("fault windows", "; ".join(
            f"{f['kind']} {_secs(f['start'])}–{_secs(f['end'])}" for f in vj["faults"][:12])))
    for w in vj["warnings"]:
        rows.append(("warning", w))
    return rows


def render_report(vj: dict[str, Any], meta: dict[str, Any], scenario_yaml: str, pictures: list[str],
                  run_dir_display: str) -> str:
    title = f"# Phantom budget: {vj['verdict']} — LiteLLM {vj['litellm_version']}, scenario `{vj['scenario']}`"
    out = [title, "", summary_paragraph(vj, meta), ""]
    alt = {"inflation.png": "Redis counter vs DB spend vs true spend over time",
           "rejections.png": "Rejections over time by class", "drain.png": "Leaked reservations after the drain"}
    for pic in pictures:
        out += [f"![{alt.get(pic, pic)}]({pic})", ""]
    out += ["## Evidence", "", "| | |", "|---|---|"]
    out += [f"| {k} | {_cell(v)} |" for k, v in evidence_rows(vj)]
    signals = vj.get("proxy_log_signals") or {}
    if signals:
        out += ["", "## What the proxies logged", "", "| signal | lines | replicas | meaning |", "|---|---|---|---|"]
        for key, sig in sorted(signals.items(), key=lambda kv: -kv[1]["count"]):
            replicas = ", ".join(f"{k} ×{v}" for k, v in sorted(sig["replicas"].items()))
            out.append(f"| `{key}` | {sig['count']:,} | {_cell(replicas)} | {_cell(sig['meaning'])} |")
        out += ["", "Example lines: `proxy_log_signals` in `verdict.json`."]
    out += ["", "Full evidence: `verdict.json` next to this report.", "", "## Environment", "", "| | |", "|---|---|"]
    for label, key in _ENV_KEYS:
        value = meta.get(key)
        if key == "litellm_version":
            value = value or vj["litellm_version"]
        if key == "scenario":
            value = value or vj["scenario"]
        if value is not None and value != "":
            out.append(f"| {label} | {_cell(str(value))} |")
    out += ["", "## Reproduce", "", "```sh", _command(vj, meta), "```", "",
            "<details><summary>Resolved scenario (scenario.yaml)</summary>", "", "```yaml",
            scenario_yaml.rstrip(), "```", "", "</details>", "",
            "## Posting this to an issue", "",
            f"`gh issue comment <n> --body-file {run_dir_display}/report.md` posts this text, but GitHub does not "
            "upload the pictures it links to (`gh` cannot attach files): either drag the PNGs from "
            f"`{run_dir_display}/` into the comment box on github.com (GitHub uploads them and inserts "
            "`https://github.com/user-attachments/...` links — replace the relative links above with those), or push "
            "them somewhere public (a gist or a branch) and replace the links with their raw URLs before posting.", ""]
    return scrub("\n".join(out))


def _command(vj: dict[str, Any], meta: dict[str, Any]) -> str:
    cmd = meta.get("command")
    if isinstance(cmd, list):
        cmd = " ".join(str(c) for c in cmd)
    if cmd:
        return str(cmd)
    return f"harness run scenarios/{vj['scenario']}.yaml --litellm {vj['litellm_version']}" + (
        f" --seed {meta['seed']}" if meta.get("seed") is not None else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
