"""Fault windows from faults.csv (start/end events), for the pictures and the evidence."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.analyze.context import Context


@dataclass
class Window:
    kind: str
    target: str
    start: float
    end: float | None      # None: never ended (the run was cut) or a one-shot action
    note: str

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind


def fault_windows(ctx: Context) -> list[Window]:
    f = ctx.data.faults
    if not len(f):
        return []
    f = f.sort_values("t", kind="stable")
    open_: dict[str, Window] = {}
    out: list[Window] = []
    for row in f.itertuples(index=False):
        key = str(getattr(row, "window", "")) or f"{row.kind}:{row.target}"
        event = str(row.event).strip().lower()
        if event == "start":
            w = Window(kind=str(row.kind), target=str(row.target), start=float(row.t), end=None,
                       note=str(row.note))
            open_[key] = w
            out.append(w)
        elif event == "end":
            found = open_.pop(key) if key in open_ else None
            if found is None:   # an end without its start (cut file head): the window ran from t0
                found = Window(kind=str(row.kind), target=str(row.target), start=ctx.t0, end=None, note="")
                out.append(found)
            w = found
            w.end = float(row.t)
            if str(row.note) and not pd.isna(row.note):
                w.note = f"{w.note}; {row.note}" if w.note else str(row.note)
    return out
