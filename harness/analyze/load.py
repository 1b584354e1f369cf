"""Read a run folder into pandas frames, tolerating a run that was killed mid-write.

Every CSV of the run folder is appended as it happens, so the last line of a killed run can be cut in the
middle of a row (even in the middle of a quoted error text). Such a partial last line is dropped and
counted in `RunData.warnings`; everything before it is analysed. Missing optional files give empty frames.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from harness.errors import HarnessError
from harness.run import runfolder as rf
from harness.scenario.model import Scenario, parse_scenario

# Columns parsed as numbers (anything unparsable becomes NaN); the rest stay text.
_NUMERIC: dict[str, tuple[str, ...]] = {
    rf.REQUESTS_FILE: ("t_start", "t_end", "replica", "stream", "disconnect_after", "disconnected", "chunks",
                       "status", "latency_s", "attempt"),
    rf.LEDGER_FILE: ("t_start", "t_end", "stream", "prompt_tokens", "completion_tokens_promised",
                     "completion_tokens_delivered", "chunks_sent"),
    rf.SAMPLES_FILE: ("t", "sample", "redis_counter", "counter_ttl", "db_spend"),
    rf.COUNTERS_FILE: ("t", "sample", "redis_counter", "counter_ttl", "db_spend"),
    rf.FAULTS_FILE: ("t",),
    rf.MOCK_EVENTS_FILE: ("t",),
    rf.SPEND_LOGS_FILE: ("spend", "prompt_tokens", "completion_tokens", "start_time", "end_time"),
    rf.PROBES_FILE: ("t", "round", "replica", "status", "counter", "printed_budget", "includes_reservation",
                     "db_spend", "max_budget", "admitted", "latency_s"),
}
_COLUMNS: dict[str, tuple[str, ...]] = {
    rf.REQUESTS_FILE: rf.REQUESTS_COLUMNS,
    rf.LEDGER_FILE: rf.LEDGER_COLUMNS,
    rf.SAMPLES_FILE: rf.SAMPLES_COLUMNS,
    rf.COUNTERS_FILE: rf.COUNTERS_COLUMNS,
    rf.FAULTS_FILE: rf.FAULTS_COLUMNS,
    rf.MOCK_EVENTS_FILE: ("t",),
    rf.SPEND_LOGS_FILE: rf.SPEND_LOGS_COLUMNS,
    rf.PROBES_FILE: rf.PROBES_COLUMNS,
}
# Columns the analyzer uses (others are not parsed: speed).
_USED: dict[str, tuple[str, ...]] = {
    rf.REQUESTS_FILE: ("t_start", "t_end", "end_user", "stream", "disconnected", "status", "error_type",
                       "error_text", "request_id", "key"),
    rf.LEDGER_FILE: ("t_start", "t_end", "request_id", "end_user", "stream", "prompt_tokens",
                     "completion_tokens_promised", "completion_tokens_delivered", "outcome"),
    rf.SAMPLES_FILE: ("t", "sample", "end_user", "redis_counter", "db_spend"),
    rf.COUNTERS_FILE: ("t", "sample", "kind", "id", "redis_counter", "db_spend"),
}
# A row without these is useless (e.g. a line cut before its time): dropped.
_REQUIRED: dict[str, tuple[str, ...]] = {
    rf.REQUESTS_FILE: ("t_start",),
    rf.LEDGER_FILE: ("t_start",),
    rf.SAMPLES_FILE: ("t",),
    rf.COUNTERS_FILE: ("t",),
    rf.FAULTS_FILE: ("t",),
    rf.MOCK_EVENTS_FILE: (),
    rf.SPEND_LOGS_FILE: ("request_id",),
    rf.PROBES_FILE: ("t",),
}


@dataclass
class RunData:
    run_dir: Path
    scenario: Scenario
    scenario_text: str
    meta: dict[str, Any]
    requests: pd.DataFrame
    ledger: pd.DataFrame
    samples: pd.DataFrame
    faults: pd.DataFrame
    mock_events: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    truncated: set[str] = field(default_factory=set)   # files whose last row was cut (a killed run)
    # counters.csv: the other counter kinds (key, team, user, org); empty in run folders from before it existed.
    # A run whose counters live in process memory (scenario `counters: memory`): the probe's reads instead
    # (`probe_counters`), in the same columns (`redis_counter` = the counter the probe read)
    counters: pd.DataFrame = field(default_factory=lambda: _empty(rf.COUNTERS_FILE, rf.COUNTERS_COLUMNS))
    # probes.csv: the in-process counter probe's reads (harness/run/probe.py); empty without a probe
    probes: pd.DataFrame = field(default_factory=lambda: _empty(rf.PROBES_FILE, rf.PROBES_COLUMNS))

    @property
    def version(self) -> str:
        return str(self.meta.get("litellm_version") or self.scenario.litellm)

    @property
    def counters_in_memory(self) -> bool:
        """The proxies kept their counters in process memory (no Redis cache): samples.csv has no counter."""
        return self.scenario.counters == "memory"

    @property
    def counter_source(self) -> str:
        """Where the run's counter evidence comes from: "redis" (the sampler) or "probe" (the proxies' own budget
        check, probes.csv: counters in process memory)."""
        return "probe" if self.counters_in_memory else "redis"


def load_run(run_dir: Path) -> RunData:
    """Load everything the analyzer needs; HarnessError (exit 2) when the folder is unusable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HarnessError(f"{run_dir}: no such run folder", "pass a folder under results/")
    scen_path = run_dir / rf.SCENARIO_FILE
    if not scen_path.is_file():
        raise HarnessError(f"{scen_path}: missing (not a run folder, or the run died before it started)",
                           "pass a folder written by `harness run`")
    req_path = run_dir / rf.REQUESTS_FILE
    if not req_path.is_file():
        raise HarnessError(f"{req_path}: missing (the load never started)", "re-run the scenario")
    scenario_text = scen_path.read_text(errors="replace")
    try:
        data = yaml.safe_load(scenario_text)
    except yaml.YAMLError as exc:
        raise HarnessError(f"{scen_path}: not valid YAML ({exc.__class__.__name__})",
                           "the run folder is damaged; re-run the scenario") from None
    scenario = parse_scenario(data, scen_path)

    warnings: list[str] = []
    truncated: set[str] = set()
    meta = _read_meta(run_dir / rf.META_FILE, warnings)
    frames = {name: read_csv_tolerant(run_dir / name, warnings, required=name == rf.REQUESTS_FILE,
                                      truncated=truncated)
              for name in (rf.REQUESTS_FILE, rf.LEDGER_FILE, rf.SAMPLES_FILE, rf.FAULTS_FILE, rf.MOCK_EVENTS_FILE,
                           rf.COUNTERS_FILE, rf.PROBES_FILE)}
    probes = frames[rf.PROBES_FILE]
    counters = probe_counters(probes) if scenario.counters == "memory" else frames[rf.COUNTERS_FILE]
    return RunData(run_dir=run_dir, scenario=scenario, scenario_text=scenario_text, meta=meta,
                   requests=frames[rf.REQUESTS_FILE], ledger=frames[rf.LEDGER_FILE],
                   samples=frames[rf.SAMPLES_FILE], faults=frames[rf.FAULTS_FILE],
                   mock_events=frames[rf.MOCK_EVENTS_FILE], warnings=warnings, truncated=truncated,
                   counters=counters, probes=probes)


