"""Platform and Instance: the one verb every execution platform implements.

A platform is a small class registered by subclassing (`class Runc(OciPlatform[RuncOptions],
kind="runc")`) that declares its tools once and owns its place on the lab network: `attach()`
picks an attachment from the building blocks the lab network offers (a namespace, a bridge
port, a tap, an adopted VF), and `launch()` starts the workload there. Everything else
(network plumbing, image building, probing readiness) lives in its own module and is passed in.
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..paths import inside_home
from ..registry import Registered, Registry
from ..timeline import PHASES, Timeline, now
from ..tools import TRANSFER_TOOLS, Tool, version_line

if TYPE_CHECKING:
    from ..hosts.base import Host
    from ..images.cache import Image, ImageCache
    from ..ledger import Ledger
    from ..net.labnet import Attachment, LabNetwork
    from ..workloads.base import Workload

__all__ = ["PHASES", "Instance", "Platform", "PlatformOptions", "Timeline", "now"]


class PlatformOptions(BaseModel):
    """Options every platform accepts; each platform subclasses this with its own fields."""

    model_config = ConfigDict(extra="forbid")
    ready_timeout: float = Field(60.0, gt=0, le=3600, description="seconds to the first correct answer")
    cpus: list[int] | None = None  # pin the instance to these host CPUs (checked against the host at preflight)


O = TypeVar("O", bound=PlatformOptions)


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
        """False once the runtime / VMM is gone (crashed, killed) or the guest said it is finished."""

    @abstractmethod
    def stop(self, *, fast: bool = False) -> None:
        """Release everything the launch created. Idempotent; never raises for already-gone parts.
        fast: the instance's state is scratch (a cold-start trial), so no graceful shutdown is owed."""

    def exit_reason(self) -> str:
        """One line on why the instance died, from its log or console."""
        return "instance exited"


class Platform(Registered, ABC, Generic[O]):
    registry: ClassVar[Registry["Platform"]] = Registry("platform", "orchestrator.platforms")
    Options: ClassVar[type[PlatformOptions]] = PlatformOptions
    tools: ClassVar[tuple[Tool, ...]] = ()  # executables this platform needs on the host it is placed on

    def __init__(self, name: str, options: O, host: "Host", ledger: "Ledger", workdir: Path):
        self.name = name
        self.options: O = options
        self.host = host
        self.ledger = ledger
        self.workdir = workdir

    def launch_dir(self, name: str) -> Path:
        """A fresh scratch directory for one launch under this platform's run directory; never a path
        outside TESTBED_HOME, whatever a name in the suite says."""
        path = inside_home(self.workdir / name)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    @classmethod
    def tools_for(cls, options: PlatformOptions) -> tuple[Tool, ...]:
        """The tools a platform with these options needs (most platforms: always the same)."""
        return cls.tools

    @classmethod
    def lab_host_tools(cls, options: PlatformOptions | None = None) -> tuple[Tool, ...]:
        """What it needs besides, on a lab host (copying its images there and checking them)."""
        return TRANSFER_TOOLS

    # --- the network -------------------------------------------------------------------
    def attach(self, net: "LabNetwork") -> "Attachment":
        """This platform's place on the lab network; processes and containers get a namespace."""
        return net.namespace(self.name)

    # --- images and launches ------------------------------------------------------------
    @abstractmethod
    def image(self, workload: "Workload", cache: "ImageCache") -> "Image":
        """Build or fetch (cached) the artifact this platform boots for `workload`."""

    @abstractmethod
    def launch(self, image: "Image", workload: "Workload", attachment: "Attachment", timeline: Timeline) -> Instance:
        """Start the workload; mark `requested` just before starting it, then `process_started` and any
        phase the platform alone sees. Must not wait for readiness."""

    # --- run-level ----------------------------------------------------------------------
    def preflight(self) -> list[str]:
        """Errors in this platform's settings for its host (e.g. an option the installed runtime lacks),
        checked before anything is created; each is one line and stops the run."""
        return []

    def not_runnable(self, workload: "Workload") -> str | None:
        """Why a cell of this platform and workload cannot run here (an image not imported, no SR-IOV
        NIC), or None. Such cells are reported with the reason; the run goes on."""
        return None

    def prepare(self) -> None:
        """Once per run before the first launch (e.g. the accelerator probe)."""

    def close(self) -> None:
        """Once per run after the last instance stopped."""

    def versions(self) -> dict[str, str]:
        """Versions of the runtime and tools this platform uses, as its host reports them."""
        return {t.name: version_line(self.host, t.version_argv)
                for t in self.tools_for(self.options) if t.version_argv}

    def provenance(self) -> dict:
        """Platform-level facts for every sample (accelerator, runtime flags)."""
        return {}

    def host_stack_netns(self, attachment: "Attachment") -> str | None:
        """The namespace whose kernel TCP stack serves the instance, when it is the host's (native,
        runc): its nstat counters are the server side's. None when the stack is elsewhere (a guest
        kernel, gVisor's netstack) or unknown."""
        return None
