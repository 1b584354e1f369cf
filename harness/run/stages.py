"""The stages of one experiment, each a start/stop pair over the run context (Jepsen's `run!` resources).

The runner (harness/run/experiment.py) starts the stages in list order once the stack is up, waits while any
stage is `busy` (the load, until Locust exits), then stops them in REVERSE order on every exit path: normal
end, Ctrl-C/SIGTERM, an error. A stage is stopped once its start was called, even when the start raised, so
`stop` must undo a partial start and be harmless after none. Stages talk to the rest only through the context,
meta.json and the run folder's files.

The default order and why: budgets (end users must exist before the first request), sampler (samples from
before the first request), probe (the in-process counter probe, when the scenario has one: its stop — a last
round and every key's budget restored — comes after the drain, before the sampler's last sample), ledger (its
stop fetches the mock's ledger over HTTP when the mock does not write into the run folder: after the drain, before
the sampler's last sample), drain (its stop — the wait after the load, sampling on — must come after the load's
and the nemesis's stops and before the sampler's), CPU meter
(measures the load and the end of the fault windows), nemesis (windows are timed from the load start), load (Locust).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from harness.errors import HarnessError, Interrupted
from harness.run.progress import PlainProgress, progress_line
from harness.run.runfolder import LEDGER_FILE, MOCK_EVENTS_FILE
from harness.stack.base import LoadHosts, LoadRunner, Stack, master_key_file, write_master_key_file

if TYPE_CHECKING:
    from harness.load.launch import LiveStats
    from harness.nemesis.schedule import Nemesis
    from harness.run.contention import ContentionMeter
    from harness.run.context import RunContext
    from harness.run.cpu import CpuMeter
    from harness.run.probe import CounterProbe
    from harness.run.sampler import Sampler
    from harness.stack.base import LoadHandle


class Stage:
    """One start/stop pair. `busy` holds the run open; `progress` feeds the live table."""

    name = "stage"

    def start(self, ctx: RunContext) -> None:
        """Begin; may raise (HarnessError for a problem the user can fix). `stop` still follows."""

    def busy(self, ctx: RunContext) -> bool:
        """True while this stage keeps the run going (polled every 0.5 s after every stage started)."""
        return False

    def progress(self) -> dict[str, Any]:
        """Figures for the live table (keys: harness.run.progress.FIELDS)."""
        return {}

    def stop(self, ctx: RunContext) -> None:
        """End what start began (also after a partial or failed start); record results in ctx.meta."""


class BudgetsStage(Stage):
    """End users and their budgets, then the run's teams and virtual keys with theirs (meta.json `entities`:
    hashed tokens, never key values), before the first request (harness/run/budgets.py)."""

    name = "budgets"

    def start(self, ctx: RunContext) -> None:
        from harness.run.budgets import create_end_users, create_teams_and_keys

        ctx.meta.update(end_users_created=create_end_users(ctx.scenario, ctx.endpoints))
        entities = create_teams_and_keys(ctx.scenario, ctx.endpoints, ctx.run_id)
        if entities is not None:
            ctx.meta.update(entities=entities)


def run_user_prefix(ctx: RunContext) -> str:
    """On a deployment the harness shares (read_only endpoints: the external backend) every end user of the run
    carries the run's own prefix (harness.run.experiment.scope_end_users), and only those are sampled and read
    back; on a stack of its own, all."""
    if not ctx.endpoints.read_only:
        return ""
    return os.path.commonprefix([ctx.scenario.end_users.prefix, *ctx.scenario.budget.per_user])


class LedgerStage(Stage):
    """After the drain: when the mock did not write its ledger into the run folder (a deployment the harness
    did not start, or a reused stack), download this run's rows — and the mock's events — over HTTP
    (`GET /control/ledger`, harness/mockllm/README.md): the ground truth must be in the run folder."""

    name = "ledger"

    def stop(self, ctx: RunContext) -> None:
        from harness.mockllm import MockControl

        if ctx.t_load_start is None or (ctx.run_dir / LEDGER_FILE).exists():
            return
        since = float(ctx.meta.data.get("t_created") or ctx.t_load_start)
        control = MockControl(ctx.endpoints.mock_url)
        try:
            rows = control.download("ledger", ctx.run_dir / LEDGER_FILE, since=since,
                                    end_user_prefix=run_user_prefix(ctx) or None)
            events = control.download("events", ctx.run_dir / MOCK_EVENTS_FILE, since=since)
        except (httpx.HTTPError, ValueError, OSError) as exc:
            raise HarnessError(f"the mock's ledger could not be read from {ctx.endpoints.mock_url}: {exc}",
                               "the run has no ground truth; check the mock") from None
        ctx.meta.update(ledger_source={"url": ctx.endpoints.mock_url, "rows": rows, "events": events,
                                       "since": since})


def sampled_entities(entities: dict[str, Any] | None) -> dict[str, list[str]] | None:
    """The counters.csv filter for the run's own keys and teams (meta.json `entities`); None: the run has none."""
    if not entities:
        return None
    keys = [str(k["token"]) for k in entities.get("keys", []) if k.get("token")]
    teams = [str(t["team_id"]) for t in entities.get("teams", [])]
    return {"key": keys, "team": teams} if keys or teams else None


