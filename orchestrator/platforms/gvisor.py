"""gvisor: the same OCI bundle under runsc, with gVisor's own network stack (netstack).

`--network=sandbox` (runsc's default) makes the sandbox take over the lab namespace's
eth0 and run TCP/IP in netstack: the configuration the gVisor paper compares to runc.

runsc's own settings are options, each checked against the installed runsc before a run (and by
`run --check`): `platform` against `runsc help platforms` (Debian 12's runsc has ptrace and kvm,
no systrap), `file_access`, `file_access_mounts`, `overlay` (--overlay2) and any `runsc_flags`
against `runsc flags`; `platform: kvm` also needs a KVM runsc can use, which a short
`runsc do true` under KVM decides (on a nested host without usable VMX it hangs).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Iterable, Literal

from pydantic import Field, field_validator

from ..checks import PASS, WARN, Check, DoctorCheck
from ..errors import HostError, TestbedError
from ..hosts.base import Host
from ..hosts.transfer import ship_file
from ..ledger import Reclaimer
from ..tools import Tool
from .base import PlatformOptions
from .host_tmpfs import HostTmpfsMounts
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


RUNSC_FLAG = re.compile(r"^--?([a-zA-Z][\w-]*)(=.*)?$")
FLAG_LINE = re.compile(r"^\s{1,4}-([A-Za-z][\w-]*)")
OVERLAY = re.compile(r"^(none|(root|all):(memory|self|/\S+))$")
# Settings testbed sets itself: given in runsc_flags they would be silently overridden.
OWN_FLAGS = ("root", "platform", "network", "file-access", "file-access-mounts", "overlay2")
KVM_PROBE_SECONDS = 10


class GvisorOptions(PlatformOptions):
    platform: Literal["ptrace", "kvm", "systrap"] = "ptrace"
    network: Literal["sandbox", "host"] = "sandbox"
    file_access: Literal["exclusive", "shared"] | None = Field(
        None, description="runsc --file-access: validation of the root mount (exclusive: runsc's default)")
    file_access_mounts: Literal["exclusive", "shared"] | None = Field(
        None, description="runsc --file-access-mounts: the same for other mounts (shared: runsc's default)")
    overlay: str | None = Field(None, description="runsc --overlay2, e.g. none, root:memory, all:memory")
    runsc_flags: list[str] = Field(default_factory=list, description="more runsc flags, e.g. [--gso=false]")
    host_tmpfs: bool = Field(False, description="bind-mount a directory of the host's tmpfs at /mnt/host-tmpfs")
    ready_timeout: float = Field(90.0, gt=0, le=3600)

    @field_validator("overlay")
    @classmethod
    def overlay_value(cls, value: str | None) -> str | None:
        if value is not None and not OVERLAY.match(value):
            raise ValueError(f"{value!r} is not an --overlay2 value; expected none, root:memory, all:memory, "
                             f"root:self or MOUNT:/existing/dir")
        return value

    @field_validator("runsc_flags")
    @classmethod
    def flag_syntax(cls, values: list[str]) -> list[str]:
        for v in values:
            m = RUNSC_FLAG.match(v)
            if not m:
                raise ValueError(f"{v!r} is not a runsc flag; write --name or --name=value")
            if m.group(1) in OWN_FLAGS:
                raise ValueError(f"{v!r}: set {m.group(1)} with its own option "
                                 f"({m.group(1).replace('-', '_').replace('overlay2', 'overlay')}: ...)")
        return values

    def flag_options(self) -> dict[str, str]:
        """runsc flag name -> the option that sets it (for preflight's messages)."""
        out = {"platform": "platform", "network": "network"}
        for option, flag in (("file_access", "file-access"), ("file_access_mounts", "file-access-mounts"),
                             ("overlay", "overlay2")):
            if getattr(self, option) is not None:
                out[flag] = option
        for v in self.runsc_flags:
            m = RUNSC_FLAG.match(v)
            assert m is not None
            out[m.group(1)] = f"runsc_flags {v}"
        return out


_FLAGS: dict[str, set[str]] = {}
_PLATFORMS: dict[str, list[str]] = {}
_KVM: dict[str, str | None] = {}


def runsc_flags(host: Host) -> set[str]:
    """The top-level flags this host's runsc knows (`runsc flags`)."""
    if host.name not in _FLAGS:
        res = host.run(["runsc", "flags"], timeout=20, check=False)
        _FLAGS[host.name] = {m.group(1) for line in (res.stdout + res.stderr).splitlines()
                             if (m := FLAG_LINE.match(line))}
    return _FLAGS[host.name]


def runsc_platforms(host: Host) -> list[str]:
    """The platforms this host's runsc was built with (`runsc help platforms`)."""
    if host.name not in _PLATFORMS:
        res = host.run(["runsc", "help", "platforms"], timeout=20, check=False)
        words = {w for w in res.stdout.split() if re.fullmatch(r"[a-z][a-z0-9_-]*", w)}
        _PLATFORMS[host.name] = sorted(words)  # runsc prints them in Go's random map order
    return _PLATFORMS[host.name]


def kvm_problem(host: Host, ledger) -> str | None:
    """Why runsc's KVM platform cannot run here, or None: /dev/kvm must be usable, and a sandbox must
    run `true` under --platform=kvm within KVM_PROBE_SECONDS."""
    if host.name in _KVM:
        return _KVM[host.name]
    problem: str | None = None
    if not host.run(["test", "-c", "/dev/kvm"], timeout=10, check=False).ok:
        problem = f"/dev/kvm does not exist on {host.name}"
    elif not host.run(["test", "-r", "/dev/kvm", "-a", "-w", "/dev/kvm"], timeout=10, check=False).ok:
        problem = f"/dev/kvm on {host.name} is not readable and writable by testbed's user"
    else:
        root = host.run(["mktemp", "-d", "/tmp/testbed-runsc-kvm-probe.XXXXXX"], timeout=10).stdout.strip()
        ledger.acquire(PROBE_LEDGER_KIND, root, **{"host": host.name, **host.connection_meta()})
        try:
            # timeout(1) sends TERM first, so runsc tears its sandbox down; KILL 5 s later if it does not.
            argv = ["timeout", "-k", "5", str(KVM_PROBE_SECONDS), "runsc", "--root", root, "--network=none",
                    "--platform=kvm", "do", "true"]
            res = host.run(argv, timeout=KVM_PROBE_SECONDS + 15, check=False)
            if res.returncode == 124:
                problem = (f"runsc --platform=kvm ran no sandbox within {KVM_PROBE_SECONDS} s on {host.name} "
                           f"(KVM present but unusable, e.g. nested virtualisation without VMX)")
            elif not res.ok:
                problem = f"runsc --platform=kvm fails on {host.name}: {res.tail()}"
        finally:
            reclaim_probe_root(host, root)
            ledger.release(PROBE_LEDGER_KIND, root)
    _KVM[host.name] = problem
    return problem


PROBE_LEDGER_KIND = "runsc-probe-root"


def reclaim_probe_root(host: Host, root: str) -> None:
    if not root.startswith("/tmp/testbed-runsc-kvm-probe."):
        raise TestbedError(f"{root}: not a runsc probe directory; left alone")
    listed = host.run(["runsc", "--root", root, "list", "-quiet"], timeout=20, check=False)
    for cid in listed.stdout.split():
        host.run(["runsc", "--root", root, "delete", "-force", cid], timeout=20, check=False)
    host.run(["rm", "-rf", "--one-file-system", root], timeout=20, check=False)


class RunscProbeReclaimer(Reclaimer, kind=PROBE_LEDGER_KIND):
    def reclaim(self, name: str, meta: dict) -> None:
        from ..hosts.ssh import host_for_entry

        reclaim_probe_root(host_for_entry(meta), name)  # on a lab host: reconnected by its entry


class Gvisor(HostTmpfsMounts, OciPlatform[GvisorOptions], kind="gvisor"):
    binary = "runsc"
    state_root = "/run/testbed-runsc"
    tools = (Tool("runsc", "runsc", ("runsc", "--version"), "gvisor platform"),
             Tool("unshare", "util-linux", (), "gvisor platform (netns compatibility)"))
    Options = GvisorOptions
    options: GvisorOptions

    def runtime_argv(self) -> list[str]:
        if not runsc_needs_netns_compat(self.host):
            return [self.binary]
        return [ship_file(self.host, COMPAT_WRAPPER), self.binary]  # on a lab host: its copy there

    def global_flags(self) -> list[str]:
        o = self.options
        flags = ["--root", self.state_root, f"--platform={o.platform}", f"--network={o.network}"]
        if o.file_access:
            flags.append(f"--file-access={o.file_access}")
        if o.file_access_mounts:
            flags.append(f"--file-access-mounts={o.file_access_mounts}")
        if o.overlay:
            flags.append(f"--overlay2={o.overlay}")
        return flags + list(o.runsc_flags)

    def preflight(self) -> list[str]:
        """The options against this host's runsc: platforms it has, flags it knows, a usable KVM."""
        errors = super().preflight()
        if self.host.which("runsc") is None:
            return errors  # the missing tool is reported once, by the tool check
        out = self.host.run(["runsc", "--version"], timeout=20, check=False).stdout.split("\n")[0].split()
        version = out[2] if len(out) > 2 else "version unknown"
        platforms = runsc_platforms(self.host)
        if platforms and self.options.platform not in platforms:
            errors.append(f"platform: this runsc ({version}) has no {self.options.platform} platform; it has "
                          f"{', '.join(platforms)}")
        known = runsc_flags(self.host)
        for flag, option in self.options.flag_options().items():
            if known and flag not in known:
                errors.append(f"{option}: this runsc ({version}) has no --{flag} flag (see `runsc flags`)")
        if self.options.platform == "kvm" and "kvm" in platforms:
            problem = kvm_problem(self.host, self.ledger)
            if problem:
                errors.append(f"platform: kvm: {problem}; use platform: ptrace here")
        return errors

    def host_stack_netns(self, attachment) -> str | None:
        # network=sandbox: gVisor's netstack keeps its own counters, the namespace sees none of its TCP
        return attachment.netns if self.options.network == "host" else None

    def provenance(self) -> dict:
        o = self.options
        try:
            compat: bool | str = runsc_needs_netns_compat(self.host)
        except HostError as exc:  # a lab host that stopped answering before runsc was ever asked
            compat = f"unknown ({exc})"
        prov = {"gvisor_platform": o.platform, "gvisor_network": o.network,
                "runsc_netns_compat": compat, "runsc_flags": shlex.join(self.global_flags()[2:])}
        return {**super().provenance(), **prov}


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
