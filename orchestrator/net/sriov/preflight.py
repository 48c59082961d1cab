"""Why SR-IOV cannot be used on a host, one fix each: shared by VfPool.from_host and `testbed doctor`.

The five reasons, in the order a host fixes them: no IOMMU, no SR-IOV PF, no VFs enabled, VFs
not isolated in their IOMMU groups, vfio-pci missing. Selector mismatches are reported the same
way (they are why a pool would be empty).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import LaunchError
from . import discovery
from .discovery import HostSriov, host_sriov
from ...config.vf_selectors import VfSelector, selected

if TYPE_CHECKING:
    from ...hosts.base import Host

REMOTE_TIMEOUT = 60


@dataclass
class SriovProblem:
    key: str  # iommu | pf | vfs | isolation | vfio-pci
    what: str
    fix: str

    def line(self) -> str:
        return f"{self.what} (fix: {self.fix})"


def _vf_ranges(indices: list[int]) -> str:
    out, start = [], None
    for i, n in enumerate(indices):
        if start is None:
            start = n
        if i + 1 == len(indices) or indices[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ",".join(out)


def sriov_problems(host: HostSriov, selectors: list[VfSelector] | None = None) -> list[SriovProblem]:
    selectors = selectors or []
    out: list[SriovProblem] = []
    if host.iommu_groups == 0:
        if host.iommu_args:
            out.append(SriovProblem("iommu", f"no IOMMU: the kernel has {' '.join(host.iommu_args)} but "
                                    "/sys/kernel/iommu_groups is empty", "enable VT-d (Intel) or AMD-Vi/IOMMU "
                                    "(AMD) in the firmware setup, then reboot"))
        else:
            out.append(SriovProblem("iommu", "no IOMMU: the kernel command line has no intel_iommu=on/amd_iommu=on "
                                    "and /sys/kernel/iommu_groups is empty", "set `iommu: true` for the host in the "
                                    "lab file, run `testbed provision`, then reboot"))
    named = {s.pf for s in selectors if s.pf}
    pfs = [p for p in host.pfs if not named or named & {p.name, p.pci_address}]
    if not host.pfs:
        out.append(SriovProblem("pf", "no SR-IOV PF: no PCI device here has sriov_totalvfs",
                                "use an SR-IOV NIC (e.g. Intel E810/X710/82599, NVIDIA ConnectX-4 or later) with "
                                "SR-IOV enabled in its firmware and in the BIOS"))
    elif not pfs:
        out.append(SriovProblem("pf", f"no SR-IOV PF named {', '.join(sorted(named))} (PFs here: "
                                f"{', '.join(p.name for p in host.pfs)})",
                                "name one of those PFs in sriov_pool / sriov_pf"))
    elif not any(p.vfs for p in pfs):
        counts = ", ".join(f"{p.name} has {p.num_vfs} of {p.total_vfs}" for p in pfs)
        first = pfs[0].name
        out.append(SriovProblem("vfs", f"no VFs enabled ({counts})",
                                f"set `sriov: {{{first}: N}}` for the host in the lab file and run `testbed provision` "
                                f"(or echo N > /sys/class/net/{first}/device/sriov_numvfs)"))
    else:
        chosen = selected(pfs, selectors)
        if not chosen:
            here = "; ".join(f"{p.name} VFs {_vf_ranges([v.index for v in p.vfs])} "
                             f"({p.vfs[0].pci_id}, {p.vfs[0].driver or 'no driver'})" for p in pfs if p.vfs)
            out.append(SriovProblem("vfs", f"no VF matches {' or '.join(map(str, selectors))} (here: {here})",
                                    "widen sriov_pool's selectors in the lab file"))
        elif host.iommu_groups:
            isolation = [vf.isolation_problem() for _, vf in chosen]
            if all(isolation):
                more = f" (and {len(chosen) - 1} more VFs)" if len(chosen) > 1 else ""
                out.append(SriovProblem("isolation", f"{isolation[0]}{more}",
                                        "put the NIC behind a root port with ACS (a CPU-attached slot) or enable ACS "
                                        "in the firmware, so each VF has its own IOMMU group"))
    if host.vfio_pci == "missing":
        out.append(SriovProblem("vfio-pci", f"vfio-pci is missing: no driver loaded and kernel {host.kernel or '?'} "
                                "has no vfio-pci module", "boot a kernel with CONFIG_VFIO_PCI (Debian's "
                                "linux-image-amd64 has it) and `modprobe vfio-pci`"))
    return out


def remote_host_sriov(host: "Host", sys: str = "/sys", proc: str = "/proc", modules: str = "/lib/modules") -> HostSriov:
    """discovery.host_sriov() run by the host's own python3 (one round trip over SSH)."""
    source = inspect.getsource(discovery)
    res = host.run(["python3", "-", sys, proc, modules], input=source, timeout=REMOTE_TIMEOUT, check=False)
    if not res.ok:
        raise LaunchError(f"{host.name}: cannot inspect SR-IOV with python3: {res.tail()}")
    try:
        return HostSriov.from_json(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise LaunchError(f"{host.name}: unreadable SR-IOV inventory ({exc})") from exc


def inspect_host(target: "Host | Path", sys: str = "/sys", proc: str = "/proc",
                 modules: str = "/lib/modules") -> HostSriov:
    """SR-IOV inventory of a sysfs root (this machine or a test tree) or of a Host (local or SSH)."""
    from ...hosts.local import LocalHost

    if isinstance(target, Path):
        return host_sriov(target, Path(proc), Path(modules))
    if isinstance(target, LocalHost):
        return host_sriov(Path(sys), Path(proc), Path(modules))
    return remote_host_sriov(target, sys, proc, modules)


def sriov_preflight(target: "Host | Path" = discovery.SYSFS, selectors: list[VfSelector] | None = None, *,
                    proc: str = "/proc", modules: str = "/lib/modules") -> list[str]:
    """Reasons SR-IOV cannot be used on `target`, each with its fix; empty when it can."""
    return [p.line() for p in sriov_problems(inspect_host(target, proc=proc, modules=modules), selectors)]

