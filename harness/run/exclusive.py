"""One machine, one experiment: `--exclusive` waits until this run has the machine to itself.

Every run holds a machine-wide lock file while its stack is up (`machine_turn`): shared for an ordinary run,
exclusive with `--exclusive`. flock(2) is the mechanism (hand-written around fcntl because it is ten lines:
the kernel drops a dead process's lock, so a crashed run never leaves the machine locked). An exclusive run:

1. takes the lock exclusively: it waits for the runs holding it (ordinary runs of any checkout); an ordinary
   run started meanwhile waits for the exclusive one to end instead of starving it;
2. then waits until no other harness stack runs on the machine (`harness up` stacks and stacks of runs that
   crashed hold no lock; every stack has one mock upstream: harness/run/contention.py `harness_mocks`).

Both waits poll with one deadline (`--exclusive-wait`); past it: HarnessError (exit 2), before the run folder
exists. The lock lives in the system temp folder so every checkout on the machine sees the same one.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import HarnessError
from harness.run.contention import harness_mocks

LOCK_NAME = "litellm-harness-machine.lock"
DEFAULT_WAIT_S = 3600.0
POLL_S = 2.0


def lock_path() -> Path:
    return Path(tempfile.gettempdir()) / LOCK_NAME


def _try_lock(fd: int, exclusive: bool) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def machine_turn(exclusive: bool, *, own_stacks: int = 0, wait_s: float = DEFAULT_WAIT_S,
                 say: Callable[[str], None] = print, path: Path | None = None,
                 mocks: Callable[[], list[tuple[int, str]]] = harness_mocks,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Hold the machine lock (shared, or exclusive and alone) for the `with` body.

    `own_stacks`: harness stacks that are this run's own and already up (1 with --reuse)."""
    path = path or lock_path()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = clock() + wait_s
        said = False
        while not _try_lock(fd, exclusive):
            if not said:
                say("waiting for the other harness run(s) on this machine to finish (--exclusive)" if exclusive
                    else "waiting: an --exclusive harness run has this machine")
                said = True
            if clock() >= deadline:
                raise HarnessError(f"the machine was not free after {wait_s:.0f} s: other harness runs hold "
                                   f"{path}", "wait for them, or run without --exclusive (the run records that "
                                   "it was not alone)" if exclusive else "wait for the exclusive run to end")
            sleep(POLL_S)
        said = False
        while exclusive and len(others := mocks()) > own_stacks:
            extra = len(others) - own_stacks
            if not said:
                say(f"--exclusive: waiting for {extra} other harness stack(s) to stop "
                    f"({', '.join(f'mock pid {pid}' for pid, _ in others)})")
                said = True
            if clock() >= deadline:
                raise HarnessError(f"--exclusive: {extra} other harness stack(s) still running after "
                                   f"{wait_s:.0f} s", "stop them (`harness down --all` in their checkout) or run "
                                   "without --exclusive")
            sleep(POLL_S)
        yield
    finally:
        os.close(fd)    # closing the descriptor releases the lock
