import os
import sys
from pathlib import Path

from harness.util.procs import ProcessGroup, group_alive, wait_until

SLEEPER = [sys.executable, "-c", "import subprocess, sys, time; "
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"]


def test_children_run_in_their_own_group_and_stop_all_leaves_nothing(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path)
    proc = group.start("sleeper", SLEEPER, log=tmp_path / "sleeper.log")
    assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
    # the grandchild is in the same group: wait until it exists
    wait_until(lambda: len(_group_members(proc.pid)) >= 2, deadline_s=10, what="grandchild")
    assert "sleeper" in (tmp_path / "state.json").read_text()
    group.stop_all(timeout=5)
    assert not group_alive(proc.pid)
    assert "sleeper" not in (tmp_path / "state.json").read_text()


def test_a_second_handle_can_stop_what_the_first_started(tmp_path: Path) -> None:
    first = ProcessGroup(tmp_path)
    proc = first.start("sleeper", SLEEPER, log=tmp_path / "sleeper.log")
    second = ProcessGroup(tmp_path)  # e.g. `harness down` in a new process
    assert second.alive("sleeper")
    second.stop_all(timeout=5)
    assert not group_alive(proc.pid)
    proc.wait(timeout=5)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().split(") ", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members
