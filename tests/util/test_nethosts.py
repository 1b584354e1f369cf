"""NetHosts: real network namespaces on a bridge (root only; CI runs as root, so these run there).

Every test builds real hosts and checks that nothing of them (namespace, veth, bridge, iptables rule, record,
process inside) is left afterwards.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.errors import HarnessError
from harness.util import nethosts
from harness.util.nethosts import RULE_COMMENT, STATE_DIR, NetHosts, leftovers, require_tools, used_networks

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="network namespaces need root (CI runs as root)")

# a TCP server that prints "ready <port>" once it listens, answers one line to each connection
SERVER = ("import socket, sys\n"
          "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()\n"
          "print('ready', s.getsockname()[1], flush=True)\n"
          "while True:\n"
          "    c, _ = s.accept(); c.sendall(b'hello from ' + sys.argv[3].encode()); c.close()\n")
# connects once: prints what it got and exits 0, or prints the error and exits 1
CLIENT = ("import socket, sys\n"
          "try:\n"
          "    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
          "    print(c.recv(100).decode())\n"
          "except OSError as exc:\n"
          "    print(type(exc).__name__, exc); sys.exit(1)\n")
SLEEPER = "import time; print('ready', flush=True); time.sleep(600)"


def _tag() -> str:
    return "t" + secrets.token_hex(3)


def _gone(names: list[str], tag: str) -> list[str]:
    """Of `names` (namespaces, links) and the tag's record and iptables rule, what still exists."""
    have = set(nethosts._namespaces()) | set(nethosts._links())
    left = [n for n in names if n in have]
    if (STATE_DIR / f"{tag}.json").exists():
        left.append("record")
    rules = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True, check=False).stdout
    if re.search(re.escape(f"{RULE_COMMENT}{tag}") + r"\b", rules):
        left.append("iptables rule")
    return left


def _connect(prefix: list[str], address: str, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-c", CLIENT, address, str(port)], capture_output=True,
                          text=True, timeout=20, check=False)


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _serve(prefix: list[str], bind: str, port: int, label: str, started: list[subprocess.Popen[str]]) -> int:
    proc = subprocess.Popen([*prefix, sys.executable, "-c", SERVER, bind, str(port), label],  # noqa: S603
                            stdout=subprocess.PIPE, text=True)
    started.append(proc)
    line = proc.stdout.readline() if proc.stdout else ""       # EOF (crash) ends the wait as well
    assert line.startswith("ready"), f"server in {prefix} did not start: {line!r}"
    return int(line.split()[1])


def test_not_root_is_one_line_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(HarnessError, match="needs root") as err:
        require_tools()
    assert "\n" not in err.value.line() and "sudo" in err.value.line()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(HarnessError, match="iproute2"):
        require_tools()


def test_bad_tags_and_counts_are_refused() -> None:
    for tag in ("UPPER", "far-too-long-tag", "", "a b"):
        with pytest.raises(HarnessError, match="tag"):
            NetHosts(2, tag=tag)
    with pytest.raises(HarnessError, match="count"):
        NetHosts(0)


@needs_root
def test_hosts_reach_each_other_through_the_bridge_and_loopback_stays_their_own(
        servers: list[subprocess.Popen[str]]) -> None:
    tag = _tag()
    with NetHosts(3, tag=tag) as hosts:
        names = hosts.names()
        a, b, c = hosts
        assert hosts.subnet is not None and hosts.subnet.prefixlen == 24
        assert hosts.subnet.subnet_of(ipaddress.IPv4Network("10.213.0.0/16"))
        assert [h.address for h in hosts] == [str(hosts.subnet.network_address + 10 + i) for i in range(3)]
        assert hosts.bridge_address == str(hosts.subnet.network_address + 1)
        assert a.exec_prefix == ["ip", "netns", "exec", f"hh-{tag}-0"] and a.name == f"hh-{tag}-0"
        record = json.loads(hosts.record_path.read_text())
        assert record["pid"] == os.getpid() and set(record["namespaces"]) == {a.name, b.name, c.name}
        assert set(names) <= set(nethosts._namespaces()) | set(nethosts._links())

        # A serves on every address; one on its loopback only, too
        port = _serve(a.exec_prefix, "0.0.0.0", 0, "A", servers)   # noqa: S104 - inside the namespace
        lo_port = _serve(a.exec_prefix, "127.0.0.1", 0, "A-lo", servers)
        got = _connect(b.exec_prefix, a.address, port)                  # host B → host A: through the bridge
        assert got.returncode == 0 and got.stdout.strip() == "hello from A", got.stdout + got.stderr
        got = _connect(c.exec_prefix, a.address, port)
        assert got.returncode == 0, got.stdout
        got = _connect([], a.address, port)                             # the root namespace reaches hosts
        assert got.returncode == 0, got.stdout
        for port_ in (port, lo_port):                                   # B's 127.0.0.1 is B's own
            got = _connect(b.exec_prefix, "127.0.0.1", port_)
            assert got.returncode == 1 and "ConnectionRefused" in got.stdout, got.stdout
        got = _connect(b.exec_prefix, a.address, lo_port)               # A's loopback-only server: not from B
        assert got.returncode == 1 and "ConnectionRefused" in got.stdout, got.stdout
        got = _connect(a.exec_prefix, "127.0.0.1", lo_port)             # … but from A itself
        assert got.returncode == 0 and got.stdout.strip() == "hello from A-lo"

        # a host reaches the root namespace through the bridge address
        root_port = _serve([], hosts.bridge_address, 0, "root", servers)
        got = _connect(c.exec_prefix, hosts.bridge_address, root_port)
        assert got.returncode == 0 and got.stdout.strip() == "hello from root", got.stdout
        inside = [p.pid for p in servers[:2]]
    assert not _gone(names, tag)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in inside)          # the servers inside the namespaces were ended


