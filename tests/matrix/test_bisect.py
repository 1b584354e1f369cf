"""Bisection over released versions, driven by a fake probe; PyPI release-list parsing on canned JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.version import Version
from rich.console import Console

from harness.analyze.summary import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from harness.errors import HarnessError
from harness.matrix import pypi
from harness.matrix.bisect import FIRST_BAD, FIRST_FIXED, bisect_versions, probes_left, render_md
from harness.matrix.execute import ERROR, UNINSTALLABLE, CellResult

SEED = Path(__file__).resolve().parents[2] / "scenarios" / "phantom-budget.yaml"
# 1.84.0 (bad) … 1.96.0 (good): 11 releases strictly between (indexes 1..11 of the line)
INSIDE = [f"1.{m}.0" for m in range(85, 96)]


class Probe:
    """Reproduces below `fixed_in` (first-fixed direction) or from `bad_from` on (first-bad direction)."""

    def __init__(self, fixed_in: str | None = None, bad_from: str | None = None,
                 broken: dict[str, str] | None = None) -> None:
        self.fixed_in, self.bad_from = fixed_in, bad_from
        self.broken = broken or {}
        self.order: list[str] = []

    def __call__(self, version: str) -> CellResult:
        self.order.append(version)
        kind = self.broken.get(version)
        if kind == UNINSTALLABLE:
            return CellResult("s", version, status=UNINSTALLABLE, reason="uv could not resolve it")
        if kind == ERROR:
            return CellResult("s", version, status=ERROR, reason="replica 0 exited")
        if kind == INCONCLUSIVE:
            return CellResult("s", version, verdict=INCONCLUSIVE, reason="too few requests")
        v = Version(version)
        if self.fixed_in:
            buggy = v < Version(self.fixed_in)
        else:
            assert self.bad_from
            buggy = v >= Version(self.bad_from)
        return CellResult("s", version, verdict=REPRODUCED if buggy else NOT_REPRODUCED,
                          phantoms=400 if buggy else 0, leaked_usd=2000.0 if buggy else 0.0, wall_s=150.0)


def test_first_fixed_search_order() -> None:
    probe = Probe(fixed_in="1.91.0")
    res = bisect_versions(INSIDE, good="1.96.0", bad="1.84.0", probe=probe, scenario="s")
    assert res.direction == FIRST_FIXED
    # line: 1.84.0 | 1.85.0 … 1.95.0 | 1.96.0 ; lo=0 hi=12 → mid 6 (1.90.0) reproduced → mid 9 (1.93.0) clean
    # → mid 7 (1.91.0) clean → nothing left between 1.90.0 and 1.91.0
    assert probe.order == ["1.90.0", "1.93.0", "1.91.0"]
    assert res.exact and res.first == "1.91.0" and res.lo == "1.90.0"
    assert res.exit_code == 0
    assert "first fixed (NOT REPRODUCED) release: 1.91.0" in res.headline()


def test_first_bad_search_order() -> None:
    probe = Probe(bad_from="1.88.0")
    res = bisect_versions(INSIDE, good="1.84.0", bad="1.96.0", probe=probe)
    assert res.direction == FIRST_BAD
    assert probe.order == ["1.90.0", "1.87.0", "1.88.0"]
    assert res.first == "1.88.0" and res.lo == "1.87.0" and res.exact


@pytest.mark.parametrize("fixed_in", [*INSIDE, "1.96.0"])
def test_every_possible_answer_is_found_in_few_probes(fixed_in: str) -> None:
    probe = Probe(fixed_in=fixed_in)
    res = bisect_versions(list(reversed(INSIDE)), good="1.96.0", bad="1.84.0", probe=probe)  # any input order
    assert res.first == fixed_in and res.exact
    assert len(probe.order) <= 4          # ceil(log2(12))
    assert len(set(probe.order)) == len(probe.order)


def test_an_inconclusive_probe_is_skipped_for_its_neighbour() -> None:
    probe = Probe(fixed_in="1.91.0", broken={"1.93.0": INCONCLUSIVE})
    res = bisect_versions(INSIDE, good="1.96.0", bad="1.84.0", probe=probe)
    # mid 9 (1.93.0) inconclusive → its upper neighbour 1.94.0, then 1.92.0, 1.91.0
    assert probe.order == ["1.90.0", "1.93.0", "1.94.0", "1.92.0", "1.91.0"]
    assert res.first == "1.91.0" and res.exact          # the skipped one was not next to the answer
    skipped = res.probes[1]
    assert skipped.outcome is None and skipped.decision.startswith("skipped (INCONCLUSIVE)")
    assert "trying a neighbour" in skipped.decision


def test_an_uninstallable_version_next_to_the_answer_leaves_a_range() -> None:
    probe = Probe(fixed_in="1.91.0", broken={"1.90.0": UNINSTALLABLE})
    res = bisect_versions(INSIDE, good="1.96.0", bad="1.84.0", probe=probe)
    # mid 6 (1.90.0) cannot be installed → 1.91.0 (clean) → 1.87.0 → 1.89.0 (reproduced)
    assert probe.order == ["1.90.0", "1.91.0", "1.87.0", "1.89.0"]
    assert not res.exact and res.exit_code == 1
    assert res.ambiguous == ["1.90.0"] and res.hi == "1.91.0" and res.lo == "1.89.0"
    assert "one of 1.90.0, 1.91.0" in res.headline()
    assert "skipped (uninstallable): uv could not resolve it" in res.probes[0].decision


def test_errors_on_both_sides_of_the_middle() -> None:
    probe = Probe(fixed_in="1.86.0", broken={"1.90.0": ERROR, "1.91.0": ERROR, "1.89.0": INCONCLUSIVE})
    res = bisect_versions(INSIDE, good="1.96.0", bad="1.84.0", probe=probe)
    assert probe.order[:4] == ["1.90.0", "1.91.0", "1.89.0", "1.92.0"]
    assert res.first == "1.86.0" and res.exact


def test_the_stated_end_is_the_first_change() -> None:
    probe = Probe(fixed_in="1.96.0")
    res = bisect_versions(INSIDE, good="1.96.0", bad="1.84.0", probe=probe)
    assert res.first == "1.96.0" and res.lo == "1.95.0" and res.exact
    empty = bisect_versions([], good="1.85.0", bad="1.84.0", probe=Probe(fixed_in="1.85.0"))
    assert empty.probes == [] and empty.first == "1.85.0"


def test_check_ends() -> None:
    probe = Probe(fixed_in="1.91.0")
    res = bisect_versions(INSIDE, good="1.96.0", bad="1.84.0", probe=probe, check_ends=True)
    assert probe.order[:2] == ["1.84.0", "1.96.0"] and res.first == "1.91.0"
    wrong = Probe(fixed_in="1.80.0")           # the "bad" end is clean too
    res = bisect_versions(INSIDE, good="1.96.0", bad="1.84.0", probe=wrong, check_ends=True)
    assert wrong.order == ["1.84.0"] and res.first is None and res.exit_code == 1
    assert "--bad 1.84.0 did not show 'reproduced'" in res.error
    with pytest.raises(HarnessError):
        bisect_versions(INSIDE, good="1.84.0", bad="1.84.0", probe=probe)


def test_progress_estimate_and_markdown() -> None:
    seen: list[int] = []
    res = bisect_versions(INSIDE, good="1.96.0", bad="1.84.0", probe=Probe(fixed_in="1.91.0"),
                          on_probe=lambda p, r: seen.append(probes_left(r)), scenario="phantom-budget",
                          excluded={"1.95.5": "pulled"})
    assert seen[0] >= seen[-1] == 0
    md = render_md(res, "harness bisect --good 1.96.0 --bad 1.84.0")
    assert "**Result:** first fixed (NOT REPRODUCED) release: 1.91.0" in md
    assert "| 1 | 1.90.0 | 1.84.0 … 1.96.0 | REPRODUCED | reproduced | 400 | $2,000.00 |" in md
    assert "- 1.95.5: pulled" in md


# -- the release list --------------------------------------------------------------------------------
CANNED = {
    "info": {"name": "litellm", "version": "1.110.2"},
    "releases": {
        "1.84.0": [{"filename": "litellm-1.84.0-py3-none-any.whl", "yanked": False}],
        "1.9.0": [{"filename": "a.whl", "yanked": False}],
        "1.10.0": [{"filename": "a.whl", "yanked": False}],
        "1.85.0rc1": [{"filename": "a.whl", "yanked": False}],
        "1.85.0.dev1": [{"filename": "a.whl", "yanked": False}],
        "1.85.0.post1": [{"filename": "a.whl", "yanked": False}],
        "1.85.1": [{"filename": "a.whl", "yanked": True}, {"filename": "a.tar.gz", "yanked": True}],
        "1.85.2": [],
        "1.85.3": [{"filename": "a.whl", "yanked": True}, {"filename": "a.tar.gz", "yanked": False}],
        "1.86": [{"filename": "a.whl", "yanked": False}],
        "1.86.0.1": [{"filename": "a.whl", "yanked": False}],
        "1.104.9": [{"filename": "a.whl", "yanked": False}],
        "1.107.1": [{"filename": "a.whl", "yanked": False}],
        "1.100.0": [{"filename": "a.whl", "yanked": False}],
        "1.108.7": [{"filename": "a.whl", "yanked": False}],
        "1.110.2": [{"filename": "a.whl", "yanked": False}],
        "not-a-version": [{"filename": "a.whl"}],
    },
}


def test_final_releases_from_the_index() -> None:
    releases = pypi.final_releases(json.loads(json.dumps(CANNED)))
    assert releases == ["1.9.0", "1.10.0", "1.84.0", "1.85.3", "1.100.0", "1.104.9", "1.107.1", "1.108.7",
                        "1.110.2"]


def test_between_keeps_every_release_the_index_lists_installable_or_not() -> None:
    """Known install problems are no wall: a release that cannot install is probed and marked uninstallable."""
    releases = pypi.final_releases(CANNED)
    inside, excluded = pypi.between(releases, "1.108.7", "1.84.0", pypi.harness_accepts)   # either order
    assert inside == ["1.85.3", "1.100.0", "1.104.9", "1.107.1"]
    assert excluded == {}
    inside, excluded = pypi.between(releases, "1.108.7", "1.9.0", pypi.harness_accepts)
    assert "1.10.0" in excluded and "older than" in excluded["1.10.0"] and "1.10.0" not in inside


def test_fetch_index_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    def down(*args: object, **kwargs: object) -> None:
        raise httpx.ConnectError("no route")

    monkeypatch.setattr(httpx, "get", down)
    with pytest.raises(HarnessError, match="cannot read LiteLLM's release list"):
        pypi.fetch_index()


def _fake_real_runs(monkeypatch: pytest.MonkeyPatch, probe: Probe) -> Console:
    """bisect_command's real runner answers from `probe`, PyPI from CANNED; returns a silent console."""
    from harness.matrix import execute as mrunner

    def fake_call(self: mrunner.RealRunner, scenario_path: Path, version: str, out_dir: Path) -> CellResult:
        out_dir.mkdir(parents=True)
        return probe(version)

    monkeypatch.setattr(pypi, "fetch_index", lambda *a, **k: CANNED)
    monkeypatch.setattr(mrunner.RealRunner, "__call__", fake_call)
    return Console(file=open("/dev/null", "w"))  # noqa: SIM115


