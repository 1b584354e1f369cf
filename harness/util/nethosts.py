"""Test hosts made of Linux network namespaces on one private bridge (root only; iproute2's `ip`).

    with NetHosts(3, tag="t1") as hosts:
        mock = subprocess.Popen([*hosts[0].exec_prefix, sys.executable, "-m", "harness.mockllm",
                                 "--host", hosts[0].address, ...])
        ...   # hosts[1] reaches hosts[0].address through the bridge; the root namespace reaches every host too

What `NetHosts(count, tag)` builds, and removes again on exit (also after an exception in the with-block):

- a bridge `hhb-<tag>` in the root namespace holding `.1` of a private /24 (`bridge_address`: how the root
  namespace reaches the hosts, and every host's default route). The /24 is 10.213.<n>.0/24, the first n whose
  range no address, route or other NetHosts of this machine overlaps (`subnet=` names one; HarnessError when it
  is taken);
- per host i a namespace `hh-<tag>-<i>` (lo up, `eth0` = `.10+i`/24, default route via the bridge) joined to
  the bridge by a veth pair whose root end is `hhv-<tag>-<i>`;
- when bridged IPv4 goes through iptables (`net.bridge.bridge-nf-call-iptables` = 1, as with Docker, whose
  FORWARD policy is DROP) one `iptables -I FORWARD -i <bridge> -o <bridge> -j ACCEPT` rule, commented
  `harness-nethosts:<tag>`, so the hosts reach each other.

Every use has its own tag (given, or 6 random hex digits; [a-z0-9], at most 8 characters: Linux interface names
have at most 15), so parallel test sessions never collide. Before anything is created its record —
owner pid and create time, subnet, every name — goes to /run/harness-nethosts/<tag>.json (under an flock that
also serialises the choice of subnet), and it is deleted last. `leftovers()` removes what a crashed run left:
every record whose owner is gone, and any `hh-`/`hhb-`/`hhv-` name or rule no live record claims.
Closing also ends the processes still running inside the namespaces (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from harness.errors import HarnessError

PREFIX = "hh-"                 # namespaces: hh-<tag>-<i>
BRIDGE_PREFIX = "hhb-"         # the bridge: hhb-<tag>
VETH_PREFIX = "hhv-"           # root end of a host's veth pair: hhv-<tag>-<i>
PEER_PREFIX = "hhp-"           # the host's end before it moves into its namespace (then renamed to eth0)
HOST_IFACE = "eth0"
STATE_DIR = Path("/run/harness-nethosts")
LOCK_FILE = ".lock"
RULE_COMMENT = "harness-nethosts:"
BASE_NET = ipaddress.IPv4Network("10.213.0.0/16")
HOST_OFFSET = 10               # host i has .10+i
MAX_HOSTS = 64
TAG_RE = re.compile(r"^[a-z0-9]{1,8}$")
BR_NF_SYSCTL = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
KILL_WAIT_S = 3.0
CREATE_TIME_TOLERANCE_S = 1.0


def require_tools() -> None:
    """HarnessError (one line with the fix) when this process cannot build namespaces."""
    if os.geteuid() != 0:
        raise HarnessError("NetHosts needs root (network namespaces, veth pairs, a bridge)",
                           "run as root (sudo), or skip what needs test hosts")
    if shutil.which("ip") is None:
        raise HarnessError("NetHosts needs `ip` (iproute2), which is not on PATH", "apt-get install iproute2")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)  # noqa: S603,S607
    if check and res.returncode != 0:
        raise HarnessError(f"`ip {' '.join(args)}` failed: {res.stderr.strip() or res.returncode}",
                           "see the message; `python -c 'from harness.util.nethosts import leftovers; "
                           "print(leftovers())'` removes what a failed run left")
    return res


def _ip_json(*args: str) -> list[dict[str, Any]]:
    out = _ip("-j", *args).stdout.strip()
    data = json.loads(out) if out else []
    return data if isinstance(data, list) else []


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True,  # noqa: S603,S607
                          check=False)


def _bridged_ipv4_filtered() -> bool:
    """Bridged IPv4 frames go through iptables' FORWARD chain (br_netfilter loaded and switched on)."""
    try:
        return BR_NF_SYSCTL.read_text().strip() == "1"
    except OSError:
        return False


