"""The external backend: an existing deployment (a target file), driven but never started, changed or stopped.

`up()` starts nothing: it checks the target (harness/stack/external/probe.py), sets the harness's own mock
upstream to the scenario's stream shape and faults (the mock is the harness's, deployed next to the proxies;
`down()` resets it to its start configuration) and returns the target's endpoints, marked `read_only`: the
sampler only reads Redis (SCAN / GET / PTTL) and Postgres (SELECT), end users are created through the proxy's
API with the run's own id prefix, nothing is flushed. The only processes it owns are the ones a run starts
next to it (Locust, tracked) — `down()` stops those and leaves the deployment alone.

State: `.state/<name>/external.json` (the target file's path, the endpoints without secrets, tracked
processes), so `harness status` / `harness down --all` see a crashed run's Locust.

Capabilities are those the target names: replica kills through its `kill_replica` command, Redis faults
through its Toxiproxy. `with_target()` returns a stack whose class has exactly those (the run refuses a fault
window the target cannot do before any load, like every backend).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
from rich.console import Console

from harness.errors import HarnessError, StackError
from harness.stack.base import Endpoints, StackFacts, StackSpec, master_key_file, state_dir_of
from harness.stack.external.probe import Probe, postgres_options, probe, redis_options
from harness.stack.external.target import KILL_INDEX, Load, Target, is_loopback, load_target
from harness.util.netutil import is_own_address
from harness.util.procs import ProcessGroup

STATE_FILE = "external.json"
PRICE_FIELDS = ("input_cost_per_token", "output_cost_per_token")


class ExternalStack:
    """A deployment named by a target file. Without a target (state of a crashed run): only status/down."""

    backend = "external"

    def __init__(self, name: str, target: Target | None = None) -> None:
        self.name = name
        self.state_dir = state_dir_of(name)
        self._group = ProcessGroup(self.state_dir, STATE_FILE)
        self._endpoints: Endpoints | None = None
        self.probe: Probe | None = None
        self.target = target
        if self.target is None and self._group.extra.get("target"):
            try:
                self.target = load_target(self._group.extra["target"])
            except HarnessError:
                self.target = None      # the file moved: status and down still work

    # -- core ---------------------------------------------------------------------------------------
    def preflight(self, spec: StackSpec) -> None:
        """Refuse (HarnessError) a target that is not all reachable, runs another LiteLLM version than the
        scenario, or prices the scenario's model differently. Reads only."""
        target = self._need_target()
        if spec.counters != "redis":
            raise HarnessError(f"counters: {spec.counters}: the external backend runs what the target runs and reads "
                               "its counters from Redis", "use the local backend for counters: memory")
        if spec.candidate is not None and spec.candidate.kind != "pypi":
            raise HarnessError("the external backend runs what the target runs: a candidate build cannot be "
                               "installed there", "deploy the candidate, then run with --litellm <its version>")
        found = self.probe = probe(target)
        if found.failures:
            first = found.failures[0]
            raise HarnessError(f"target {target.name}: {first.what}: {first.detail}",
                               f"fix the deployment or the target file (`harness target check {target.source}`)")
        if found.version != spec.version:
            raise HarnessError(f"target {target.name} runs LiteLLM {found.version}, the scenario asks for "
                               f"{spec.version}", f"pass --litellm {found.version} (the external backend runs what "
                                                  "is deployed)")
        self._check_pricing(spec, found)

    def _check_pricing(self, spec: StackSpec, found: Probe) -> None:
        prices = found.pricing.get(spec.model)
        if prices is None:
            raise HarnessError(f"target {self._need_target().name} serves no model named {spec.model!r} "
                               f"(it serves: {', '.join(found.pricing) or 'none'})",
                               "deploy the scenario's model or use a scenario whose `model` the target serves")
        want = {"input_cost_per_token": spec.input_cost_per_token, "output_cost_per_token": spec.output_cost_per_token}
        wrong = [f"{k} {prices.get(k)} (scenario: {v})" for k, v in want.items()
                 if prices.get(k) is None or abs(float(prices[k]) - v) > 1e-12 * max(1.0, abs(v))]
        if wrong:
            raise HarnessError(f"target prices {spec.model} differently from the scenario: {'; '.join(wrong)} — "
                               "true spend and reservations would not match the ledger",
                               "bring a stack up with `harness up --scenario <file>` or deploy these prices")

    def up(self, spec: StackSpec, console: Console | None = None) -> Endpoints:
        target = self._need_target()
        if self.probe is None:
            self.preflight(spec)
        assert self.probe is not None
        from harness.mockllm import MockControl

        mock = MockControl(target.mock.url)
        try:
            mock.reset()
            if spec.mock_config:
                mock.set_faults({k: v for k, v in spec.mock_config.items() if k in ("stream", "faults")})
        except (httpx.HTTPError, ValueError) as exc:
            raise StackError(f"the target's mock at {target.mock.url} refused the scenario's configuration: {exc}",
                             "deploy the harness's own mock (python -m harness.mockllm)") from None
        self._endpoints = Endpoints(
            proxy_urls=target.proxy.load_urls, redis_url=target.redis.url, redis_direct_url=target.redis.url,
            postgres_dsn=target.postgres.dsn, mock_url=target.mock.url.rstrip("/"), master_key=target.master_key(),
            version=self.probe.version or spec.version, backend=self.backend,
            redis_fault_url=target.capabilities.toxiproxy_url, redis_namespace=target.redis.namespace,
            build=self.probe.version or spec.version, read_only=True,
            redis_options=redis_options(target), postgres_options=postgres_options(target))
        self._group.extra = {"target": str(target.source or ""), "endpoints": self._endpoints.public(),
                             "redis_version": self.probe.redis_version,
                             "postgres_version": self.probe.postgres_version, "t_up": time.time()}
        self._group.save()
        if console is not None:
            console.print(f"external target '{target.name}': LiteLLM {self.probe.version}, "
                          f"{len(target.proxy.load_urls)} proxy URL(s); nothing started, nothing will be stopped",
                          highlight=False)
        return self._endpoints

    def down(self) -> int:
        """Stop what the run started next to the target (Locust) and reset the target's mock; never the
        deployment itself."""
        running = [n for n in self._group.records if self._group.alive(n)]
        self._group.stop_all()
        leftovers = self._group.leftovers()
        if self.target is not None and self._group.extra:
            from harness.mockllm import MockControl

            try:
                MockControl(self.target.mock.url).reset()
            except (httpx.HTTPError, ValueError):
                pass        # the deployment's mock went away: nothing of ours to undo there
        master_key_file(self.name).unlink(missing_ok=True)
        self._endpoints = None
        self._group.extra = {}
        self._group.save()
        if leftovers:
            raise StackError(f"stack '{self.name}': still running after SIGKILL: {', '.join(leftovers)}",
                             f"see `harness status --name {self.name}` and kill them by hand")
        return len(running)

    def is_running(self) -> bool:
        return bool(self._group.extra) or any(self._group.alive(n) for n in self._group.records)

    def endpoints(self) -> Endpoints | None:
        return self._endpoints

    def facts(self) -> StackFacts:
        extra = self._group.extra
        return StackFacts(redis_version=extra.get("redis_version"), postgres_version=extra.get("postgres_version"),
                          processes=self._processes())

    def _processes(self) -> list[dict[str, Any]]:
        """The deployment's processes this machine can see (a loopback target: whoever listens on its ports),
        so the CPU and contention meters count them as the run's own; plus the tracked ones."""
        out: list[dict[str, Any]] = []
        if self.target is not None:
            out += _listeners(self.target)
        for rec in self._group.records.values():
            out.append({"name": rec.name, "pid": rec.pid, "port": None, "alive": self._group.alive(rec.name)})
        return out

    def track(self, name: str, pid: int) -> None:
        self._group.adopt(name, pid)

    def forget(self) -> None:
        if not self._group.records and not self._group.extra and self.state_dir.exists():
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def status(self) -> str:
        where = self._group.extra.get("target") or "(target file unknown)"
        lines = [f"stack '{self.name}' (external, target {where}): "
                 + ("in use by a run" if self._group.extra else "idle")]
        for rec in self._group.records.values():
            lines.append(f"  {rec.name:<12} pid {rec.pid:<8} {'up' if self._group.alive(rec.name) else 'DEAD'}")
        return "\n".join(lines)

    # -- helpers ------------------------------------------------------------------------------------
    def _need_target(self) -> Target:
        if self.target is None:
            raise HarnessError("--backend external needs a target file", "pass --target target.yaml")
        return self.target