class SamplerStage(Stage):
    """samples.csv (and counters.csv: the other counter kinds, the run's own keys/teams when it has them) every
    `sampling.interval_s` from before the load to after the drain, plus one last sample;
    then (when a load started) LiteLLM's spend logs into spend-logs.csv (meta.json `spend_logs`)."""

    name = "sampler"

    def __init__(self) -> None:
        self.sampler: Sampler | None = None

    def start(self, ctx: RunContext) -> None:
        from harness.run.sampler import Sampler

        ep = ctx.endpoints
        self.sampler = Sampler(ep.redis_direct_url, ep.postgres_dsn, ctx.run_dir, ctx.scenario.sampling.interval_s,
                               namespace=ep.redis_namespace, user_prefix=run_user_prefix(ctx),
                               redis_options=ep.redis_options, postgres_options=ep.postgres_options,
                               entities=sampled_entities(ctx.meta.data.get("entities")),
                               shared=ep.read_only, in_memory=ep.counters == "memory")
        self.sampler.start()

    def progress(self) -> dict[str, Any]:
        return {} if self.sampler is None else {"max_counter_minus_db": self.sampler.max_counter_minus_db}

    def stop(self, ctx: RunContext) -> None:
        if self.sampler is None:
            return
        sampler, self.sampler = self.sampler, None
        sampler.sample_once()       # the drain check reads the last sample after the drain
        sampler.stop()
        ctx.meta.update(sampler={"samples": sampler.samples, "errors": sampler.errors,
                                 "counters": "memory (not read: see probes.csv)" if sampler.in_memory else "redis",
                                 "last_error": sampler.last_error, "other_truncated": sampler.other_truncated,
                                 "counter_kinds_rows": sampler.last_kind_rows,
                                 "last_duration_ms": round((sampler.last_duration_s or 0) * 1000, 1)})
        if ctx.t_load_start is not None:    # after the drain: LiteLLM's per-request bill (harness/run/spendlogs.py)
            from harness.run.spendlogs import dump_spend_logs

            ctx.meta.update(spend_logs=dump_spend_logs(ctx.endpoints.postgres_dsn, ctx.run_dir,
                                                       end_user_prefix=run_user_prefix(ctx),
                                                       postgres_options=ctx.endpoints.postgres_options))


class ProbeStage(Stage):
    """The in-process counter probe (scenario `probe`, harness/run/probe.py): every `probe.every_s` from before
    the load to after the drain (one more round then), each of the run's budgeted keys through every replica,
    into probes.csv; every probed key's budget is restored (and checked in the DB) when it stops. meta.json
    `probe`."""

    name = "probe"

    def __init__(self) -> None:
        self.probe: CounterProbe | None = None

    def start(self, ctx: RunContext) -> None:
        from harness.load import keys as keys_mod
        from harness.run.probe import CounterProbe, ProbeKey, db_reader

        cfg = ctx.scenario.probe
        entities = ctx.meta.data.get("entities") or {}
        if cfg is None or "keys" not in cfg.entities or not entities.get("keys"):
            return
        ep = ctx.endpoints
        keys = [ProbeKey(name=str(k["alias"]), token=str(k["token"]),
                         value=keys_mod.virtual_key(ep.master_key, str(entities["salt"]), int(k["index"])),
                         max_budget=float(k["max_budget"]))
                for k in entities["keys"] if k.get("token") and k.get("max_budget") is not None]
        if not keys:
            return
        self.probe = CounterProbe(ep.proxy_urls, ep.master_key, keys, ctx.run_dir, model=ctx.scenario.model,
                                  every_s=cfg.every_s, timeout_s=cfg.timeout_s,
                                  db=db_reader(ep.postgres_dsn, ep.postgres_options))
        ctx.meta.update(probe={"every_s": cfg.every_s, "keys": len(keys), "replicas": len(ep.proxy_urls),
                               "counters": ep.counters})
        self.probe.start()

    def stop(self, ctx: RunContext) -> None:
        if self.probe is None:
            return
        probe, self.probe = self.probe, None
        try:
            probe.stop(last_round=ctx.t_load_start is not None)
        finally:
            ctx.meta.update(probe={**(ctx.meta.data.get("probe") or {}), **probe.status()})
            if probe.restore_failures:
                ctx.say(f"[red]probe: the budget of {', '.join(probe.restore_failures)} could not be restored[/]")


