"""initdb runs as a recorded child (a crash during it leaves nothing `harness down` cannot find)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from harness.errors import StackError
from harness.stack import postgres
from harness.util.procs import STATE_FILE, ProcessGroup


def _fake_initdb(bindir: Path, state: Path, rc: int) -> None:
    """An `initdb` that copies the state file (its own record must be in it) and makes the data dir."""
    bindir.mkdir()
    script = bindir / "initdb"
    # the record is saved right after the fork: wait (bounded) until it is there, then copy it
    script.write_text(f"#!/bin/sh\nfor i in $(seq 500); do grep -qs postgres-initdb {state / STATE_FILE} && break; "
                      f"sleep 0.01; done\ncp {state / STATE_FILE} {bindir / 'seen.json'}\n"
                      f"touch \"$2/PG_VERSION\"\necho initdb said hello\nexit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("rc", [0, 1])
def test_initdb_is_recorded_while_it_runs(rc: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "run_as", lambda: None)     # no user switch: the fake runs as we are
    monkeypatch.setenv("HARNESS_PG_BINDIR", str(tmp_path / "bin"))
    _fake_initdb(tmp_path / "bin", tmp_path / "state", rc)
    group = ProcessGroup(tmp_path / "state")
    server = postgres.PostgresServer(tmp_path / "data", 5999)
    if rc == 0:
        server._prepare_data_dir(group, tmp_path / "logs")
    else:
        with pytest.raises(StackError, match="(?s)initdb failed.*initdb said hello"):
            server._prepare_data_dir(group, tmp_path / "logs")
    seen = json.loads((tmp_path / "bin" / "seen.json").read_text())
    assert [r["name"] for r in seen["processes"]] == ["postgres-initdb"]
    assert seen["processes"][0]["create_time"] is not None
    assert group.records == {} and not (tmp_path / "state" / STATE_FILE).exists()