class ExternalReplicaControl:
    """Replica kills through the target's `kill_replica` command; the deployment brings the replica back
    (Kubernetes recreates the pod), and `restart_replica` waits for it to answer again."""

    target: Target

    def kill_replica(self, index: int) -> None:
        caps = self.target.capabilities
        assert caps.kill_replica is not None
        cmd = [part.replace(KILL_INDEX, str(index)) for part in caps.kill_replica]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=caps.kill_timeout_s, check=False)  # noqa: S603
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StackError(f"kill_replica {index}: `{' '.join(cmd)}` failed: {exc}", "check the command") from None
        if proc.returncode != 0:
            raise StackError(f"kill_replica {index}: `{' '.join(cmd)}` exited {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace').strip()[:200]}", "check the command")

    def restart_replica(self, index: int) -> float:
        urls = self.target.proxy.replicas or [self.target.proxy.url]
        url = urls[index % len(urls)].rstrip("/") + "/health/liveliness"
        t0 = time.monotonic()
        deadline = t0 + self.target.capabilities.kill_timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise StackError(f"replica {index} did not answer {url} within {self.target.capabilities.kill_timeout_s} s "
                         "after the kill", "check the deployment (does it recreate killed replicas?)")


class ExternalRedisFaults:
    """Redis faults through the target's Toxiproxy (the proxy named `toxiproxy_proxy`)."""

    target: Target

    def redis_fault(self, kind: str, **params: Any) -> None:
        from harness.stack.toxiproxy import ToxiproxyControl

        caps = self.target.capabilities
        assert caps.toxiproxy_url is not None
        with httpx.Client(timeout=10) as http:
            ToxiproxyControl(http, caps.toxiproxy_url.rstrip("/"), proxy=caps.toxiproxy_proxy).set_fault(kind,
                                                                                                       **params)


