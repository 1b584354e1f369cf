"""The checks, one module each, and THE registration list: the analyzer runs them in this order (a check may
read the results of the checks before it) and merges their results into the verdict (harness/analyze/verdict.py).

Adding a check = one new module with a `harness.analyze.checker.Check` subclass + one line here.
"""

from __future__ import annotations

from harness.analyze.checker import Check
from harness.analyze.checks.completeness import Completeness
from harness.analyze.checks.contention import Contention
from harness.analyze.checks.counter_kinds import CounterKinds, KindPhantoms
from harness.analyze.checks.deflation import Deflation
from harness.analyze.checks.drain import Drain
from harness.analyze.checks.fault_coverage import FaultCoverage
from harness.analyze.checks.inflation import Inflation
from harness.analyze.checks.orphans import Orphans
from harness.analyze.checks.phantom import Phantom
from harness.analyze.checks.reconcile import Reconcile
from harness.analyze.checks.sanity import Sanity

CHECKS: tuple[Check, ...] = (
    Sanity(),
    Inflation(),
    Phantom(),
    Drain(),
    Orphans(),
    Deflation(),
    CounterKinds(),
    KindPhantoms(),
    FaultCoverage(),
    Completeness(),
    Contention(),
    Reconcile(),
)
