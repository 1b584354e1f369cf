"""ProcessGroup: own process groups, a state file, identity (create time) checked before every signal."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness.errors import StackError
from harness.util.procs import STATE_FILE, ProcessGroup, ProcRecord, group_alive, verified_leader, wait_until

SLEEPER = [sys.executable, "-c", "import subprocess, sys, time; "
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"]
# a child whose own child leaves the process group (os.setsid), then prints its pid
ESCAPER = [sys.executable, "-c", "import subprocess, sys, time; "
           "subprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); print(os.getpid(), flush=True); "
           "time.sleep(600)']); time.sleep(600)"]


def test_children_run_in_their_own_group_and_stop_all_leaves_nothing(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path)
    proc = group.start("sleeper", SLEEPER, log=tmp_path / "sleeper.log")
    assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
    # the grandchild is in the same group: wait until it exists
    wait_until(lambda: len(_group_members(proc.pid)) >= 2, deadline_s=10, what="grandchild")
    record = json.loads((tmp_path / STATE_FILE).read_text())["processes"][0]
    assert record["name"] == "sleeper"
    assert record["create_time"] == pytest.approx(psutil.Process(proc.pid).create_time(), abs=0.01)
    assert group.stop_all(timeout=5) == ["sleeper"]
    # stop_all returns only once the whole group is gone: no polling here
    assert not group_alive(proc.pid)
    assert not (tmp_path / STATE_FILE).exists()    # nothing recorded, no owner facts: no state file


def test_a_second_handle_can_stop_what_the_first_started(tmp_path: Path) -> None:
    first = ProcessGroup(tmp_path)
    proc = first.start("sleeper", SLEEPER, log=tmp_path / "sleeper.log")
    second = ProcessGroup(tmp_path)  # e.g. `harness down` in a new process
    assert second.alive("sleeper")
    second.stop_all(timeout=5)
    assert not group_alive(proc.pid)
    proc.wait(timeout=5)


def test_a_pid_now_owned_by_another_process_is_never_signalled(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        created = psutil.Process(stranger.pid).create_time()
        # a record of "our" process that had this pid earlier (created 100 s before the stranger)
        (tmp_path / STATE_FILE).write_text(json.dumps({"processes": [
            {"name": "old", "pid": stranger.pid, "pgid": stranger.pid, "cmd": ["sleep", "60"], "log": "",
             "create_time": created - 100}], "extra": {}}))
        group = ProcessGroup(tmp_path)
        assert not group.alive("old")
        group.kill("old")
        assert group.stop_all(timeout=2) == ["old"]     # already gone, as far as the record goes
        assert stranger.poll() is None and verified_leader(_rec(stranger.pid)) is not None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_record_of_an_old_version_without_create_time_is_checked_by_its_command(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        legacy = {"name": "legacy", "pid": proc.pid, "pgid": proc.pid, "log": ""}
        (tmp_path / STATE_FILE).write_text(json.dumps({"processes": [
            {**legacy, "cmd": ["sleep", "61"]}], "extra": {}}))
        ProcessGroup(tmp_path).stop_all(timeout=2)
        assert proc.poll() is None                       # another command line: a stranger
        (tmp_path / STATE_FILE).write_text(json.dumps({"processes": [
            {**legacy, "cmd": ["sleep", "60"]}], "extra": {}}))
        ProcessGroup(tmp_path).stop_all(timeout=5)
        assert proc.wait(timeout=5) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_adopted_process_and_a_descendant_that_left_the_group_are_stopped(tmp_path: Path) -> None:
    outside = subprocess.Popen(ESCAPER, start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert outside.stdout is not None
    escaped = int(outside.stdout.readline())
    assert os.getpgid(escaped) != outside.pid
    group = ProcessGroup(tmp_path)
    rec = group.adopt("locust", outside.pid)
    assert rec.cmd == ESCAPER and rec.create_time is not None
    assert ProcessGroup(tmp_path).stop_all(timeout=5) == ["locust"]
    assert outside.wait(timeout=5) != 0
    assert _gone(escaped)


def test_a_child_forked_while_the_group_shuts_down_is_gone_too(tmp_path: Path) -> None:
    """The leader answers SIGTERM by forking a child that ignores SIGTERM, then exits: not in the first
    snapshot of the group, so only the re-check after the wait finds (and SIGKILLs) it."""
    pid_file = tmp_path / "late.pid"
    code = ("import signal, subprocess, sys, time\n"
            "def bye(*_):\n"
            "    p = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
            f"    open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\ntime.sleep(600)\n")
    group = ProcessGroup(tmp_path)
    proc = group.start("forker", [sys.executable, "-c", code], log=tmp_path / "forker.log")
    wait_until(lambda: "ready" in (tmp_path / "forker.log").read_text(), deadline_s=10, what="forker ready")
    assert group.stop_all(timeout=5) == ["forker"]
    assert _gone(int(pid_file.read_text()))
    assert not group_alive(proc.pid)


def test_adopting_a_missing_process_or_one_in_our_group_is_an_error(tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(StackError, match="cannot track 'x': no process"):
        ProcessGroup(tmp_path).adopt("x", proc.pid)
    same_group = subprocess.Popen(["sleep", "60"])      # in the test's own process group
    try:
        with pytest.raises(StackError, match="does not lead its own process group"):
            ProcessGroup(tmp_path).adopt("x", same_group.pid)
    finally:
        same_group.kill()
        same_group.wait()
    assert not (tmp_path / STATE_FILE).exists()


def test_a_one_shot_child_is_recorded_while_it_runs(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path)
    seen = tmp_path / "seen.json"
    # the child copies the state file while it runs, once its own record is there (saved right after the fork)
    state = str(tmp_path / STATE_FILE)
    code = (f"import os, shutil, time\nfor _ in range(500):\n"
            f"    if os.path.exists({state!r}) and 'initdb' in open({state!r}).read(): break\n"
            f"    time.sleep(0.01)\nshutil.copy({state!r}, {str(seen)!r})\nraise SystemExit(3)\n")
    assert group.run("initdb", [sys.executable, "-c", code], log=tmp_path / "initdb.log") == 3
    assert [r["name"] for r in json.loads(seen.read_text())["processes"]] == ["initdb"]
    assert group.records == {} and not (tmp_path / STATE_FILE).exists()


def test_nothing_is_written_until_something_starts(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path / "state")
    assert group.stop_all() == []
    assert not (tmp_path / "state").exists()


def _gone(pid: int) -> bool:
    """Exited: reaped, or a zombie (re-parented to an init that may not reap)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _rec(pid: int) -> ProcRecord:
    return ProcRecord(name="x", pid=pid, pgid=pid, cmd=[], log="", create_time=psutil.Process(pid).create_time())


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
