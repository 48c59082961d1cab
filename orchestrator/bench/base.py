"""Benchmarks: a cold-start measurement or a load generator run against an Instance.

Two kinds, each with its own contract:

* ColdStartBenchmark: the runner launches a fresh instance per repetition; the benchmark turns
  the launch's Timeline into samples (`measure`).
* LoadBenchmark: one instance serves every repetition; the benchmark runs its tool once per
  sweep point and repetition (`run`) from the client side and parses the tool's real output.

A benchmark sees only the target's address and port and the client side it runs on (a host,
a network namespace, CPUs to pin to); it knows nothing about platforms. A kind registers
itself by subclassing: `class Wrk(LoadBenchmark, kind="wrk")`.
"""

from __future__ import annotations

import itertools
import os
import socket
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..enums import SampleStatus
from ..errors import BenchmarkError, CommandTimeout, TestbedError
from ..hosts.base import CommandResult, Host
from ..registry import Registered, Registry
from ..timeline import Timeline
from ..tools import Tool, version_line

MAX_REPETITIONS = 1000


class BenchmarkOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    warmup: int = Field(1, ge=0, le=100, description="runs per sweep point that are discarded")
    repetitions: int | None = Field(None, ge=1, le=MAX_REPETITIONS, description="overrides the suite's repetitions")
    timeout: float = Field(120.0, gt=0, le=24 * 3600, description="seconds one run of the tool may take")


def sweep_values(values: list[int], low: int, high: int, what: str) -> list[int]:
    """A sweep of integers: each in low..high, none twice (the message names `what` they are)."""
    if any(v < low or v > high for v in values):
        raise ValueError(f"every value of {what} must be in {low}..{high}")
    if len(set(values)) != len(values):
        raise ValueError("a value is listed twice")
    return values


@dataclass
class Measurement:
    metric: str
    value: float | None
    unit: str
    params: dict = field(default_factory=dict)
    status: SampleStatus = SampleStatus.OK
    reason: str | None = None
    raw: str | None = None  # the tool's raw output file this value was parsed from (ClientSide.keep_output)

    @classmethod
    def failed(cls, metric: str, unit: str, reason: str, params: dict | None = None) -> "Measurement":
        return cls(metric, None, unit, dict(params or {}), SampleStatus.FAILED, reason)


@dataclass
class Target:
    address: str
    port: int
    workload: str  # the workload's kind


# (address, port, timeout) -> a socket connected from the client side (its lab namespace).
Connector = Callable[[str, int, float], socket.socket]
# Called while a tool runs: a reason to abort it (the instance died), or None to carry on.
Watch = Callable[[], str | None]


def with_raw(measurements: list[Measurement], raw: str) -> list[Measurement]:
    """The measurements, each naming the raw output file it came from."""
    for m in measurements:
        m.raw = raw
    return measurements


def _direct_connect(address: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((address, port), timeout)


@dataclass
class ClientSide:
    """Where the load generator runs: a host, optionally a network namespace and pinned CPUs.

    `connector` opens in-process client sockets on the client side (the runner passes one that
    works inside the lab namespace); `watch` lets a running tool be stopped as soon as the
    instance under load dies, instead of after the tool's own timeout."""

    host: Host
    netns: str | None
    cpus: list[int] | None
    workdir: Path
    connector: Connector = _direct_connect
    watch: Watch | None = None

    def run(self, argv: Sequence[str], *, timeout: float) -> CommandResult:
        full = list(argv)
        if self.cpus:
            full = ["taskset", "-c", ",".join(map(str, self.cpus)), *full]
        try:
            return self.host.run(full, timeout=timeout, check=False, netns=self.netns, abort=self.watch)
        except CommandTimeout as exc:
            raise BenchmarkError(str(exc)) from exc

    def placement(self) -> dict:
        return {"client_host": self.host.name, "client_netns": self.netns, "client_cpus": self.cpus}

    def cpu_count(self) -> int:
        """CPUs the load generator may use: its pinned set, else every CPU of this machine."""
        return len(self.cpus) if self.cpus else (os.cpu_count() or 1)

    def connect(self, address: str, port: int, timeout: float) -> socket.socket:
        """A TCP connection made from the client side (inside its lab namespace), for in-process clients."""
        return self.connector(address, port, timeout)

    def measure(self, argv: Sequence[str], *, timeout: float, label: str,
                failed: Callable[[str], list[Measurement]],
                parse: Callable[[CommandResult], list[Measurement]]) -> list[Measurement]:
        """Run a load generator once and parse its output. Every way it can fail (it will not
        start, times out, is aborted, exits non-zero, prints what the parser rejects) becomes
        failed(reason)."""
        try:
            result = self.run(argv, timeout=timeout)
        except (TestbedError, OSError) as exc:
            return failed(str(exc))
        raw = str(self.keep_output(label, result.stdout, result.stderr))
        if result.aborted:
            return with_raw(failed(f"{Path(argv[0]).name} stopped after {result.seconds:.1f} s: {result.aborted}"), raw)
        if not result.ok:
            return with_raw(failed(f"{Path(argv[0]).name} exited {result.returncode}: {result.tail()}"), raw)
        try:
            return with_raw(parse(result), raw)
        except ValueError as exc:
            return with_raw(failed(f"{exc}; stderr: {result.tail()}" if result.stderr.strip() else str(exc)), raw)

    def keep_output(self, label: str, text: str, stderr: str = "") -> Path:
        """Keep a tool's raw output beside the run (runs/<id>/client/<platform>/raw/), for checking and parser
        fixtures; every sample parsed from it names the file (provenance raw_output)."""
        raw = self.workdir / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in label)
        n = len(list(raw.glob(f"{safe}.*.out")))
        path = raw / f"{safe}.{n}.out"
        path.write_text(text + (f"\n# stderr:\n{stderr}" if stderr else ""))
        return path

    def put_file(self, path: Path, *, timeout: float = 30) -> None:
        """Make a file the client wrote locally exist at the same path on the client host."""
        if not self.host.is_local:
            self.host.run(["mkdir", "-p", str(path.parent)], timeout=timeout)
            self.host.put(path, str(path), timeout=timeout)


