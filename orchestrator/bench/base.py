"""Benchmark: a load generator run against an Instance, and the parser of its output.

A benchmark sees only the target's address and port and the client side it runs on
(a host, a network namespace, CPUs to pin to); it knows nothing about platforms.
"""

from __future__ import annotations

import itertools
import os
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..errors import BenchmarkError, CommandTimeout
from ..hosts.base import CommandResult, Host


class BenchmarkOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    warmup: int = Field(1, ge=0, description="runs per sweep point that are discarded")
    repetitions: int | None = Field(None, ge=1, description="overrides the suite's repetitions")
    timeout: float = Field(120.0, gt=0, description="seconds one run of the tool may take")


@dataclass
class Measurement:
    metric: str
    value: float | None
    unit: str
    params: dict = field(default_factory=dict)
    status: str = "ok"  # ok | failed
    reason: str | None = None

    @classmethod
    def failed(cls, metric: str, unit: str, reason: str, params: dict | None = None) -> "Measurement":
        return cls(metric, None, unit, dict(params or {}), "failed", reason)


@dataclass
class Target:
    address: str
    port: int
    workload: str


@dataclass
class ClientSide:
    """Where the load generator runs: a host, optionally a network namespace and pinned CPUs."""

    host: Host
    netns: str | None
    cpus: list[int] | None
    workdir: Path

    def run(self, argv: Sequence[str], *, timeout: float) -> CommandResult:
        full = list(argv)
        if self.cpus:
            full = ["taskset", "-c", ",".join(map(str, self.cpus)), *full]
        try:
            return self.host.run(full, timeout=timeout, check=False, netns=self.netns)
        except CommandTimeout as exc:
            raise BenchmarkError(str(exc)) from exc

    def placement(self) -> dict:
        return {"client_host": self.host.name, "client_netns": self.netns, "client_cpus": self.cpus}

    def cpu_count(self) -> int:
        """CPUs the load generator may use: its pinned set, else every CPU of this machine."""
        return len(self.cpus) if self.cpus else (os.cpu_count() or 1)

    def connect(self, address: str, port: int, timeout: float) -> socket.socket:
        """A TCP connection made from the client side (inside its lab namespace), for in-process clients."""
        from ..hosts.local import LocalHost

        if not isinstance(self.host, LocalHost):
            raise BenchmarkError(f"an in-process client needs the client side on this machine, not {self.host.name}")
        if self.netns is None:
            return socket.create_connection((address, port), timeout)
        from ..net.netns import NetnsExecutor

        ex = NetnsExecutor(self.netns)
        try:
            return ex.connect(address, port, timeout)
        finally:
            ex.close()

    def measure(self, argv: Sequence[str], *, timeout: float, label: str,
                failed: Callable[[str], list[Measurement]],
                parse: Callable[[CommandResult], list[Measurement]]) -> list[Measurement]:
        """Run a load generator once and parse its output. Every way it can fail (it will not
        start, times out, exits non-zero, prints what the parser rejects) becomes failed(reason)."""
        try:
            result = self.run(argv, timeout=timeout)
        except Exception as exc:
            return failed(str(exc))
        self.keep_output(label, result.stdout, result.stderr)
        if not result.ok:
            return failed(f"{Path(argv[0]).name} exited {result.returncode}: {result.tail()}")
        try:
            return parse(result)
        except ValueError as exc:
            return failed(f"{exc}; stderr: {result.tail()}" if result.stderr.strip() else str(exc))

    def keep_output(self, label: str, text: str, stderr: str = "") -> Path:
        """Keep a tool's raw output beside the run (runs/<id>/client/raw/), for checking and parser fixtures."""
        raw = self.workdir / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in label)
        n = len(list(raw.glob(f"{safe}.*.out")))
        path = raw / f"{safe}.{n}.out"
        path.write_text(text + (f"\n# stderr:\n{stderr}" if stderr else ""))
        return path

    def put_file(self, path: Path, *, timeout: float = 30) -> None:
        """Make a file the client wrote locally exist at the same path on the client host."""
        from ..hosts.local import LocalHost

        if not isinstance(self.host, LocalHost):
            self.host.run(["mkdir", "-p", str(path.parent)], timeout=timeout)
            self.host.put(path, str(path), timeout=timeout)


class Benchmark(ABC):
    kind: ClassVar[str]
    Options: ClassVar[type[BenchmarkOptions]] = BenchmarkOptions
    workloads: ClassVar[tuple[str, ...]] = ()  # workloads it can drive; () means any
    tools: ClassVar[tuple[str, ...]] = ()  # executables on the client side
    version_argv: ClassVar[list[str] | None] = None  # prints the tool's version
    cold_start: ClassVar[bool] = False  # True: the runner launches a fresh instance per repetition

    def __init__(self, name: str, options: BenchmarkOptions):
        self.name = name
        self.options = options

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

    def versions(self, host: Host) -> dict[str, str]:
        """The tool's own version line as the client host reports it, for provenance."""
        if not self.version_argv:
            return {}
        argv = self.version_argv
        if host.which(argv[0]) is None:
            return {argv[0]: "missing"}
        try:
            out = host.run(argv, timeout=15, check=False)
        except Exception as exc:  # noqa: BLE001 - a version we cannot read is recorded, not fatal
            return {argv[0]: f"unknown ({exc})"}
        return {argv[0]: (out.stdout.strip() or out.stderr.strip()).split("\n")[0]}