class DrainStage(Stage):
    """After the load: keep sampling for `drain_s` (past the DB batch-write interval, under the 60 s counter
    TTL) so the final reconciliation has data. Only when a load ran and the run did not fail; a second Ctrl-C
    cuts it short."""

    name = "drain"

    def stop(self, ctx: RunContext) -> None:
        if ctx.t_load_end is None or ctx.outcome == "failed":
            return
        ctx.meta.update(status="drain")
        ctx.say(f"draining for {ctx.scenario.drain_s:.0f} s (sampling continues) …")
        drain_end = ctx.t_load_end + ctx.scenario.drain_s
        t_load_end = ctx.t_load_end
        # in a log (CI), a line every few seconds so a long drain does not look like a hang
        plain = None if ctx.console.is_terminal else PlainProgress(ctx.console, ctx.clock, quiet_first=True)
        try:
            while (left := drain_end - ctx.clock.time()) > 0:
                if plain is not None:
                    plain.tick(lambda: progress_line(ctx.scenario, "drain", ctx.clock.time() - t_load_end,
                                                     ctx.scenario.drain_s))
                ctx.clock.sleep(min(0.5, left))
        except (KeyboardInterrupt, Interrupted):
            ctx.outcome = "interrupted"
            ctx.say("interrupted again: drain cut short")
        ctx.meta.update(t_drain_end=ctx.clock.time())


class CpuStage(Stage):
    """CPU seconds of each stack process, Locust and the harness while the load (and the fault ends) ran, and
    how contended the machine was meanwhile (harness/run/contention.py: load average, CPU taken by processes
    outside this run, other harness stacks): meta.json `cpu_during_load` and `contention`."""

    name = "cpu"

    def __init__(self) -> None:
        self.meter: CpuMeter | None = None
        self.contention: ContentionMeter | None = None

    def start(self, ctx: RunContext) -> None:
        from harness.run.contention import ContentionMeter
        from harness.run.cpu import CpuMeter

        # processes and containers with a host pid (compose: each container's first process) are measured
        pids = {str(p["name"]): int(p["pid"]) for p in ctx.stack.facts().processes
                if isinstance(p.get("pid"), int)}
        self.meter = CpuMeter(pids)
        self.meter.start()
        self.contention = ContentionMeter(roots=set(pids.values()),
                                          own_ledger=str(ctx.run_dir / LEDGER_FILE))
        self.contention.start()

    def stop(self, ctx: RunContext) -> None:
        if self.meter is not None:
            cpu = self.meter.stop()
            ctx.meta.update(cpu_during_load=cpu)
            self.meter = None
            if self.contention is not None:
                ctx.meta.update(contention=self.contention.stop(cpu.get("cpus")))
                self.contention = None


class NemesisStage(Stage):
    """The scenario's fault windows, timed from the load start (harness/nemesis/schedule.py).

    Its errors (a fault that could not be done or undone) go to meta.json as `nemesis_errors` once it stopped:
    the analyzer must know a fault did not happen as planned. Stopping ends open windows (a killed replica is
    restarted and waited for), which is part of the drain: it stays under the counter TTL.
    """

    name = "nemesis"

    def __init__(self) -> None:
        self.nemesis: Nemesis | None = None

    def start(self, ctx: RunContext) -> None:
        from harness.nemesis.schedule import Nemesis

        self.nemesis = Nemesis(ctx.scenario.faults, ctx.stack, ctx.endpoints, ctx.run_dir, clock=ctx.clock.time)
        self.nemesis.start(ctx.load_started())

    def stop(self, ctx: RunContext) -> None:
        if self.nemesis is None:
            return
        nemesis, self.nemesis = self.nemesis, None
        nemesis.stop()
        ctx.meta.update(nemesis_errors=list(nemesis.errors))


LOAD_WHERE_VAR = "HARNESS_LOAD_IN"
LOAD_WHERE = ("auto", "host", "stack")