def test_bisect_command_writes_md_and_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.matrix import bisect_command

    probe = Probe(fixed_in="1.107.1", broken={"1.104.9": UNINSTALLABLE})   # the index cannot install 1.104.9

    console = _fake_real_runs(monkeypatch, probe)
    code = bisect_command(SEED, good="1.108.7", bad="1.84.0", duration=None, check_ends=False,
                          out=tmp_path / "b", console=console)
    # line 1.84.0 | 1.85.3 1.100.0 1.104.9 1.107.1 | 1.108.7: mid 1.100.0 (reproduced), then 1.104.9 — probed, not
    # excluded up front — is uninstallable, so its neighbour 1.107.1 is tried
    assert probe.order == ["1.100.0", "1.104.9", "1.107.1"]
    assert code == 1                                 # 1.104.9 could not be decided: not exact
    md = (tmp_path / "b" / "bisect.md").read_text()
    assert "first fixed (NOT REPRODUCED) release is one of 1.104.9, 1.107.1" in md
    assert "[phantom-budget-1.107.1](runs/phantom-budget-1.107.1/report.md)" in md
    assert "| 2 | 1.104.9 | 1.100.0 … 1.108.7 | uninstallable |" in md and "uv could not resolve it" in md
    rows = (tmp_path / "b" / "bisect.csv").read_text().splitlines()
    assert rows[0].startswith("step,version,range_before") and len(rows) == 4


