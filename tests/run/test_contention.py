"""The contention figures (harness/run/contention.py), the machine lock (harness/run/exclusive.py) and the
starvation rule of the analyzer (harness/analyze/checks/contention.py)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.analyze.checks.contention import FOREIGN_STARVED, judge
from harness.errors import HarnessError
from harness.run.contention import ContentionMeter, ProcessTable, harness_mocks
from harness.run.exclusive import machine_turn

BUSY = "import time\nt = time.time() + {s}\nwhile time.time() < t: pass\n"


def _orphan_busy(seconds: float) -> int:
    """A busy process that is NOT a descendant of this one (its parent shell exits at once): foreign."""
    out = subprocess.run(["sh", "-c", f"{sys.executable} -c '{BUSY.format(s=seconds)}' >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def _wait_gone(pid: int, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while psutil.pid_exists(pid) and time.monotonic() < end:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.Error:
            return
        time.sleep(0.1)


def test_a_process_outside_the_run_is_foreign_and_a_child_is_ours() -> None:
    table = ProcessTable(set())
    table.sample(first=True)
    foreign = _orphan_busy(1.5)
    child = subprocess.Popen([sys.executable, "-c", BUSY.format(s=1.5)])     # a descendant of this process
    try:
        assert not table._foreign(psutil.Process(child.pid))
        assert table._foreign(psutil.Process(foreign))
        end = time.monotonic() + 20
        while psutil.pid_exists(foreign) and time.monotonic() < end:     # sampled while alive, as the meter does
            table.sample()
            time.sleep(0.1)
        child.wait(timeout=30)
    finally:
        child.kill()
    # the foreign process burnt up to 1.5 s (less its last 0.1 s); the child's CPU must not be in the figure
    assert 0.3 < table.foreign_by_pid.get(foreign, 0.0) < 2.0
    assert child.pid not in table.foreign_by_pid and table.foreign_s >= table.foreign_by_pid[foreign]


def test_meter_reports_foreign_cpu_and_other_stacks() -> None:
    meter = ContentionMeter(sample_s=0.2, stacks_probe=lambda own, ledger: ["pid 9 (/x/ledger.csv)"])
    meter.start()
    pid = _orphan_busy(1.0)
    _wait_gone(pid)
    figures = meter.stop(cpus=2)
    assert figures["foreign_share"] > 0.05 and figures["samples"] >= 2
    assert figures["other_stacks_max"] == 1 and figures["other_stacks_seen"] == ["pid 9 (/x/ledger.csv)"]
    assert set(figures["load_avg_1m"]) == {"mean", "max", "max_per_cpu"}


def test_harness_mocks_finds_a_mock_by_its_command_line(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.csv"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-m", "harness.mockllm",
                             "--ledger", str(ledger)])
    try:
        deadline = time.monotonic() + 10
        while (found := [m for m in harness_mocks() if m[0] == proc.pid]) == [] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert found == [(proc.pid, str(ledger))]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(("figures", "starved", "words"), [
    ({"foreign_share": 0.05, "steal_share": 0.01, "other_stacks_max": 0}, False, []),
    ({"foreign_share": FOREIGN_STARVED, "other_stacks_max": 0}, True, ["outside this run"]),
    ({"foreign_share": 0.2, "steal_share": 0.06, "other_stacks_max": 0}, True, ["steal"]),
    ({"foreign_share": 0.0, "other_stacks_max": 2, "other_stacks_seen": ["a", "b"]}, True, ["2 other harness"]),
])
def test_starvation_rule(figures: dict[str, object], starved: bool, words: list[str]) -> None:
    got, why = judge(figures)
    assert got is starved and len(why) == len(words)
    assert all(w in text for w, text in zip(words, why, strict=True))


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


@pytest.fixture
def lock(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "machine.lock"


def _hold(path: Path, how: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, how | fcntl.LOCK_NB)
    return fd


def test_exclusive_waits_for_a_running_run_then_gives_up(lock: Path) -> None:
    other = _hold(lock, fcntl.LOCK_SH)      # an ordinary run holds the machine (shared)
    clock, said = FakeClock(), []
    try:
        with pytest.raises(HarnessError) as err, machine_turn(True, wait_s=10, path=lock, mocks=list,
                                                              sleep=clock.sleep, clock=clock, say=said.append):
            pytest.fail("must not get the machine")
        assert "not free after 10 s" in err.value.problem and clock.t >= 10
        assert said and "waiting" in said[0]
        # an ordinary run shares the machine with it
        with machine_turn(False, path=lock, mocks=list, sleep=clock.sleep, clock=clock, say=said.append):
            pass
    finally:
        os.close(other)
    with machine_turn(True, wait_s=10, path=lock, mocks=list, sleep=clock.sleep, clock=clock, say=said.append):
        pass      # free now


def test_an_ordinary_run_waits_for_an_exclusive_one(lock: Path) -> None:
    other = _hold(lock, fcntl.LOCK_EX)
    clock = FakeClock()
    try:
        with pytest.raises(HarnessError, match="not free"), machine_turn(False, wait_s=4, path=lock, mocks=list,
                                                                         sleep=clock.sleep, clock=clock,
                                                                         say=lambda s: None):
            pass
    finally:
        os.close(other)


def test_exclusive_waits_for_other_stacks_but_not_its_own(lock: Path) -> None:
    clock = FakeClock()
    one = [(123, "/other/ledger.csv")]
    with pytest.raises(HarnessError, match="1 other harness stack"), machine_turn(
            True, wait_s=6, path=lock, mocks=lambda: one, sleep=clock.sleep, clock=clock, say=lambda s: None):
        pass
    with machine_turn(True, own_stacks=1, wait_s=6, path=lock, mocks=lambda: one, sleep=clock.sleep, clock=clock,
                      say=lambda s: None):
        pass      # --reuse: the one mock is this run's own stack's
    seen = iter([one, one, []])          # the other stack goes down while we wait
    with machine_turn(True, wait_s=60, path=lock, mocks=lambda: next(seen), sleep=clock.sleep, clock=clock,
                      say=lambda s: None):
        pass


def test_other_stacks_names_the_others_not_this_runs_mock(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.run.contention as contention

    mocks = [(10, "/runs/a/ledger.csv"), (20, "/runs/mine/ledger.csv"), (30, "/data/ledger.csv")]
    monkeypatch.setattr(contention, "harness_mocks", lambda: mocks)
    assert contention.other_stacks(1, "/runs/mine/ledger.csv") == ["pid 10 (/runs/a/ledger.csv)",
                                                                   "pid 30 (/data/ledger.csv)"]
    # a container's mock: its path says nothing, only the count does
    assert len(contention.other_stacks(1, "/runs/elsewhere/ledger.csv")) == 2
    assert contention.other_stacks(3, "") == []