def probe_counters(probes: pd.DataFrame) -> pd.DataFrame:
    """The probe's reads as counters.csv rows (t, sample, kind, id, redis_counter, db_spend): one per round and
    entity. A read counts when it is a counter alone (a rejection, `includes_reservation` 0; an admitted probe or a
    reservation-path message is no read of the counter). With several replicas (each keeps its own counter) the
    largest replica's counter stands for the round — the one that rejects first — at the round's last read."""
    cols = _USED[rf.COUNTERS_FILE]
    if not len(probes):
        return _empty(rf.COUNTERS_FILE, rf.COUNTERS_COLUMNS)
    ok = probes["counter"].notna() & (probes["admitted"].fillna(0) != 1) & \
        (probes["includes_reservation"].fillna(0) != 1)
    rows = probes.loc[ok]
    if not len(rows):
        return _empty(rf.COUNTERS_FILE, rf.COUNTERS_COLUMNS)
    grouped = rows.groupby(["round", "kind", "id"], sort=True, as_index=False).agg(
        t=("t", "max"), redis_counter=("counter", "max"), db_spend=("db_spend", "first"))
    grouped = grouped.rename(columns={"round": "sample"})
    return grouped[list(cols)].sort_values(["t", "kind", "id"], kind="stable").reset_index(drop=True)


