"""gvisor: the same OCI bundle under runsc, with gVisor's own network stack (netstack).

`--network=sandbox` (runsc's default) makes the sandbox take over the lab namespace's
eth0 and run TCP/IP in netstack: the configuration the gVisor paper compares to runc.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Literal

from pydantic import Field

from ..checks import PASS, WARN, Check, DoctorCheck
from ..errors import HostError
from ..hosts.base import Host
from ..hosts.transfer import ship_file
from ..tools import Tool
from .base import PlatformOptions
from .oci_runtime import OciPlatform

COMPAT_WRAPPER = Path(__file__).with_name("runsc-netns-compat.sh")
# runsc releases from this date on test /proc/sys/net/core/dev_weight, which is root-namespace only.
FIXED_ROOT_NETNS_CHECK = 20240801


_COMPAT: dict[str, bool] = {}  # host name -> verdict (one probe per host and process)


def runsc_needs_netns_compat(host: Host) -> bool:
    """True when this runsc would mistake testbed's fresh namespace for the root one (see the wrapper)."""
    if host.name not in _COMPAT:
        version = host.run(["runsc", "--version"], timeout=20, check=False).stdout
        m = re.search(r"(\d{8})", version)
        if not m or int(m.group(1)) >= FIXED_ROOT_NETNS_CHECK:
            _COMPAT[host.name] = False
        else:
            probe = host.run(["unshare", "--net", "test", "-e", "/proc/sys/net/core/rmem_default"], timeout=20,
                             check=False)
            _COMPAT[host.name] = probe.ok
    return _COMPAT[host.name]


class GvisorOptions(PlatformOptions):
    platform: Literal["ptrace", "kvm", "systrap"] = "ptrace"
    network: Literal["sandbox", "host"] = "sandbox"
    ready_timeout: float = Field(90.0, gt=0, le=3600)


class Gvisor(OciPlatform[GvisorOptions], kind="gvisor"):
    binary = "runsc"
    state_root = "/run/testbed-runsc"
    tools = (Tool("runsc", "runsc", ("runsc", "--version"), "gvisor platform"),
             Tool("unshare", "util-linux", (), "gvisor platform (netns compatibility)"))
    Options = GvisorOptions

    def runtime_argv(self) -> list[str]:
        if not runsc_needs_netns_compat(self.host):
            return [self.binary]
        return [ship_file(self.host, COMPAT_WRAPPER), self.binary]  # on a lab host: its copy there

    def global_flags(self) -> list[str]:
        return ["--root", self.state_root, f"--platform={self.options.platform}", f"--network={self.options.network}"]

    def host_stack_netns(self, attachment) -> str | None:
        # network=sandbox: gVisor's netstack keeps its own counters, the namespace sees none of its TCP
        return attachment.netns if self.options.network == "host" else None

    def provenance(self) -> dict:
        try:
            compat: bool | str = runsc_needs_netns_compat(self.host)
        except HostError as exc:  # a lab host that stopped answering before runsc was ever asked
            compat = f"unknown ({exc})"
        return {"gvisor_platform": self.options.platform, "gvisor_network": self.options.network,
                "runsc_netns_compat": compat}


class GvisorNetnsCheck(DoctorCheck, kind="gvisor-netns"):
    """Whether runsc accepts testbed's namespaces as they are, or through the compat wrapper."""

    order = 60

    def run(self, host: Host) -> Iterable[Check]:
        if host.which("runsc") is None:
            return []
        if runsc_needs_netns_compat(host):
            return [Check("gvisor netns check", WARN,
                          "this runsc mistakes any network namespace for the root one on this kernel; testbed masks "
                          "/proc/sys/net for runsc (recorded as runsc_netns_compat)",
                          f"a runsc release from {FIXED_ROOT_NETNS_CHECK} or later needs no workaround")]
        return [Check("gvisor netns check", PASS, "runsc accepts testbed's network namespaces")]
