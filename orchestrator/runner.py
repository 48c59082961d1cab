"""The runner: the only place that knows the order of steps, and that always tears down.

    preflight -> lab network -> platforms (prepare) -> images -> per (platform, workload):
        cold-start cells:  N x [attach -> launch -> ready -> measure -> store -> stop -> release]
        load cells:        attach -> launch -> ready -> per point: warm-up + reps x [run -> store] -> stop

Every sample is committed as soon as it is measured, so an interrupted run keeps what it had;
a failure of a cell is a failed sample with its reason and the run goes on with the next cell.
"""

from __future__ import annotations

import logging
import secrets
import signal
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable, Protocol

from . import paths
from .paths import inside_home
from .bench.base import ClientSide, ColdStartBenchmark, LoadBenchmark, Measurement, Target
from .bench.nstat import TcpCounters
from .enums import NicKind, RunStatus, SampleStatus
from .errors import (ConfigError, HostError, Interrupted, LaunchError, NotRunnableError, ResourceBusyError,
                     TestbedError)
from .hosts.base import Host
from .images.cache import Image, ImageCache
from .interference import CpuSnapshot, cpu_snapshot, host_load, open_meta, overlapping_runs, refuse_overlap
from .ledger import Ledger
from .net.labhost import RemoteLabNet
from .net.labnet import Attachment, LabNet, LabNetwork
from .net.netns import NetnsExecutor
from .placement import Placement, host_named, lab_addresses, resolve
from .plan import Cell, Plan
from .platforms.base import Instance, Platform
from .preflight import make_platforms, preflight
from .provenance import RunFacts, controller_facts, host_facts, point_key, sample_provenance
from .readiness import POLL_INTERVAL, SocketFactory, plain_socket, wait_ready
from .results.store import Store, StoreError
from .timeline import Timeline
from .workloads.base import Workload

log = logging.getLogger(__name__)

# What a cell's launch can fail with, as a cell failure (recorded, the run goes on). HostError: the
# lab host the server is placed on stopped answering; the next cells try again and say so too.
CELL_ERRORS = (LaunchError, ResourceBusyError, NotRunnableError, HostError)


class Reporter(Protocol):
    """What the runner tells the user; the CLI renders it with rich, tests collect it."""

    def start(self, total: int, run_id: str) -> None: ...
    def phase(self, text: str) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def warn(self, text: str) -> None: ...
    def sample(self, row: dict) -> None: ...


class QuietReporter:
    """Tells nobody anything (tests, scripts)."""

    def start(self, total: int, run_id: str) -> None:
        pass

    def phase(self, text: str) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def warn(self, text: str) -> None:
        log.warning("%s", text)

    def sample(self, row: dict) -> None:
        pass


@dataclass
class RunOutcome:
    run_id: str
    status: RunStatus
    samples: int = 0
    failed_cells: list[str] = field(default_factory=list)
    not_runnable: list[str] = field(default_factory=list)
    reason: str | None = None


def new_run_id() -> str:
    return secrets.token_hex(4)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