def _read_meta(path: Path, warnings: list[str]) -> dict[str, Any]:
    if not path.is_file():
        warnings.append(f"{path.name} missing: times fall back to the request log")
        return {}
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        warnings.append(f"{path.name} unreadable ({exc.__class__.__name__}): ignored")
        return {}
    if not isinstance(meta, dict):
        warnings.append(f"{path.name} is not an object: ignored")
        return {}
    return meta


def read_csv_tolerant(path: Path, warnings: list[str], required: bool = False,
                      truncated: set[str] | None = None) -> pd.DataFrame:
    """Read one run-folder CSV; a cut last line is dropped, short rows are padded, bad numbers are NaN."""
    name = path.name
    columns = _COLUMNS.get(name)
    if not path.is_file():
        if required:
            raise HarnessError(f"{path}: missing", "re-run the scenario")
        return _empty(name, columns)
    raw = path.read_bytes()
    if not raw.strip():
        return _empty(name, columns)
    cut = 0
    if not raw.endswith(b"\n"):
        last_nl = raw.rfind(b"\n")
        cut = 1
        raw = raw[: last_nl + 1] if last_nl >= 0 else b""
        if not raw:
            return _empty(name, columns)
    header = next(csv.reader([raw[: raw.find(b"\n")].decode("utf-8", errors="replace")]), [])
    columns = _USED.get(name, columns)
    usecols = [c for c in header if c in columns] if columns is not None else None
    numeric = _NUMERIC.get(name, ())
    text_cols = [c for c in (columns or ()) if c not in numeric]
    try:
        # end_user stays text (object): a categorical dtype here is slower than factorising later
        df = pd.read_csv(io.BytesIO(raw), usecols=usecols, dtype={c: str for c in text_cols},
                         on_bad_lines="skip", keep_default_na=False, na_values={c: [""] for c in numeric},
                         float_precision="legacy", low_memory=False)
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError):
        df, dropped = _read_with_csv_module(raw)
        if usecols is not None:
            df = df[[c for c in usecols if c in df.columns]]
        cut += dropped
    except pd.errors.EmptyDataError:
        return _empty(name, columns)
    if cut:
        warnings.append(f"{name}: {cut} incomplete row(s) at the end dropped (partial run)")
        if truncated is not None:
            truncated.add(name)
    if columns is not None:
        for c in columns:
            if c not in df.columns:
                df[c] = np.nan if c in numeric else ""
    for c in numeric:
        if c in df.columns and not pd.api.types.is_numeric_dtype(df[c]):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    for c in text_cols:
        if c in df.columns:
            col = df[c]
            if col.isna().any():
                col = col.fillna("")
            if col.dtype != object:
                col = col.astype(str)
            df[c] = col
    req = [c for c in _REQUIRED.get(name, ()) if c in df.columns]
    if req:
        bad = df[req].isna().any(axis=1)
        if bad.any():
            warnings.append(f"{name}: {int(bad.sum())} row(s) without {'/'.join(req)} dropped")
            df = df.loc[~bad].reset_index(drop=True)
    return df


def _read_with_csv_module(raw: bytes) -> tuple[pd.DataFrame, int]:
    """Slow path: keep the rows with the header's field count; the last one may be a cut quoted field."""
    text = raw.decode("utf-8", errors="replace")
    rows: list[list[str]] = []
    dropped = 0
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    try:
        for row in reader:
            if header is None:
                header = row
                continue
            if len(row) == len(header):
                rows.append(row)
            else:
                dropped += 1
    except csv.Error:
        dropped += 1
    if header is None:
        return pd.DataFrame(), dropped
    return pd.DataFrame(rows, columns=header).replace("", np.nan), dropped


def _empty(name: str, columns: tuple[str, ...] | None) -> pd.DataFrame:
    cols = _USED.get(name, columns) or ()
    numeric = _NUMERIC.get(name, ())
    return pd.DataFrame({c: pd.Series(dtype=float if c in numeric else object) for c in cols})