@needs_root
def test_everything_is_removed_after_an_exception_in_the_block() -> None:
    tag = _tag()
    names: list[str] = []
    sleeper: subprocess.Popen[str] | None = None
    with pytest.raises(RuntimeError, match="boom"), NetHosts(2, tag=tag) as hosts:
        names = hosts.names()
        sleeper = subprocess.Popen([*hosts[1].exec_prefix, sys.executable, "-c", SLEEPER],  # noqa: S603
                                   stdout=subprocess.PIPE, text=True)
        assert sleeper.stdout is not None and sleeper.stdout.readline().strip() == "ready"
        raise RuntimeError("boom")
    assert names and not _gone(names, tag)
    assert sleeper is not None and sleeper.wait(timeout=10) != 0     # ended by the close


@needs_root
def test_a_failure_while_building_removes_what_was_built(monkeypatch: pytest.MonkeyPatch) -> None:
    tag = _tag()
    monkeypatch.setattr(nethosts, "HOST_IFACE", "x" * 20)                # too long: `ip … set name` fails
    hosts = NetHosts(2, tag=tag)
    with pytest.raises(HarnessError, match="failed"):
        hosts.create()
    assert not _gone(hosts.names(), tag)
    assert not hosts.hosts


@needs_root
def test_a_used_tag_or_subnet_is_refused_and_parallel_uses_get_different_subnets() -> None:
    tag = _tag()
    with NetHosts(1, tag=tag) as first, NetHosts(1) as second:
        assert first.subnet != second.subnet
        with pytest.raises(HarnessError, match="in use"):
            NetHosts(1, tag=tag).create()
        with pytest.raises(HarnessError, match="in use on this machine"):
            NetHosts(1, subnet=str(first.subnet)).create()
        with pytest.raises(HarnessError, match="in use on this machine"):
            NetHosts(1, subnet="127.0.0.0/24").create()               # inside lo's 127.0.0.0/8
        taken = used_networks()
        assert first.subnet in taken and any(n.overlaps(ipaddress.IPv4Network("127.0.0.0/24")) for n in taken)
    assert not _gone([*first.names(), *second.names()], tag)


@needs_root
def test_leftovers_removes_the_hosts_of_a_dead_owner(tmp_path: Path) -> None:
    tag = _tag()
    crash = ("import os, sys\n"
             "from harness.util.nethosts import NetHosts\n"
             "h = NetHosts(2, tag=sys.argv[1]); h.create()\n"
             "import subprocess\n"
             "subprocess.Popen([*h[0].exec_prefix, sys.executable, '-c', 'import time; time.sleep(600)'],"
             " start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
             "print(' '.join(h.names()), flush=True)\n"
             "os._exit(0)\n")                                           # no cleanup: a crashed run
    res = subprocess.run([sys.executable, "-c", crash, tag], capture_output=True, text=True, timeout=60,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    names = res.stdout.split()
    assert names
    assert (STATE_DIR / f"{tag}.json").exists() and set(names) <= set(nethosts._namespaces()) | set(nethosts._links())
    stray = [int(p) for p in subprocess.run(["ip", "netns", "pids", f"hh-{tag}-0"], capture_output=True, text=True,
                                            check=True).stdout.split()]
    assert stray
    with NetHosts(1) as alive:                                           # a live owner's hosts are kept
        removed = leftovers()
        assert set(names) <= set(removed)
        assert set(alive.names()) <= set(nethosts._namespaces()) | set(nethosts._links())
    assert not _gone(names, tag)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in stray)
