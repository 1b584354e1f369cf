"""JUnit XML (`--junit FILE`): one <testcase> per run (run, analyze), per run of a cell (matrix, catalog) or
per probe (bisect: name = "<version> (step k)").

classname = the scenario, name = the LiteLLM version (matrix / catalog; ` r<k>` added for repeats) or the run id
(run, analyze). The case's gate (harness/results_io/models.py) decides its child:
failed → <failure message="<verdict line>">, error → <error message=…>, skipped → <skipped message=…>,
passed → none. The failure's text is the verdict's reasons; <system-out> names the run folder.

Written with the stdlib's xml.etree: the format is a handful of elements, and no JUnit library is a dependency
of the harness (junit-xml / junitparser would add one for ~40 lines of code).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from harness.results_io.models import BisectResults, CellsResults, Gate, RunResults
from harness.util.fsutil import atomic_write_text


@dataclass(frozen=True)
class Case:
    classname: str
    name: str
    gate: Gate
    message: str           # the verdict line
    text: str = ""         # the reasons
    seconds: float = 0.0
    run_dir: str = ""


# characters XML 1.0 cannot carry at all (a proxy's error text may hold control characters): ElementTree would
# write them and produce a file no JUnit parser reads
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def cases_of(doc: RunResults | CellsResults | BisectResults) -> list[Case]:
    if isinstance(doc, BisectResults):      # one case per probe; the answer is the JSON's / bisect.md's
        return [Case(classname=doc.scenario, name=f"{p.version} (step {p.step})", gate=p.gate,
                     message=(f"{p.status}: {p.reason}" if p.status != "ok" else f"{p.verdict or 'no verdict'}: "
                              f"{p.decision}"), text=p.reason, seconds=p.wall_s or 0.0, run_dir=p.run_dir)
                for p in doc.probes]
    if isinstance(doc, RunResults):
        s = doc.summary
        return [Case(classname=(s.scenario if s and s.scenario else "run"), name=Path(doc.run_dir).name,
                     gate=doc.gate, message=doc.verdict_line, text=s.reason if s else "",
                     seconds=(s.load_s or 0.0) if s else 0.0, run_dir=doc.run_dir)]
    repeats = {(c.scenario, c.version) for c in doc.cells if c.repeat > 1}
    return [Case(classname=c.scenario,
                 name=c.version + (f" r{c.repeat}" if (c.scenario, c.version) in repeats else ""),
                 gate=c.gate, message=c.verdict_line, text=c.reason, seconds=c.wall_s or 0.0, run_dir=c.run_dir)
            for c in doc.cells]


def render(doc: RunResults | CellsResults | BisectResults) -> str:
    cases = cases_of(doc)
    counts = {g: sum(c.gate == g for c in cases) for g in ("failed", "error", "skipped")}
    suite_name = f"harness {doc.command}"
    attrs = {"name": suite_name, "tests": str(len(cases)), "failures": str(counts["failed"]),
             "errors": str(counts["error"]), "skipped": str(counts["skipped"]),
             "time": f"{sum(c.seconds for c in cases):.1f}"}
    root = ET.Element("testsuites", attrs)
    suite = ET.SubElement(root, "testsuite", attrs)
    for case in cases:
        el = ET.SubElement(suite, "testcase", {"classname": _clean(case.classname), "name": _clean(case.name),
                                               "time": f"{case.seconds:.1f}"})
        tag = {"failed": "failure", "error": "error", "skipped": "skipped"}.get(case.gate)
        if tag is not None:
            child = ET.SubElement(el, tag, {"message": _clean(case.message), "type": case.gate})
            child.text = _clean(case.text) or None
        if case.run_dir:
            ET.SubElement(el, "system-out").text = _clean(f"run folder: {case.run_dir}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(doc: RunResults | CellsResults | BisectResults, path: Path) -> None:
    atomic_write_text(path, render(doc))
