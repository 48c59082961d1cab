"""The runner: expands a suite into trials, runs them, writes samples, always tears down.

It is the only place that knows the order of steps:
    Image.ensure -> LabNet.attach -> Platform.launch -> wait_ready -> Benchmark.run -> Samples -> Store
Every sample is committed as soon as it is measured, so an interrupted run keeps what it had.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import paths
from .bench.base import ClientSide, Measurement, Target
from .bench.startup import Startup
from .config.suite import Cell, Suite
from .errors import (ConfigError, Interrupted, LaunchError, MissingToolError, NotReadyError, ResourceBusyError,
                     TestbedError)
from .hosts.base import Host
from .hosts.local import LocalHost
from .images.cache import Image, ImageCache
from .ledger import Ledger
from .net.labnet import Attachment, LabNet
from .net.netns import NetnsExecutor, port_in_use
from .platforms.base import Instance, Platform, Timeline, now
from .provenance import controller_facts, host_facts
from .provision.doctor import tool_version
from .results.store import Store
from .workloads.base import WrongAnswer

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.005  # readiness polling; the phase resolution this gives is recorded in provenance
CONNECT_TIMEOUT = 0.5
PROBE_TIMEOUT = 3.0


class Reporter:
    """What the runner tells the user; the CLI renders it with rich, tests collect it."""

    def start(self, total: int, run_id: str) -> None: ...
    def phase(self, text: str) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def warn(self, text: str) -> None: ...
    def sample(self, row: dict) -> None: ...


@dataclass
class RunOutcome:
    run_id: str
    status: str
    samples: int = 0
    failed_cells: list[str] = field(default_factory=list)
    reason: str | None = None


def new_run_id() -> str:
    return secrets.token_hex(3)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def wait_ready(instance: Instance, workload, executor: NetnsExecutor | None, timeout: float) -> None:
    """Poll until the workload gives a correct application response; mark port_open and ready."""
    tl = instance.timeline
    deadline = now() + timeout
    last_error = "no answer"

    def connect():
        if executor is None:
            import socket
            return socket.create_connection((instance.address, workload.port), CONNECT_TIMEOUT)
        return executor.connect(instance.address, workload.port, CONNECT_TIMEOUT)

    while True:
        instance.poll_console()
        if not instance.alive():
            raise LaunchError(f"{instance.name} stopped before it became ready: {instance.exit_reason()}")
        try:
            sock = connect()
            t_open = now()
            sock.settimeout(PROBE_TIMEOUT)
            tl.mark("port_open", t_open)

            def first():
                return sock

            if workload.probe(first):
                tl.mark("ready", now())
                instance.poll_console()
                return
            last_error = "port open but the probe's answer was wrong"
        except WrongAnswer as exc:
            last_error = f"port open but the probe's answer was wrong: {exc}"
        except OSError as exc:
            last_error = exc.strerror or str(exc) or type(exc).__name__
        if now() > deadline:
            port_state = "open" if tl.has("port_open") else "closed"
            raise NotReadyError(f"{instance.name}: {workload.name} at {instance.address}:{workload.port} gave no "
                                f"correct answer to its readiness probe within {timeout:g} s (port {port_state}; "
                                f"last: {last_error})")
        time.sleep(POLL_INTERVAL)


def split_cpus(count: int) -> tuple[list[int] | None, list[int] | None]:
    """auto placement: load generator on the first half of the CPUs, server on the rest."""
    if count < 2:
        return None, None
    half = count // 2
    return list(range(half, count)), list(range(half))


class Runner:
    def __init__(self, suite: Suite, *, store: Store, reporter: Reporter | None = None,
                 server_host: Host | None = None, client_host: Host | None = None,
                 run_id: str | None = None, trust_new_host_key: bool = False):
        self.suite = suite
        self.store = store
        self.reporter = reporter or Reporter()
        self.run_id = run_id or new_run_id()
        self.server_host = server_host or self._host(suite.model.placement.server_host, trust_new_host_key)
        self.client_host = client_host or self._host(suite.model.placement.client_host, trust_new_host_key)
        self.remote_server = not isinstance(self.server_host, LocalHost)
        self.workdir = paths.runs_dir() / self.run_id
        self.cache = ImageCache()
        self.platforms: dict[str, Platform] = {}
        self.images: dict[tuple[str, str], Image] = {}
        self.samples = 0
        self.failed_cells: list[str] = []

    # --- hosts -----------------------------------------------------------------------
    def _host(self, name: str, trust_new: bool) -> Host:
        if name in ("localhost", "local"):
            return LocalHost()
        lab_file = self.suite.model.lab.lab_file
        if not lab_file:
            raise ConfigError(f"{self.suite.path}: placement: host {name!r} needs lab.lab_file naming the lab hosts file")
        from .config.lab import load_lab
        from .hosts.ssh import SshHost

        lab_path = (self.suite.path.parent / lab_file) if not Path(lab_file).is_absolute() else Path(lab_file)
        lab = load_lab(lab_path)
        return SshHost.from_lab(lab.host(name), trust_new=trust_new)

    # --- preflight -------------------------------------------------------------------
    def preflight(self) -> None:
        """Everything that can be checked before anything is created."""
        missing: list[str] = []
        for cell in self.suite.cells:
            entry = self.suite.platforms[cell.platform]
            for tool in entry.cls.tools:
                if self.server_host.which(tool) is None:
                    missing.append(f"{tool} (platform {cell.platform})")
            bench = self.suite.benchmarks[cell.benchmark]
            for tool in bench.cls.tools:
                if self.client_host.which(tool) is None:
                    missing.append(f"{tool} (benchmark {cell.benchmark})")
        if missing:
            raise MissingToolError(f"missing on this host: {', '.join(dict.fromkeys(missing))}; run ./setup.sh "
                                   f"or see `testbed doctor`")
        if not self.remote_server:
            self._check_subnet_free()

    def _check_subnet_free(self) -> None:
        subnet = ipaddress.IPv4Network(self.suite.model.lab.subnet)
        out = LocalHost().run(["ip", "-o", "-4", "addr", "show"], timeout=10).stdout
        for line in out.split("\n"):
            parts = line.split()
            if len(parts) >= 4 and parts[2] == "inet":
                iface = ipaddress.IPv4Interface(parts[3])
                if iface.network.overlaps(subnet):
                    raise ResourceBusyError(
                        f"{self.suite.path}: lab.subnet {subnet} overlaps {iface} on host interface {parts[1]}; "
                        f"choose a subnet this host does not use")

    # --- the run ---------------------------------------------------------------------
    def run(self) -> RunOutcome:
        suite = self.suite
        self.preflight()
        old = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM,)}
        ledger = Ledger(self.run_id)
        facts = {"server": host_facts(self.server_host),
                 "client": host_facts(self.client_host) if self.client_host.name != self.server_host.name else None,
                 **controller_facts()}
        self.facts = facts
        self.store.begin_run(self.run_id, suite.name, str(suite.path), suite.digest, facts["testbed_rev"], facts)
        status, reason = "ok", None
        try:
            with ExitStack() as stack:
                stack.callback(ledger.close)
                stack.callback(self._safety_net, ledger)
                self.workdir.mkdir(parents=True, exist_ok=True)
                labnet = None
                if not self.remote_server:
                    labnet = LabNet(self.run_id, suite.model.lab.subnet, ledger)
                    stack.callback(labnet.destroy)
                    labnet.create()
                self._build_platforms(ledger, stack)
                self._build_images()
                self.tool_versions = self._tool_versions()
                self.reporter.start(self._total_trials(), self.run_id)
                executor = NetnsExecutor(labnet.client_ns) if labnet else None
                if executor:
                    stack.callback(executor.close)
                for (platform, workload), cells in self._groups().items():
                    self._run_group(platform, workload, cells, labnet, executor)
        except KeyboardInterrupt as exc:
            status, reason = "interrupted", f"interrupted by {exc.args[0] if exc.args else 'SIGINT'}"
            raise Interrupted(f"run {self.run_id} {reason}; {self.samples} samples kept in {self.store.path}") from None
        except TestbedError as exc:
            status, reason = "failed", str(exc)
            raise
        except Exception as exc:
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            if status == "ok" and self.failed_cells:
                status, reason = "failed", f"{len(self.failed_cells)} cell(s) failed: {self.failed_cells[0]}"
            self.store.end_run(self.run_id, status, reason)
        return RunOutcome(self.run_id, status, self.samples, self.failed_cells, reason)

    def _safety_net(self, ledger: Ledger) -> None:
        leftovers = ledger.reclaim_live()
        if leftovers:
            log.warning("reclaimed after teardown: %s", ", ".join(leftovers))

    def _build_platforms(self, ledger: Ledger, stack: ExitStack) -> None:
        placement = self.suite.model.placement
        # Auto placement splits one host's CPUs; on two hosts each side keeps all of its own.
        same_host = self.server_host.name == self.client_host.name
        count = int(self.server_host.run(["nproc"], timeout=10).stdout.strip())
        auto_server, auto_client = split_cpus(count) if same_host else (None, None)

        def choose(value, auto):
            return auto if value == "auto" else (None if value == "none" else value)

        self.server_cpus = choose(placement.server_cpus, auto_server)
        self.client_cpus = choose(placement.client_cpus, auto_client)
        for name in dict.fromkeys(c.platform for c in self.suite.cells):
            entry = self.suite.platforms[name]
            options = entry.options
            if options.cpus is None and self.server_cpus:
                options = options.model_copy(update={"cpus": self.server_cpus})
            p = entry.cls(name, options, self.server_host, ledger, self.workdir / name)
            p.workdir.mkdir(parents=True, exist_ok=True)
            self.reporter.phase(f"preparing {name}")
            p.prepare()
            stack.callback(p.close)
            self.platforms[name] = p

    def _build_images(self) -> None:
        for platform, workload in dict.fromkeys((c.platform, c.workload) for c in self.suite.cells):
            self.reporter.phase(f"image for {platform}/{workload}")
            w = self._workload(workload)
            image = self.platforms[platform].image(w, self.cache)
            if not image.cache_hit and image.build_seconds:
                self.reporter.phase(f"built {image.kind} image {image.name} in {image.build_seconds:.1f} s")
            self.images[(platform, workload)] = image

    def _tool_versions(self) -> dict:
        versions: dict[str, str] = {}
        for p in self.platforms.values():
            versions.update(p.versions())
        for name in dict.fromkeys(c.workload for c in self.suite.cells):
            w = self._workload(name)
            versions[w.version_argv[0]] = tool_version(self.server_host, w.version_argv) or "missing"
        for name in dict.fromkeys(c.benchmark for c in self.suite.cells):
            b = self._benchmark(name)
            versions.update(b.versions(self.client_host))
        return versions

    def _workload(self, name: str):
        entry = self.suite.workloads[name]
        return entry.cls(entry.options)

    def _benchmark(self, name: str):
        entry = self.suite.benchmarks[name]
        return entry.cls(name, entry.options)

    def _groups(self) -> dict[tuple[str, str], list[Cell]]:
        groups: dict[tuple[str, str], list[Cell]] = {}
        for cell in self.suite.cells:
            groups.setdefault((cell.platform, cell.workload), []).append(cell)
        return groups

    def _reps(self, bench) -> int:
        return bench.options.repetitions or self.suite.model.repetitions

    def _total_trials(self) -> int:
        total = 0
        for cell in self.suite.cells:
            b = self._benchmark(cell.benchmark)
            total += (b.options.warmup + self._reps(b)) * len(b.points())
        return total

    # --- trials ----------------------------------------------------------------------
    def _attach(self, platform: Platform, labnet: LabNet | None) -> Attachment:
        if labnet is None:
            return self._remote_attachment(platform)
        if platform.attachment == "vm":
            return labnet.attach_vm(getattr(platform.options, "nic", "virtio"))
        return labnet.attach_namespace(platform.kind.replace("-", "")[:6])

    def _remote_attachment(self, platform: Platform) -> Attachment:
        address = getattr(self.server_host, "lab_address", None)
        if not address:
            raise ConfigError(f"host {self.server_host.name}: lab_address is needed to place a server there")
        iface = ipaddress.IPv4Interface(address if "/" in address else f"{address}/24")
        return Attachment(iface.ip, iface.network, iface.ip, "", nic="host")

    def _launch_ready(self, platform: Platform, workload, labnet, executor) -> tuple[Instance, Attachment]:
        attachment = self._attach(platform, labnet)
        if labnet is None and port_in_use(str(attachment.address), workload.port, None):
            raise ResourceBusyError(f"{attachment.address}:{workload.port} on {self.server_host.name} is already in "
                                    f"use; stop whatever listens there")
        instance = None
        try:
            timeline = Timeline()
            instance = platform.launch(self.images[(platform.name, workload.name)], workload, attachment, timeline)
            wait_ready(instance, workload, executor, platform.options.ready_timeout)
            return instance, attachment
        except BaseException:
            if instance is not None:
                instance.stop()
            if labnet is not None:
                labnet.release(attachment)
            raise

    def _teardown(self, instance: Instance, attachment: Attachment, labnet: LabNet | None) -> None:
        try:
            instance.stop()
        finally:
            if labnet is not None:
                labnet.release(attachment)

    def _run_group(self, pname: str, wname: str, cells: list[Cell], labnet, executor) -> None:
        platform = self.platforms[pname]
        workload = self._workload(wname)
        cold = [c for c in cells if self._benchmark(c.benchmark).cold_start]
        load = [c for c in cells if not self._benchmark(c.benchmark).cold_start]
        for cell in cold:
            self._cold_starts(platform, workload, self._benchmark(cell.benchmark), labnet, executor)
        if not load:
            return
        self.reporter.phase(f"{pname}/{wname}: launching for load benchmarks")
        try:
            instance, attachment = self._launch_ready(platform, workload, labnet, executor)
        except (LaunchError, ResourceBusyError) as exc:
            for cell in load:
                b = self._benchmark(cell.benchmark)
                self._fail_cell(cell, b, str(exc), platform, workload)
            return
        try:
            for cell in load:
                self._load(platform, workload, instance, self._benchmark(cell.benchmark), labnet)
        finally:
            self._teardown(instance, attachment, labnet)

    def _fail_cell(self, cell: Cell, bench, reason: str, platform: Platform, workload) -> None:
        self.failed_cells.append(f"{cell.platform}/{cell.workload}/{cell.benchmark}: {reason}")
        self.reporter.warn(f"{cell.platform}/{cell.workload}/{cell.benchmark}: {reason}")
        self._store(platform, workload, bench, None,
                    Measurement.failed("cell", "-", reason), repetition=0)
        self.reporter.advance((bench.options.warmup + self._reps(bench)) * len(bench.points()))

    def _cold_starts(self, platform: Platform, workload, bench: Startup, labnet, executor) -> None:
        reps, warmup = self._reps(bench), bench.options.warmup
        for i in range(warmup + reps):
            rep = i - warmup
            label = "warm-up" if rep < 0 else f"{rep + 1}/{reps}"
            self.reporter.phase(f"{platform.name}/{workload.name}: cold start {label}")
            try:
                instance, attachment = self._launch_ready(platform, workload, labnet, executor)
            except (LaunchError, ResourceBusyError) as exc:
                if rep >= 0:
                    self._store(platform, workload, bench, None,
                                Measurement.failed("startup_ms", "ms", str(exc)), repetition=rep)
                self.failed_cells.append(f"{platform.name}/{workload.name}/{bench.name}: {exc}")
                self.reporter.warn(str(exc))
                self.reporter.advance(warmup + reps - i)
                return  # a platform that cannot start will not start on the next try either
            try:
                if rep >= 0:
                    for m in bench.measure(instance.timeline):
                        self._store(platform, workload, bench, instance, m, repetition=rep)
            finally:
                self._teardown(instance, attachment, labnet)
            self.reporter.advance()

    def _load(self, platform: Platform, workload, instance: Instance, bench, labnet) -> None:
        client = ClientSide(self.client_host, labnet.client_ns if labnet else None, self.client_cpus,
                            self.workdir / "client")
        target = Target(instance.address, workload.port, workload.name)
        reps, warmup = self._reps(bench), bench.options.warmup
        for point in bench.points():
            for i in range(warmup + reps):
                rep = i - warmup
                label = "warm-up" if rep < 0 else f"{rep + 1}/{reps}"
                self.reporter.phase(f"{platform.name}/{workload.name}: {bench.name} {point or ''} {label}")
                if not instance.alive():
                    m = Measurement.failed("instance", "-", f"instance died: {instance.exit_reason()}", point)
                    self._store(platform, workload, bench, instance, m, repetition=max(rep, 0))
                    self.failed_cells.append(f"{platform.name}/{workload.name}/{bench.name}: instance died")
                    return
                measurements = bench.run(point, target, client)
                if rep >= 0:
                    for m in measurements:
                        self._store(platform, workload, bench, instance, m, repetition=rep)
                self.reporter.advance()

    def _store(self, platform: Platform, workload, bench, instance: Instance | None, m: Measurement, *,
               repetition: int) -> None:
        image = self.images.get((platform.name, workload.name))
        prov = {
            "host": self.facts["server"],
            "client_host": self.facts["client"] or "same as host",
            "testbed_rev": self.facts["testbed_rev"],
            "testbed_version": self.facts["testbed_version"],
            "suite": self.suite.name,
            "suite_hash": self.suite.digest,
            "platform_kind": platform.kind,
            "platform_options": platform.options.model_dump(),
            "workload_options": workload.options.model_dump(),
            "benchmark_kind": bench.kind,
            "benchmark_options": bench.options.model_dump(),
            "tools": self.tool_versions,
            "placement": {"server_host": self.server_host.name, "server_cpus": platform.options.cpus,
                          "client_host": self.client_host.name, "client_cpus": self.client_cpus},
            "readiness_poll_ms": POLL_INTERVAL * 1000,
            **(image.provenance() if image else {}),
            **platform.provenance(),
        }
        if instance is not None:
            prov["nic"] = instance.attachment.nic
            prov.update(instance.provenance)
        self.store.add_sample(self.run_id, platform=platform.name, workload=workload.name, benchmark=bench.name,
                              metric=m.metric, value=m.value, unit=m.unit, repetition=repetition, params=m.params,
                              status=m.status, reason=m.reason, provenance=prov)
        self.samples += 1
        self.reporter.sample({"platform": platform.name, "metric": m.metric, "value": m.value, "status": m.status})