def test_weak_evidence_threshold() -> None:
    from harness.matrix.bisect import evidence_outcome

    weak = CellResult("s", "1.95.0", verdict=REPRODUCED, phantoms=1, leaked_usd=0.004)
    strong = CellResult("s", "1.94.0", verdict=REPRODUCED, phantoms=0, leaked_usd=77.5)
    clean = CellResult("s", "1.96.0", verdict=NOT_REPRODUCED, phantoms=0, leaked_usd=0.0)
    plain = evidence_outcome()
    assert (plain(weak), plain(strong), plain(clean)) == ("reproduced", "reproduced", "clean")
    strict = evidence_outcome(min_phantoms=5, min_leaked_usd=5.0)
    assert (strict(weak), strict(strong), strict(clean)) == ("clean", "reproduced", "clean")

    class Loaded(Probe):        # a fixed version that shows one late release on a loaded machine
        def __call__(self, version: str) -> CellResult:
            r = super().__call__(version)
            if version == "1.93.0":
                r.verdict, r.phantoms, r.leaked_usd = REPRODUCED, 1, 0.004
            return r

    probe = Loaded(fixed_in="1.91.0")
    res = bisect_versions(INSIDE, good="1.96.0", bad="1.84.0", probe=probe, classify=strict)
    assert probe.order == ["1.90.0", "1.93.0", "1.91.0"] and res.first == "1.91.0" and res.exact
    assert res.probes[1].decision == ("clean (analyzer: REPRODUCED on weak evidence: 1 phantom(s), $0.004 leaked): "
                                      "first change is at or before 1.93.0")
    fooled = bisect_versions(INSIDE, good="1.96.0", bad="1.84.0", probe=Loaded(fixed_in="1.91.0"))
    assert fooled.first == "1.94.0"      # without the threshold the late release misleads the search


def test_resume_reuses_decided_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.matrix import bisect_command

    probe = Probe(fixed_in="1.100.0", broken={"1.85.3": ERROR})

    console = _fake_real_runs(monkeypatch, probe)
    assert bisect_command(SEED, "1.108.7", "1.84.0", None, False, tmp_path / "b1", console) == 1   # 1.85.3 broke
    assert probe.order == ["1.100.0", "1.85.3"]
    probe.order.clear()
    probe.broken = {}
    code = bisect_command(SEED, "1.108.7", "1.84.0", None, False, tmp_path / "b2", console, resume=tmp_path / "b1")
    assert code == 0
    assert probe.order == ["1.85.3"]              # the error is retried, the decided 1.100.0 is reused
    md = (tmp_path / "b2" / "bisect.md").read_text()
    assert "(../b1/runs/phantom-budget-1.100.0/report.md)" in md