class ExternalLoadHosts:
    """Locust's master and workers on the hosts the target's `load:` names."""

    target: Target

    def load_hosts(self) -> Load:
        assert self.target.load is not None
        return self.target.load

    def load_key_source(self) -> tuple[str | None, str | None]:
        return self.target.master_key_path(), self.target.proxy.master_key_env


def with_target(name: str, target: Target) -> ExternalStack:
    """An external stack on `target` whose class has the capabilities the target names (and no others)."""
    mixins: list[type] = []
    if target.capabilities.kill_replica:
        mixins.append(ExternalReplicaControl)
    if target.capabilities.toxiproxy_url:
        mixins.append(ExternalRedisFaults)
    if target.load is not None:
        mixins.append(ExternalLoadHosts)
    if not mixins:
        return ExternalStack(name, target)
    cls = type("ExternalStack+" + "+".join(m.__name__ for m in mixins), (ExternalStack, *mixins), {})
    stack: ExternalStack = cls(name, target)
    return stack


def _listeners(target: Target) -> list[dict[str, Any]]:
    """Processes listening on the target's ports on this host (loopback or one of its own addresses): a target
    on this very machine (pid, name, port)."""
    ports: dict[int, str] = {}
    for what, url in target.urls().items():
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port and (is_loopback(host) or is_own_address(host)):
            ports[parts.port] = what.split(".")[0]
    if not ports:
        return []
    out: list[dict[str, Any]] = []
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return []
    seen: set[int] = set()
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in ports and conn.pid:
            if conn.pid in seen:
                continue
            seen.add(conn.pid)
            out.append({"name": f"target-{ports[conn.laddr.port]}-{conn.laddr.port}", "pid": conn.pid,
                        "port": conn.laddr.port, "alive": True})
    return out
