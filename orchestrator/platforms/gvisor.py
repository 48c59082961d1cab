"""gvisor: the same OCI bundle under runsc, with gVisor's own network stack (netstack).

`--network=sandbox` (runsc's default) makes the sandbox take over the lab namespace's
eth0 and run TCP/IP in netstack: the configuration the gVisor paper compares to runc.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Literal

from ..provision.doctor import PASS, WARN, Check, check
from .base import PlatformOptions
from .oci_runtime import OciPlatform

COMPAT_WRAPPER = Path(__file__).with_name("runsc-netns-compat.sh")
# runsc releases from this date on test /proc/sys/net/core/dev_weight, which is root-namespace only.
FIXED_ROOT_NETNS_CHECK = 20240801


@cache
def runsc_needs_netns_compat() -> bool:
    """True when this runsc would mistake testbed's fresh namespace for the root one (see the wrapper)."""
    version = subprocess.run(["runsc", "--version"], capture_output=True, text=True, timeout=20).stdout
    m = re.search(r"(\d{8})", version)
    if not m or int(m.group(1)) >= FIXED_ROOT_NETNS_CHECK:
        return False
    probe = subprocess.run(["unshare", "--net", "test", "-e", "/proc/sys/net/core/rmem_default"], timeout=20)
    return probe.returncode == 0


class GvisorOptions(PlatformOptions):
    platform: Literal["ptrace", "kvm", "systrap"] = "ptrace"
    network: Literal["sandbox", "host"] = "sandbox"
    ready_timeout: float = 90.0


class Gvisor(OciPlatform):
    kind = "gvisor"
    binary = "runsc"
    state_root = "/run/testbed-runsc"
    tools = ("runsc",)
    Options = GvisorOptions

    def runtime_argv(self) -> list[str]:
        return [str(COMPAT_WRAPPER), self.binary] if runsc_needs_netns_compat() else [self.binary]

    def global_flags(self) -> list[str]:
        return ["--root", self.state_root, f"--platform={self.options.platform}", f"--network={self.options.network}"]

    def provenance(self) -> dict:
        return {"gvisor_platform": self.options.platform, "gvisor_network": self.options.network,
                "runsc_netns_compat": runsc_needs_netns_compat()}


@check
def gvisor_network(host) -> list[Check]:
    """Whether runsc accepts testbed's namespaces as they are, or through the compat wrapper."""
    if host.which("runsc") is None or host.name != "localhost":
        return []
    if runsc_needs_netns_compat():
        return [Check("gvisor netns check", WARN,
                      "this runsc mistakes any network namespace for the root one on this kernel; testbed masks "
                      "/proc/sys/net for runsc (recorded as runsc_netns_compat)",
                      f"a runsc release from {FIXED_ROOT_NETNS_CHECK} or later needs no workaround")]
    return [Check("gvisor netns check", PASS, "runsc accepts testbed's network namespaces")]