class Benchmark(Registered):
    registry: ClassVar[Registry["Benchmark"]] = Registry("benchmark", "orchestrator.bench")
    Options: ClassVar[type[BenchmarkOptions]] = BenchmarkOptions
    workloads: ClassVar[tuple[str, ...]] = ()  # workload kinds it can drive; () means any
    tools: ClassVar[tuple[Tool, ...]] = ()  # executables on the client side
    # The metrics its samples carry (fnmatch patterns, e.g. "phase_*_ms"): a paper claim naming a
    # metric no benchmark of its suite produces is refused when the suite loads.
    metrics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, options: BenchmarkOptions):
        self.name = name
        self.options = options

    def points(self) -> list[dict]:
        return [{}]

    def produces(self, metric: str) -> bool:
        import fnmatch

        return any(fnmatch.fnmatchcase(metric, pattern) for pattern in self.metrics)

    def expected_seconds(self, point: dict) -> float | None:
        """Roughly how long one run at `point` takes against a native server (for `run --check`'s
        estimate); None: unknown."""
        return None

    def bound_by_count(self) -> bool:
        """True when a run is a fixed number of operations (so it lasts longer on a slower server)."""
        return False

    def workload_needs(self) -> dict[str, list]:
        """What the workload must provide for this benchmark (e.g. the static files it fetches)."""
        return {}

    def versions(self, host: Host) -> dict[str, str]:
        """The tools' own version lines as the client host reports them, for provenance."""
        return {t.name: version_line(host, t.version_argv) for t in self.tools if t.version_argv}


class ColdStartBenchmark(Benchmark):
    """Measured from the launch itself: the runner starts a fresh instance per repetition."""

    @abstractmethod
    def measure(self, timeline: Timeline) -> list[Measurement]:
        """Samples from one launch's Timeline (the cold-start figure and the phases that explain it)."""


class LoadBenchmark(Benchmark):
    """A load generator run against a running instance, per sweep point and repetition."""

    def uses_tcp(self, point: dict) -> bool:
        """Whether a run at `point` loads the instance over TCP (its retransmissions are then recorded)."""
        return True

    def sweep(self) -> dict[str, list]:
        """Parameters that take several values; the runner measures every combination."""
        return {}

    def points(self) -> list[dict]:
        sweep = self.sweep()
        keys = list(sweep)
        return [dict(zip(keys, values)) for values in itertools.product(*(sweep[k] for k in keys))] or [{}]

    @abstractmethod
    def run(self, point: dict, target: Target, client: ClientSide) -> list[Measurement]:
        """One run of the tool at one sweep point; a failing tool yields failed Measurements, not an exception."""


__all__ = [
    "MAX_REPETITIONS",
    "Benchmark",
    "BenchmarkOptions",
    "ClientSide",
    "ColdStartBenchmark",
    "Connector",
    "LoadBenchmark",
    "Measurement",
    "Target",
    "Watch",
    "sweep_values",
    "with_raw",
]
