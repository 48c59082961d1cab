"""Doctor checks: pass / warn / fail findings about a host, each with a fix.

A check is a class registered by subclassing (`class KvmCheck(DoctorCheck, kind="kvm")`),
beside the code whose needs it knows (gVisor's netns quirk in platforms/gvisor.py, libvirt in
virt/). `testbed doctor` discovers every module and runs each check against a Host.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, ClassVar, Iterable

from .enums import CheckStatus
from .registry import Registered, Registry

if TYPE_CHECKING:
    from .hosts.base import Host

PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL


@dataclass
class Check:
    name: str
    status: CheckStatus
    detail: str
    fix: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["status"] = str(self.status)
        return d


class DoctorCheck(Registered):
    """One family of checks. `order` sorts the table (lower first); `local_only` skips lab hosts."""

    registry: ClassVar[Registry["DoctorCheck"]] = Registry("doctor check", None)
    order: ClassVar[int] = 50
    local_only: ClassVar[bool] = False

    @abstractmethod
    def run(self, host: "Host") -> Iterable[Check]:
        """Findings about `host`; a missing file or tool is a finding, not an exception."""