def load_where(where: str, stack: Stack) -> str:
    """Where the load runs, "host" or "stack": $HARNESS_LOAD_IN, else the scenario's `load.where`; `auto` is the
    stack's own when it has the LoadRunner capability (compose), else the host. HarnessError (exit 2, before
    anything starts) for an unknown value or `stack` on a backend that cannot run the load."""
    from_env = os.environ.get(LOAD_WHERE_VAR, "").strip().lower()
    value = from_env or where
    source = f"${LOAD_WHERE_VAR}" if from_env else "load.where"
    if value not in LOAD_WHERE:
        raise HarnessError(f"{source}={value!r} is not understood", f"use one of: {', '.join(LOAD_WHERE)}")
    can = isinstance(stack, LoadRunner)
    if value == "stack" and not can:
        raise HarnessError(f"{source}=stack, but the {stack.backend} backend cannot run the load itself",
                           "use host (or auto)")
    if value == "auto":
        return "stack" if can else "host"
    return value


class LoadStage(Stage):
    """Locust against the proxies (harness/load): on the host, tracked by the stack so `harness down` stops it
    too, or inside the stack (its LoadRunner capability: Compose services, removed by its `down`), as
    `load_where` decides; meta.json records which (`load_where`).

    Host: the master key reaches Locust in a 0600 file in the stack's own state folder (never the system temp
    folder); this stage deletes it when Locust has stopped, and every backend's `down()` deletes it too, so a
    SIGKILLed harness leaves it at most until `harness down`. Stack: the stack supplies the key to its own
    Locust (Compose: the environment), nothing is written.
    """

    name = "load"

    def __init__(self) -> None:
        self.handle: LoadHandle | None = None
        self.live: LiveStats | None = None

    def start(self, ctx: RunContext) -> None:
        from harness.load.config import LoadConfig
        from harness.load.launch import LiveStats, run_locust

        where = "hosts" if isinstance(ctx.stack, LoadHosts) else load_where(ctx.scenario.load.where, ctx.stack)
        ctx.meta.update(load_where=where, load_processes=ctx.processes)
        self.live = LiveStats(ctx.run_dir)
        salt = str((ctx.meta.data.get("entities") or {}).get("salt") or "")   # the run's virtual keys
        if isinstance(ctx.stack, LoadHosts):
            from harness.load.distributed import run_locust_distributed

            key_path, key_env = ctx.stack.load_key_source()
            config = LoadConfig.from_scenario(ctx.scenario, ctx.endpoints, ctx.run_dir,
                                              master_key_file=Path(key_path) if key_path else None, key_salt=salt)
            config.master_key_env = key_env
            hosts = ctx.stack.load_hosts()
            ctx.meta.update(load_hosts={"master_host": hosts.master_host, "workers": hosts.worker_count,
                                        "worker_hosts": len(hosts.workers)})
            ctx.say(f"load: Locust master on {hosts.master_host}, {hosts.worker_count} worker(s) on "
                    f"{len(hosts.workers)} host(s)")
            ctx.load_started()
            distributed = run_locust_distributed(config, ctx.run_dir, hosts)
            self.handle = distributed
            for name, pid in distributed.tracked().items():
                ctx.stack.track(name, pid)
            return
        if where == "stack":
            assert isinstance(ctx.stack, LoadRunner)
            config = LoadConfig.from_scenario(ctx.scenario, ctx.endpoints, ctx.run_dir, key_salt=salt)
            ctx.say(f"load: Locust inside the {ctx.stack.backend} stack (master + {ctx.processes} worker(s); "
                    f"{LOAD_WHERE_VAR}=host runs it on this machine)")
            ctx.load_started()
            self.handle = ctx.stack.start_load(config, ctx.run_dir, ctx.processes)
        else:
            key_file = write_master_key_file(ctx.stack.name, ctx.endpoints.master_key)
            config = LoadConfig.from_scenario(ctx.scenario, ctx.endpoints, ctx.run_dir, master_key_file=key_file,
                                              key_salt=salt)
            ctx.load_started()
            self.handle = run_locust(config, ctx.run_dir, processes=ctx.processes)
        if self.handle.pid is not None:
            ctx.stack.track(self.handle.name, self.handle.pid)

    def busy(self, ctx: RunContext) -> bool:
        return self.handle is not None and self.handle.poll() is None

    def progress(self) -> dict[str, Any]:
        return {} if self.live is None else dict(self.live.poll())

    def stop(self, ctx: RunContext) -> None:
        try:
            if self.handle is not None:
                if self.handle.poll() is None:
                    ctx.say("stopping the load (in-flight requests may finish) …")
                exit_code = self.handle.stop()
                ctx.t_load_end = ctx.clock.time()
                ctx.meta.update(t_load_end=ctx.t_load_end, load_exit_code=exit_code,
                                requests_seen=self.live.poll() if self.live else None)
        finally:
            master_key_file(ctx.stack.name).unlink(missing_ok=True)


def default_stages() -> list[Stage]:
    return [BudgetsStage(), SamplerStage(), ProbeStage(), LedgerStage(), DrainStage(), CpuStage(), NemesisStage(),
            LoadStage()]