class Runner:
    def __init__(self, plan: Plan, *, store: Store, reporter: Reporter | None = None,
                 server_host: Host | None = None, client_host: Host | None = None,
                 run_id: str | None = None, trust_new_host_key: bool = False,
                 resume: str | None = None, cache: ImageCache | None = None, allow_overlap: bool = False,
                 labnet_factory: Callable[[str, str, Ledger], LabNet] | None = None):
        self.plan = plan
        self.allow_overlap = allow_overlap
        self.store = store
        self.reporter: Reporter = reporter or QuietReporter()
        self.resume = resume
        self.run_id = resume or run_id or new_run_id()
        pm = plan.model.placement
        self.server_host = server_host or host_named(pm.server_host, plan.model.lab.lab_file, plan.path,
                                                     trust_new_host_key)
        self.client_host = client_host or host_named(pm.client_host, plan.model.lab.lab_file, plan.path,
                                                     trust_new_host_key)
        # Hosts the runner connected to itself are closed when run() ends; a caller's stay the caller's.
        self._own_hosts = [h for h, given in ((self.server_host, server_host), (self.client_host, client_host))
                           if given is None]
        self.workdir = inside_home(paths.runs_dir() / self.run_id)  # a --resume id is a name, never a path
        self.cache = cache or ImageCache()
        self.labnet_factory = labnet_factory or LabNet
        self.platforms: dict[str, Platform] = {}
        self.images: dict[tuple[str, str], Image] = {}
        self.samples = 0
        self.failed_cells: list[str] = []
        self.not_runnable: list[str] = []
        self.done: set[tuple] = set()  # committed (platform, workload, benchmark, point, repetition) when resuming
        self.overlaps: list[str] = []
        self._load_since: CpuSnapshot | None = None  # the server host's CPU counters when the trial began
        self._interference: dict | None = None

    @property
    def local_lab(self) -> bool:
        return self.server_host.is_local

    # --- the run ---------------------------------------------------------------------
    def run(self) -> RunOutcome:
        try:
            return self._run_matrix()
        finally:
            for host in self._own_hosts:
                getattr(host, "close", lambda: None)()  # SSH connections (reopened if used again)

    def _run_matrix(self) -> RunOutcome:
        plan = self.plan
        placement = resolve(plan.model.placement, self.server_host, self.client_host)
        self.placement = placement
        ledger = Ledger(self.run_id, info=open_meta(plan.name, self.server_host.name, placement.server_cpus,
                                                    self.client_host.name, placement.client_cpus))
        self.ledger = ledger
        status, reason = RunStatus.OK, None
        old = signal.signal(signal.SIGTERM, _interrupt)
        try:
            with ExitStack() as stack:
                stack.callback(ledger.close)
                stack.callback(self._safety_net, ledger)
                self._make_platforms(placement)
                checked = preflight(plan, placement, self.platforms, local_lab=self.local_lab)
                self.overlaps = self._check_overlap(placement)
                self.facts = self._facts(placement)
                self._begin()
                try:
                    self._run(stack, checked.not_runnable, checked.failed)
                except KeyboardInterrupt as exc:
                    status = RunStatus.INTERRUPTED
                    reason = f"interrupted by {exc.args[0] if exc.args else 'SIGINT'}"
                    raise Interrupted(f"run {self.run_id} {reason}; {self.samples} samples kept in "
                                      f"{self.store.path}") from None
                except TestbedError as exc:
                    status, reason = RunStatus.FAILED, str(exc)
                    raise
                except Exception as exc:  # a bug in testbed: the run says so, and the bug surfaces as a bug
                    status, reason = RunStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}"
                    raise
                finally:
                    if status == RunStatus.OK and self.failed_cells:
                        status, reason = RunStatus.FAILED, f"{len(self.failed_cells)} cell(s) failed: " + \
                            "; ".join(self.failed_cells)
                    self._end_run(status, reason)
        finally:
            signal.signal(signal.SIGTERM, old)
        return RunOutcome(self.run_id, status, self.samples, self.failed_cells, self.not_runnable, reason)

    def _end_run(self, status: RunStatus, reason: str | None) -> None:
        """Record how the run ended; a store that fails now (full disk) must not hide the first error."""
        try:
            self.store.end_run(self.run_id, status, reason)
        except StoreError as exc:
            if status == RunStatus.OK:
                raise
            log.error("could not record run %s as %s: %s", self.run_id, status, exc)

    def _begin(self) -> None:
        plan = self.plan
        if self.resume:
            self.store.reconcile_killed()
            info = self.store.run_info(self.resume)
            if info is None:
                raise ConfigError(f"--resume {self.resume}: no such run in {self.store.path}; see `testbed results --list`")
            if info["status"] == RunStatus.RUNNING:
                raise ResourceBusyError(f"--resume {self.resume}: that run is still running (its process is alive); "
                                        f"stop it first")
            if info["suite_hash"] != plan.digest:
                raise ConfigError(f"--resume {self.resume}: {plan.path} changed since that run (suite hash "
                                  f"{info['suite_hash'][:12]} -> {plan.digest[:12]}); start a new run")
            changed = resume_differences(info["provenance"], self.facts.as_run_provenance())
            if changed:
                raise ConfigError(f"--resume {self.resume}: the host's configuration changed since that run "
                                  f"({'; '.join(changed)}); start a new run")
            self.done = self.store.committed_repetitions(self.resume)
            self.store.note_resumed(self.resume, {"skipped_repetitions": len(self.done)})
        else:
            self.store.begin_run(self.run_id, plan.name, str(plan.path), plan.digest,
                                 self.facts.controller["testbed_rev"],
                                 {**self.facts.as_run_provenance(), **plan.run_provenance()})

    def my_cpus(self) -> list[int] | None:
        """The CPUs this run uses on its server host (None: unpinned, i.e. every CPU)."""
        p = self.placement
        if p.server_cpus is None or (p.same_host and p.client_cpus is None):
            return None
        return sorted(set(p.server_cpus) | (set(p.client_cpus or []) if p.same_host else set()))

    def _check_overlap(self, placement: Placement) -> list[str]:
        """Another live testbed run on the same host and CPUs halves both runs' numbers: refuse, or with
        --allow-overlap say so (every sample then records it and carries the `overlap` flag)."""
        overlaps = overlapping_runs(paths.ledger_dir(), self.my_cpus(), host=self.server_host.name,
                                    exclude_run=self.run_id)
        if overlaps and not self.allow_overlap:
            refuse_overlap(overlaps, self.server_host.name)
        for o in overlaps:
            self.reporter.warn(f"testbed run {o.run_id} (suite {o.suite or '?'}) is live on the same CPUs; "
                               f"--allow-overlap: measuring anyway, every sample says so")
        return [o.run_id for o in overlaps]

    def _facts(self, placement: Placement) -> RunFacts:
        server = host_facts(self.server_host)
        client = host_facts(self.client_host) if not placement.same_host else None
        facts = RunFacts(server, client, controller_facts(), self.plan.name, self.plan.digest,
                         placement=placement.as_dict(), readiness_poll_ms=POLL_INTERVAL * 1000)
        if self.resume:
            facts.extra["resumed"] = True
        if self.overlaps:
            facts.extra["allowed_overlap"] = self.overlaps
        return facts

    def _run(self, stack: ExitStack, not_runnable: dict[Cell, str], failed: dict[Cell, str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        skipped = {**not_runnable, **failed}
        if all(c in skipped for c in self.plan.cells):  # nothing to create: just say why, cell by cell
            self.facts.tools = {}
            for cell, why in not_runnable.items():
                self._not_runnable(cell, why)
            for cell, why in failed.items():
                self._fail_cell(cell, why)
            return
        net: LabNetwork
        executor: NetnsExecutor | None = None
        if self.local_lab:
            labnet = self.labnet_factory(self.run_id, self.plan.model.lab.subnet, self.ledger)
            stack.callback(labnet.destroy)
            labnet.create()
            net = labnet
            if labnet.client_ns:  # a lab network of namespaces (fakes for tests have none)
                executor = NetnsExecutor(labnet.client_ns)
                stack.callback(executor.close)
            self.client_netns: str | None = labnet.client_ns
        else:  # the server on a lab host: instances on its experiment link (net/labhost.py)
            remote = RemoteLabNet(self.server_host, self.run_id, self.plan.model.lab.subnet, self.ledger,
                                  reserved=lab_addresses(self.plan.model.lab.lab_file, self.plan.path))
            stack.callback(remote.destroy)
            remote.create()
            net = remote
            self.client_netns = None
        self.net = net
        self.make_socket: SocketFactory = (lambda: executor.call(plain_socket)) if executor else plain_socket
        self.connector = executor.connect if executor else None
        runnable = [c for c in self.plan.cells if c not in skipped]
        for name in dict.fromkeys(c.platform for c in runnable):
            self.reporter.phase(f"preparing {name}")
            self.platforms[name].prepare()
        for platform, workload in dict.fromkeys((c.platform, c.workload) for c in runnable):
            self.reporter.phase(f"image for {platform}/{workload}")
            image = self.platforms[platform].image(self.plan.workloads[workload], self.cache)
            if image.rebuilt_reason:
                self.reporter.warn(f"image for {platform}/{workload}: {image.rebuilt_reason}")
            if not image.cache_hit and image.build_seconds:
                self.reporter.phase(f"built {image.kind} image {image.name} in {image.build_seconds:.1f} s")
            self.images[(platform, workload)] = image
        self.facts.tools = self._tool_versions(runnable)
        self.reporter.start(sum(self.plan.trials(c) for c in self.plan.cells), self.run_id)
        for cell, why in not_runnable.items():
            self._not_runnable(cell, why)
        for cell, why in failed.items():
            self._fail_cell(cell, why)
        for (pname, wname), cells in self.plan.groups().items():
            cells = [c for c in cells if c not in skipped]
            if cells:
                self._run_group(self.platforms[pname], self.plan.workloads[wname], cells)

    def _make_platforms(self, placement: Placement) -> None:
        self.platforms = make_platforms(self.plan, placement, self.server_host, self.ledger, self.workdir)

    def _safety_net(self, ledger: Ledger) -> None:
        for p in self.platforms.values():
            p.close()
        leftovers = ledger.reclaim_live()
        if leftovers:
            log.warning("reclaimed after teardown: %s", ", ".join(leftovers))

    def _tool_versions(self, cells: list[Cell]) -> dict[str, str]:
        versions: dict[str, str] = {}
        for name in dict.fromkeys(c.platform for c in cells):
            versions.update(self.platforms[name].versions())
        for name in dict.fromkeys(c.workload for c in cells):
            for t in self.plan.workloads[name].tools:
                if t.version_argv:
                    from .tools import version_line

                    versions[t.name] = version_line(self.server_host, t.version_argv)
        for name in dict.fromkeys(c.benchmark for c in cells):
            versions.update(self.plan.benchmarks[name].versions(self.client_host))
        return versions

    # --- groups and trials -----------------------------------------------------------
    def _launch_ready(self, platform: Platform, workload: Workload) -> tuple[Instance, Attachment]:
        attachment = platform.attach(self.net)
        instance = None
        try:
            timeline = Timeline()
            instance = platform.launch(self.images[(platform.name, workload.name)], workload, attachment, timeline)
            wait_ready(instance, workload, self.make_socket, platform.options.ready_timeout)
            return instance, attachment
        except BaseException:
            try:
                if instance is not None:
                    instance.stop(fast=True)
            finally:
                self.net.release(attachment)
            raise

    def _teardown(self, instance: Instance, attachment: Attachment, *, fast: bool) -> None:
        try:
            instance.stop(fast=fast)
        finally:
            self.net.release(attachment)

    def _run_group(self, platform: Platform, workload: Workload, cells: list[Cell]) -> None:
        for cell in self.plan.cold(cells):
            bench = self.plan.benchmarks[cell.benchmark]
            assert isinstance(bench, ColdStartBenchmark)
            self._cold_starts(cell, platform, workload, bench)
        load = [c for c in self.plan.load(cells) if not self._cell_done(c)]
        if not load:
            return
        self.reporter.phase(f"{platform.name}/{workload.name}: launching for load benchmarks")
        try:
            instance, attachment = self._launch_ready(platform, workload)
        except CELL_ERRORS as exc:
            for cell in load:
                self._fail_cell(cell, str(exc))
            return
        try:
            for cell in load:
                bench = self.plan.benchmarks[cell.benchmark]
                assert isinstance(bench, LoadBenchmark)
                if not self._load(cell, platform, workload, instance, bench):
                    break  # the instance died: the group's other cells have nothing to measure
        finally:
            self._teardown(instance, attachment, fast=False)

    def _cell_done(self, cell: Cell) -> bool:
        """Resuming: every repetition of every point of the cell is committed."""
        if not self.done:
            return False
        bench = self.plan.benchmarks[cell.benchmark]
        return all((cell.platform, cell.workload, cell.benchmark, point_key(p), r) in self.done
                   for p in bench.points() for r in range(self.plan.repetitions(bench)))

    def _fail_cell(self, cell: Cell, reason: str, status: SampleStatus = SampleStatus.FAILED) -> None:
        if status == SampleStatus.FAILED:
            self.failed_cells.append(f"{cell}: {reason}")
            self.reporter.warn(f"{cell}: {reason}")
        m = Measurement("cell", None, "-", {}, status, reason)
        self._store(cell, None, m, {}, repetition=0)
        self.reporter.advance(self.plan.trials(cell))

    def _not_runnable(self, cell: Cell, reason: str) -> None:
        self.not_runnable.append(f"{cell}: {reason}")
        self._fail_cell(cell, reason, SampleStatus.NOT_RUNNABLE)

    def _cold_starts(self, cell: Cell, platform: Platform, workload: Workload, bench: ColdStartBenchmark) -> None:
        reps, warmup = self.plan.repetitions(bench), bench.options.warmup
        key = point_key({})
        for i in range(warmup + reps):
            rep = i - warmup
            if rep >= 0 and (cell.platform, cell.workload, cell.benchmark, key, rep) in self.done:
                self.reporter.advance()
                continue
            label = "warm-up" if rep < 0 else f"{rep + 1}/{reps}"
            self.reporter.phase(f"{platform.name}/{workload.name}: cold start {label}")
            self._trial_started()
            try:
                instance, attachment = self._launch_ready(platform, workload)
            except CELL_ERRORS as exc:
                if rep >= 0:
                    self._store(cell, None, Measurement.failed("startup_ms", "ms", str(exc)), {}, repetition=rep)
                self.failed_cells.append(f"{cell}: {exc}")
                self.reporter.warn(str(exc))
                self.reporter.advance(warmup + reps - i)
                return  # a platform that cannot start will not start on the next try either
            try:
                if rep >= 0:
                    for m in bench.measure(instance.timeline):
                        self._store(cell, instance, m, {}, repetition=rep)
            finally:
                self._teardown(instance, attachment, fast=True)
            self.reporter.advance()

    def _load(self, cell: Cell, platform: Platform, workload: Workload, instance: Instance,
              bench: LoadBenchmark) -> bool:
        """Every point and repetition of a load cell; False when the instance died under load."""

        def watch() -> str | None:
            return None if instance.alive() else f"instance died: {instance.exit_reason()}"

        client = ClientSide(self.client_host, self.client_netns, self.placement.client_cpus,
                            self.workdir / "client" / cell.platform, watch=watch,
                            **({"connector": self.connector} if self.connector else {}))
        target = Target(instance.address, workload.port, workload.kind)
        # nstat where a host kernel runs the TCP: the client's namespace, and the server's when its
        # stack is the host's (native, runc), or the lab host's own interface for a remote server.
        sides: dict[str, tuple[Host, str | None]] = {"client": (self.client_host, self.client_netns)}
        server_ns = platform.host_stack_netns(instance.attachment)
        if server_ns is not None or instance.attachment.nic == NicKind.HOST:
            sides["server"] = (self.server_host, server_ns)
        reps, warmup = self.plan.repetitions(bench), bench.options.warmup
        for point in bench.points():
            key = point_key(point)
            todo = [r for r in range(reps) if (cell.platform, cell.workload, cell.benchmark, key, r) not in self.done]
            if not todo:
                self.reporter.advance(warmup + reps)
                continue
            self.reporter.advance(reps - len(todo))
            for rep in [-1] * warmup + todo:
                label = "warm-up" if rep < 0 else f"{rep + 1}/{reps}"
                self.reporter.phase(f"{platform.name}/{workload.name}: {bench.name} {point or ''} {label}")
                died = watch()
                if died is None:
                    self._trial_started()
                    counters = TcpCounters(sides).start() if bench.uses_tcp(point) else None
                    measurements = bench.run(point, target, client)
                    if counters is not None and rep >= 0:
                        measurements += counters.measurements(point)
                    died = watch()  # a tool stopped because the instance died says so in its reason too
                if died is not None:
                    m = Measurement.failed("instance", "-", died, point)
                    self._store(cell, instance, m, point, repetition=max(rep, 0))
                    self.failed_cells.append(f"{cell}: {died}")
                    self.reporter.warn(f"{cell}: {died}")
                    return False
                if rep >= 0:
                    for m in measurements:
                        self._store(cell, instance, m, point, repetition=rep)
                self.reporter.advance()
        return True

    def _trial_started(self) -> None:
        self._interference = None
        try:
            self._load_since = cpu_snapshot(self.server_host)
        except HostError as exc:  # the lab host stopped answering: the trial's launch says so as well
            self._load_since, self._interference = None, {"unavailable": str(exc)}

    def _trial_interference(self) -> dict:
        """Host load over the current trial (once per trial, shared by its samples)."""
        if self._interference is None:
            try:
                self._interference = host_load(self.server_host, since=self._load_since, window=0.05,
                                               my_run=self.run_id, my_cpus=self.my_cpus())
            except HostError as exc:
                self._interference = {"unavailable": str(exc)}
        return self._interference

    def _store(self, cell: Cell, instance: Instance | None, m: Measurement, point: dict, *, repetition: int) -> None:
        platform = self.platforms[cell.platform]
        prov = sample_provenance(self.facts, platform, self.plan.workloads[cell.workload],
                                 self.plan.benchmarks[cell.benchmark], self.images.get((cell.platform, cell.workload)),
                                 instance, point)
        prov["interference"] = self._trial_interference()
        if m.raw:  # the tool's own output this value was parsed from, for checking it
            prov["raw_output"] = m.raw
        if "image_digest" not in prov:  # a cell that never reached its image still says what it is
            prov["image_digest"] = "none"
        self.store.add_sample(self.run_id, platform=cell.platform, workload=cell.workload, benchmark=cell.benchmark,
                              metric=m.metric, value=m.value, unit=m.unit, repetition=repetition, params=m.params,
                              status=m.status, reason=m.reason, provenance=prov)
        self.samples += 1
        self.reporter.sample({"platform": cell.platform, "metric": m.metric, "value": m.value, "status": m.status})


def resume_differences(before: dict, now: dict) -> list[str]:
    """What differs between two runs' host configuration (the facts a resumed run must share)."""
    keys = ("cpu_model", "cores", "memory_mb", "kernel", "os", "hostname")
    out = []
    for side in ("server", "client"):
        a, b = before.get(side) or {}, now.get(side) or {}
        for k in keys:
            if a.get(k) != b.get(k):
                out.append(f"{side}.{k}: {a.get(k)} -> {b.get(k)}")
    return out