def _rule(bridge: str, tag: str) -> list[str]:
    return ["FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", f"{RULE_COMMENT}{tag}",
            "-j", "ACCEPT"]


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine has an address in or a route to (the default route left out)."""
    nets: list[ipaddress.IPv4Network] = []
    for link in _ip_json("-4", "addr", "show"):
        for info in link.get("addr_info", []):
            with contextlib.suppress(KeyError, ValueError):
                nets.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for route in _ip_json("-4", "route", "show", "table", "all"):
        dst = str(route.get("dst", ""))
        if not dst or dst == "default":
            continue
        with contextlib.suppress(ValueError):
            net = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
            if net.prefixlen > 0:
                nets.append(net)
    return nets


@dataclass(frozen=True)
class NetHost:
    """One test host: a network namespace with one address on the bridge."""

    name: str          # the namespace: hh-<tag>-<i>
    index: int
    address: str       # its eth0 address (what other hosts and the root namespace connect to)
    veth: str          # the root end of its veth pair (on the bridge)

    @property
    def exec_prefix(self) -> list[str]:
        """Prefix that runs a command in this host (`ip netns exec` execs it: the pid is the command's)."""
        return ["ip", "netns", "exec", self.name]

    def command(self, args: Sequence[str]) -> list[str]:
        return [*self.exec_prefix, *args]


# -- records (who owns what) ---------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(state_dir / LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _records(state_dir: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not state_dir.is_dir():
        return out
    for path in sorted(state_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {"tag": path.stem, "pid": 0}       # unreadable: treated as owned by nobody
        if isinstance(data, dict):
            out[path.stem] = data
    return out


def _owner_alive(record: dict[str, Any]) -> bool:
    try:
        proc = psutil.Process(int(record.get("pid") or 0))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = record.get("create_time")
        return created is None or abs(proc.create_time() - float(created)) <= CREATE_TIME_TOLERANCE_S
    except (psutil.Error, ValueError):
        return False


def _namespaces() -> list[str]:
    return [str(ns.get("name")) for ns in _ip_json("netns", "list") if ns.get("name")]


def _links() -> list[str]:
    return [str(link.get("ifname")) for link in _ip_json("link", "show") if link.get("ifname")]


def _kill_inside(namespace: str) -> None:
    """End every process still running in a namespace: SIGTERM, then SIGKILL after KILL_WAIT_S."""
    def pids() -> list[int]:
        res = _ip("netns", "pids", namespace, check=False)
        return [int(p) for p in res.stdout.split() if p.isdigit()] if res.returncode == 0 else []

    found = pids()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + KILL_WAIT_S
        while (found := pids()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not found:
            return


def _remove(record: dict[str, Any]) -> list[str]:
    """Remove what a record names (whatever of it exists); returns the names removed."""
    removed: list[str] = []
    namespaces = set(_namespaces())
    for ns in record.get("namespaces", []):
        if ns in namespaces:
            _kill_inside(ns)
    links = set(_links())
    for link in [*record.get("veths", []), record.get("bridge")]:
        if link and link in links:
            _ip("link", "del", str(link), check=False)
            removed.append(str(link))
    for ns in record.get("namespaces", []):
        if ns in namespaces:
            _ip("netns", "del", ns, check=False)
            removed.append(ns)
    if record.get("iptables"):
        while _iptables("-D", *record["iptables"]).returncode == 0:   # once per copy of the rule
            removed.append(f"iptables {RULE_COMMENT}{record.get('tag')}")
    return removed


def _pick_subnet(taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    for net in BASE_NET.subnets(new_prefix=24):
        if not any(net.overlaps(other) for other in taken):
            return net
    raise HarnessError(f"no free /24 in {BASE_NET} for test hosts (every one overlaps an address or route here)",
                       "remove stale test hosts (harness.util.nethosts.leftovers()) or pass subnet=")


class NetHosts:
    """`count` network namespaces on one bridge; a context manager that removes everything on exit."""

    def __init__(self, count: int, tag: str | None = None, subnet: str | None = None,
                 state_dir: Path = STATE_DIR) -> None:
        if not 1 <= count <= MAX_HOSTS:
            raise HarnessError(f"NetHosts: count must be 1..{MAX_HOSTS}, got {count}")
        tag = tag if tag is not None else secrets.token_hex(3)
        if not TAG_RE.match(tag):
            raise HarnessError(f"NetHosts: tag {tag!r} must be 1-8 characters of [a-z0-9]",
                               "interface names are at most 15 characters")
        self.count = count
        self.tag = tag
        self.state_dir = state_dir
        self.requested_subnet = ipaddress.IPv4Network(subnet, strict=True) if subnet else None
        self.bridge = f"{BRIDGE_PREFIX}{tag}"
        self.subnet: ipaddress.IPv4Network | None = None
        self.hosts: list[NetHost] = []
        self.iptables_rule: list[str] | None = None
        self._open = False

    # -- the with-block ---------------------------------------------------------------------------
    def __enter__(self) -> NetHosts:
        self.create()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __getitem__(self, index: int) -> NetHost:
        return self.hosts[index]

    def __iter__(self) -> Iterator[NetHost]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    @property
    def bridge_address(self) -> str:
        """The root namespace's address on the bridge: how it reaches the hosts (and the hosts reach it)."""
        assert self.subnet is not None, "NetHosts not created"
        return str(self.subnet.network_address + 1)

    @property
    def record_path(self) -> Path:
        return self.state_dir / f"{self.tag}.json"

    def names(self) -> list[str]:
        """Every name this use creates: namespaces, veths (root ends), the bridge."""
        return [*self._namespace_names(), *self._veth_names(), self.bridge]

    def _namespace_names(self) -> list[str]:
        return [f"{PREFIX}{self.tag}-{i}" for i in range(self.count)]

    def _veth_names(self) -> list[str]:
        return [f"{VETH_PREFIX}{self.tag}-{i}" for i in range(self.count)]

    def _record(self) -> dict[str, Any]:
        me = psutil.Process()
        return {"tag": self.tag, "pid": me.pid, "create_time": me.create_time(), "bridge": self.bridge,
                "subnet": str(self.subnet), "namespaces": self._namespace_names(), "veths": self._veth_names(),
                "iptables": self.iptables_rule, "created_at": time.time()}

    def _write_record(self) -> None:
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._record(), indent=1))
        tmp.replace(self.record_path)

    # -- create / close ----------------------------------------------------------------------------
    def create(self) -> None:
        require_tools()
        with _locked(self.state_dir):
            records = _records(self.state_dir)
            if self.tag in records:
                raise HarnessError(f"NetHosts: tag {self.tag!r} is in use ({self.record_path})",
                                   "pick another tag, or run harness.util.nethosts.leftovers() if its owner died")
            existing = set(_namespaces()) | set(_links())
            clash = [n for n in self.names() if n in existing]
            if clash:
                raise HarnessError(f"NetHosts: {', '.join(clash)} already exist(s) on this machine",
                                   "pick another tag, or run harness.util.nethosts.leftovers()")
            taken = used_networks()
            for rec in records.values():
                with contextlib.suppress(ValueError, TypeError):
                    taken.append(ipaddress.IPv4Network(str(rec.get("subnet"))))
            if self.requested_subnet is not None:
                if self.requested_subnet.prefixlen != 24:
                    raise HarnessError(f"NetHosts: subnet {self.requested_subnet} must be a /24")
                overlap = [str(n) for n in taken if n.overlaps(self.requested_subnet)]
                if overlap:
                    raise HarnessError(f"NetHosts: {self.requested_subnet} is in use on this machine "
                                       f"(overlaps {', '.join(sorted(set(overlap)))})",
                                       "pass another subnet= or none (a free 10.213.<n>.0/24 is picked)")
                self.subnet = self.requested_subnet
            else:
                self.subnet = _pick_subnet(taken)
            if _bridged_ipv4_filtered() and shutil.which("iptables"):
                self.iptables_rule = _rule(self.bridge, self.tag)
            self._write_record()          # before anything exists: a crash from here on is a leftover
            self._open = True
            try:
                self._build()
            except BaseException:
                self._teardown()          # the lock is held already (a second flock would wait for itself)
                raise

    def _build(self) -> None:
        assert self.subnet is not None
        prefix = self.subnet.prefixlen
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.bridge_address}/{prefix}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        if self.iptables_rule is not None:
            res = _iptables("-I", self.iptables_rule[0], "1", *self.iptables_rule[1:])
            if res.returncode != 0:
                raise HarnessError(f"NetHosts: iptables could not let {self.bridge} forward: {res.stderr.strip()}",
                                   "allow bridged traffic (sysctl net.bridge.bridge-nf-call-iptables=0) or fix "
                                   "iptables")
        for i, (ns, veth) in enumerate(zip(self._namespace_names(), self._veth_names(), strict=True)):
            address = str(self.subnet.network_address + HOST_OFFSET + i)
            peer = f"{PEER_PREFIX}{self.tag}-{i}"
            _ip("netns", "add", ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", ns)
            _ip("link", "set", veth, "master", self.bridge)
            _ip("link", "set", veth, "up")
            _ip("-n", ns, "link", "set", peer, "name", HOST_IFACE)
            _ip("-n", ns, "addr", "add", f"{address}/{prefix}", "dev", HOST_IFACE)
            _ip("-n", ns, "link", "set", HOST_IFACE, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "default", "via", self.bridge_address)
            self.hosts.append(NetHost(name=ns, index=i, address=address, veth=veth))

    def close(self) -> None:
        """Remove everything this use created (processes inside the namespaces are ended first). Idempotent."""
        if not self._open:
            return
        with _locked(self.state_dir):
            self._teardown()

    def _teardown(self) -> None:
        _remove(self._record())
        with contextlib.suppress(FileNotFoundError):
            self.record_path.unlink()
        self.hosts = []
        self._open = False


def leftovers(state_dir: Path = STATE_DIR) -> list[str]:
    """Remove what crashed runs left: every record whose owner process is gone (its namespaces, veths, bridge,
    iptables rule, the record), then any name with this module's prefixes, and any of its iptables rules, that
    no live record claims. Returns the names removed."""
    require_tools()
    removed: list[str] = []
    with _locked(state_dir):
        live: dict[str, dict[str, Any]] = {}
        for tag, record in _records(state_dir).items():
            if _owner_alive(record):
                live[tag] = record
                continue
            removed += _remove(record)
            with contextlib.suppress(FileNotFoundError):
                (state_dir / f"{tag}.json").unlink()
        claimed: set[str] = set()
        for record in live.values():
            claimed.update(record.get("namespaces", []))
            claimed.update(record.get("veths", []))
            claimed.add(str(record.get("bridge")))
        for ns in _namespaces():
            if ns.startswith(PREFIX) and ns not in claimed:
                _kill_inside(ns)
                _ip("netns", "del", ns, check=False)
                removed.append(ns)
        for link in _links():
            name = link.split("@", 1)[0]
            if name.startswith((VETH_PREFIX, BRIDGE_PREFIX, PEER_PREFIX)) and name not in claimed:
                _ip("link", "del", name, check=False)
                removed.append(name)
        if shutil.which("iptables"):
            for line in _iptables("-S", "FORWARD").stdout.splitlines():
                match = re.search(re.escape(RULE_COMMENT) + r"([a-z0-9]+)", line)
                if match and match.group(1) not in live and line.startswith("-A "):
                    args = shlex.split(line[3:])
                    if _iptables("-D", *args).returncode == 0:
                        removed.append(f"iptables {RULE_COMMENT}{match.group(1)}")
    return removed
