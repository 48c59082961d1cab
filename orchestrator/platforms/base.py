"""Platform, Instance and Timeline: the one verb every execution platform implements."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from ..hosts.base import Host
    from ..images.cache import Image, ImageCache
    from ..ledger import Ledger
    from ..net.labnet import Attachment
    from ..workloads.base import Workload

# Phases in the order a launch passes them; a platform marks the ones it can observe.
PHASES = (
    "requested",        # launch() called
    "process_started",  # runtime / VMM process exists (Popen returned, libvirt create returned)
    "vmm_started",      # QEMU process seen (VMs)
    "first_console",    # first console line from the guest (VMs, unikernels)
    "kernel_up",        # guest kernel handed over to userspace / unikernel booted
    "init_started",     # guest init or app main() started
    "port_open",        # the workload's TCP port accepts
    "ready",            # first correct application response (the end point of cold start)
)


def now() -> float:
    return time.monotonic()


@dataclass
class Timeline:
    """Monotonic timestamps of a launch's phases, plus what the guest itself reported."""

    marks: dict[str, float] = field(default_factory=dict)
    guest: dict[str, float | None] = field(default_factory=dict)  # guest's own figures, in ms; None = unavailable

    def mark(self, phase: str, t: float | None = None) -> float:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase}")
        t = now() if t is None else t
        self.marks.setdefault(phase, t)  # first observation wins
        return t

    def has(self, phase: str) -> bool:
        return phase in self.marks

    def since_requested_ms(self) -> dict[str, float]:
        """Each observed phase as milliseconds after `requested`, in phase order."""
        t0 = self.marks["requested"]
        return {p: (self.marks[p] - t0) * 1000.0 for p in PHASES if p in self.marks and p != "requested"}

    @property
    def startup_ms(self) -> float | None:
        if "ready" not in self.marks or "requested" not in self.marks:
            return None
        return (self.marks["ready"] - self.marks["requested"]) * 1000.0


class PlatformOptions(BaseModel):
    """Options every platform accepts; each platform subclasses this with its own fields."""

    model_config = ConfigDict(extra="forbid")
    ready_timeout: float = 60.0
    cpus: list[int] | None = None  # pin the instance to these host CPUs (placement is provenance)


class Instance(ABC):
    """A running workload on some platform, reachable at attachment.address."""

    def __init__(self, name: str, attachment: "Attachment", timeline: Timeline, workdir: Path):
        self.name = name
        self.attachment = attachment
        self.timeline = timeline
        self.workdir = workdir
        self.provenance: dict = {}

    @property
    def address(self) -> str:
        return str(self.attachment.address)

    @abstractmethod
    def alive(self) -> bool:
        """False once the runtime / VMM is gone (crashed, killed)."""

    @abstractmethod
    def stop(self) -> None:
        """Release everything the launch created. Idempotent; never raises for already-gone parts."""

    def exit_reason(self) -> str:
        """One line on why the instance died, from its log or console."""
        return "instance exited"

    def poll_console(self) -> None:
        """Give the platform a chance to mark console-derived phases while the runner waits."""


class Platform(ABC):
    kind: ClassVar[str]
    Options: ClassVar[type[PlatformOptions]] = PlatformOptions
    attachment: ClassVar[str] = "netns"  # "netns": labnet.attach_namespace; "vm": a NIC for a guest
    tools: ClassVar[tuple[str, ...]] = ()  # executables this platform needs on the host

    def __init__(self, name: str, options: PlatformOptions, host: "Host", ledger: "Ledger", workdir: Path):
        self.name = name
        self.options = options
        self.host = host
        self.ledger = ledger
        self.workdir = workdir

    @abstractmethod
    def image(self, workload: "Workload", cache: "ImageCache") -> "Image":
        """Build or fetch (cached) the artifact this platform boots for `workload`."""

    @abstractmethod
    def launch(self, image: "Image", workload: "Workload", attachment: "Attachment", timeline: Timeline) -> Instance:
        """Start the workload; mark `process_started` and any phase the platform sees. Must not wait for readiness."""

    def versions(self) -> dict[str, str]:
        """Versions of the runtime and tools this platform uses, for provenance."""
        return {}

    def provenance(self) -> dict:
        """Platform-level facts for every sample (accelerator, runtime flags)."""
        return {}

    def prepare(self) -> None:
        """Once per run before the first launch (e.g. the accelerator probe)."""

    def close(self) -> None:
        """Once per run after the last instance stopped."""
