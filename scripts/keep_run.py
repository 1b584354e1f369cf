#!/usr/bin/env python3
"""Keep a small, committable copy of run folders in docs/runs/<run-id>/ (the evidence behind the outcome table).

    .venv/bin/python scripts/keep_run.py results/<run-id> [results/<run-id> …] [--picture inflation.png]

What a copy keeps and leaves out: harness/matrix/catalog/evidence.py (report, verdict, meta, scenario, the data
files up to 64 KB each, the PNGs named with --picture; never logs). Then `harness catalog --add-runs …` (or the
next `--update-readme` / `--reanalyze`) links the copy from the run folder's row in scenarios/README.md.
Exit codes: 0 copied, 2 bad input (not an analysed run folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.matrix.catalog.evidence import PICTURES, keep_copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished, analysed run folders")
    parser.add_argument("--picture", action="append", default=[], choices=PICTURES, help="a PNG to keep too")
    args = parser.parse_args(argv)
    for run in args.runs:
        try:
            copy = keep_copy(run, pictures=args.picture)
        except HarnessError as exc:
            print(exc.line(), file=sys.stderr)
            return 2
        size = sum(p.stat().st_size for p in copy.iterdir())
        print(f"{copy} ({size / 1024:,.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
