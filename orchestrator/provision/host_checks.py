"""Lab-host checks for `testbed doctor [HOST]`: KVM, IOMMU, SR-IOV, hugepages, CPU governor,
disk, cores/memory and the extra tools lab runs need.

Every check reads the host through the Host protocol (host.run / host.read_text), so the same
checks run here and on a lab host over SSH. The /sys, /proc and /dev roots are parameters so
unit tests can point them at a fake tree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from .. import paths
from ..checks import FAIL, PASS, WARN, Check, DoctorCheck
from ..errors import TestbedError
from ..hosts.base import Host
from ..tools import tool_version

SYS, PROC, DEV = "/sys", "/proc", "/dev"

# Nice to have: warn when missing.
OPTIONAL_TOOLS: list[tuple[str, list[list[str]], str, str]] = [
    ("memcached load generator", [["memcaslap", "--version"], ["memaslap", "--version"],
                                  ["memtier_benchmark", "--version"], ["memcslap", "--version"]],
     "libmemcached-tools", "memcached benchmarks"),
    ("sshd", [["sshd", "-V"]], "openssh-server", "reaching this host as a lab host"),
]


def _read(host: Host, path: str) -> str | None:
    try:
        return host.read_text(path, timeout=10)
    except OSError:  # a missing file is an answer, not a crash
        return None


def _exists(host: Host, path: str, kind: str = "-e") -> bool:
    return host.run(["test", kind, path], timeout=10, check=False).ok


# --- KVM --------------------------------------------------------------------------------
def kvm_checks(host: Host, dev: str = DEV) -> list[Check]:
    node = f"{dev}/kvm"
    if _exists(host, node, "-c"):
        return [Check("kvm device", PASS, f"{node} present (whether it is usable is decided by the VM probe)")]
    return [Check("kvm device", FAIL, f"{node} missing: VMs would run without acceleration (TCG)",
                  "enable VT-x/AMD-V in the firmware (or nested virtualization on a cloud VM); "
                  "modprobe kvm_intel or kvm_amd")]


# --- IOMMU ------------------------------------------------------------------------------
IOMMU_ARGS = ("intel_iommu=on", "amd_iommu=on", "iommu=pt")


def iommu_checks(host: Host, proc: str = PROC, sys: str = SYS) -> list[Check]:
    cmdline = (_read(host, f"{proc}/cmdline") or "").split()
    args = [a for a in cmdline if a in IOMMU_ARGS or a.startswith(("intel_iommu=", "amd_iommu=", "iommu="))]
    res = host.run(["ls", "-1", f"{sys}/kernel/iommu_groups"], timeout=10, check=False)
    groups = len([line for line in res.stdout.split() if line.strip()]) if res.ok else 0
    detail = f"{groups} IOMMU groups; kernel arguments: {' '.join(args) or 'none'}"
    if groups > 0:
        return [Check("iommu", PASS, detail)]
    return [Check("iommu", WARN, detail + " (needed only for SR-IOV/VFIO passthrough)",
                  "set `iommu: true` for the host in the lab file, run `testbed provision`, then reboot "
                  "(adds intel_iommu=on/amd_iommu=on iommu=pt)")]


# --- SR-IOV ---------------------------------------------------------------------------
def _target(host: Host, sys: str) -> "Host | Path":
    from ..hosts.local import LocalHost

    return Path(sys) if isinstance(host, LocalHost) else host


def sriov_checks(host: Host, sys: str = SYS, proc: str = PROC, modules: str = "/lib/modules") -> list[Check]:
    """Per PF: VFs configured; then each reason SR-IOV cannot be used here that the IOMMU check
    does not already give (VFs not isolated, vfio-pci missing), one fix each."""
    from ..net.sriov import inspect_host, sriov_problems

    snap = inspect_host(_target(host, sys), sys, proc, modules)
    if not snap.pfs:
        return [Check("sr-iov", WARN, "no SR-IOV capable NIC (needed only for the sriov NIC kind)",
                      "use a NIC with SR-IOV (e.g. Intel E810/X710, Mellanox ConnectX) and enable SR-IOV in firmware")]
    out = []
    for pf in snap.pfs:
        detail = f"{pf.name} ({pf.driver or 'no driver'}): {pf.num_vfs}/{pf.total_vfs} VFs configured"
        shared = [vf for vf in pf.vfs if snap.iommu_groups and vf.isolation_problem()]
        if shared:
            detail += f", {len(shared)} not alone in their IOMMU group"
        if pf.num_vfs == 0:
            out.append(Check(f"sr-iov {pf.name}", WARN, detail,
                             f"set `sriov: {{{pf.name}: N}}` for the host in the lab file and run `testbed provision`"))
        else:
            out.append(Check(f"sr-iov {pf.name}", PASS, detail))
    problems = sriov_problems(snap)
    for p in problems:
        if p.key in ("isolation", "vfio-pci"):
            out.append(Check(f"sr-iov {p.key}", WARN, p.what, p.fix))
    if snap.vfio_pci != "missing":
        how = {"loaded": "loaded", "builtin": "built into the kernel",
               "module": "available as a module (libvirt loads it when a VF is assigned)"}[snap.vfio_pci]
        out.append(Check("vfio-pci", PASS, how))
    if problems:
        out.append(Check("sr-iov usable", WARN, "no: " + "; ".join(p.what for p in problems),
                         "see the fixes of the checks above"))
    else:
        vfs = sum(len(pf.vfs) for pf in snap.pfs)
        out.append(Check("sr-iov usable", PASS, f"{vfs} VFs on {', '.join(pf.name for pf in snap.pfs if pf.vfs)}"))
    return out


# --- hugepages --------------------------------------------------------------------------
def hugepage_checks(host: Host, proc: str = PROC) -> list[Check]:
    meminfo = _read(host, f"{proc}/meminfo") or ""
    values = dict(re.findall(r"^(HugePages_Total|HugePages_Free|Hugepagesize):\s+(\d+)", meminfo, re.M))
    if "HugePages_Total" not in values:
        return [Check("hugepages", WARN, "no hugepage information in /proc/meminfo")]
    total, free = int(values["HugePages_Total"]), int(values.get("HugePages_Free", 0))
    size_kb = int(values.get("Hugepagesize", 0))
    detail = f"{total} total, {free} free, {size_kb // 1024 if size_kb >= 1024 else size_kb} " \
             f"{'MiB' if size_kb >= 1024 else 'KiB'} each"
    if total == 0:
        return [Check("hugepages", WARN, detail + " (only runs that ask for hugepages need them)",
                      "set `hugepages: N` for the host in the lab file and run `testbed provision`")]
    return [Check("hugepages", PASS, detail)]


# --- CPU governor -----------------------------------------------------------------------
def governor_checks(host: Host, sys: str = SYS) -> list[Check]:
    gov = _read(host, f"{sys}/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if gov is None:
        return [Check("cpu governor", WARN, "no cpufreq on this host (virtual machine or no driver); "
                      "CPU frequency is not under testbed's control")]
    gov = gov.strip()
    if gov == "performance":
        return [Check("cpu governor", PASS, gov)]
    return [Check("cpu governor", WARN, f"{gov} (frequency scaling adds noise to measurements)",
                  "run `testbed provision` (sets the performance governor)")]


# --- disk, cores, memory ----------------------------------------------------------------
_DF_SCRIPT = 'd=$1; while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done; df -Pk "$d"'


def disk_checks(host: Host, home: str | None = None, warn_gb: float = 10, fail_gb: float = 2) -> list[Check]:
    home = home or str(paths.home())
    res = host.run(["sh", "-c", _DF_SCRIPT, "sh", home], timeout=20, check=False)
    lines = res.stdout.strip().splitlines()
    if not res.ok or len(lines) < 2:
        return [Check("disk", WARN, f"cannot read free space for {home}: {res.tail()}")]
    fields = lines[-1].split()
    free_gb = int(fields[3]) / 1024 / 1024
    detail = f"{free_gb:.1f} GiB free on {fields[5]} (TESTBED_HOME {home})"
    if free_gb < fail_gb:
        return [Check("disk", FAIL, detail, "free space or point TESTBED_HOME at a larger filesystem")]
    if free_gb < warn_gb:
        return [Check("disk", WARN, detail, "images and results need space; free some or move TESTBED_HOME")]
    return [Check("disk", PASS, detail)]


def cpu_memory_checks(host: Host, proc: str = PROC) -> list[Check]:
    nproc = host.run(["nproc"], timeout=10, check=False).stdout.strip()
    cores = int(nproc) if nproc.isdigit() else 0
    meminfo = _read(host, f"{proc}/meminfo") or ""
    m = re.search(r"^MemTotal:\s+(\d+)", meminfo, re.M)
    mem_mb = int(m.group(1)) // 1024 if m else 0
    out = []
    if cores >= 2:
        out.append(Check("cpu cores", PASS, f"{cores} usable"))
    else:
        out.append(Check("cpu cores", WARN, f"{cores} usable: server and load generator will share a CPU",
                         "use a host with at least 2 cores, or place the load generator on another lab host"))
    if mem_mb >= 2048:
        out.append(Check("memory", PASS, f"{mem_mb} MiB"))
    else:
        out.append(Check("memory", WARN, f"{mem_mb} MiB: VMs with more than a few hundred MiB will not fit"))
    return out


# --- optional tools ---------------------------------------------------------------------
def optional_tool_checks(host: Host) -> list[Check]:
    out = []
    for label, candidates, package, purpose in OPTIONAL_TOOLS:
        for argv in candidates:
            version = tool_version(host, argv)
            if version is not None:
                out.append(Check(f"tool {label}", PASS, f"{argv[0]} {version}"))
                break
        else:
            out.append(Check(f"tool {label}", WARN, f"missing (needed for {purpose})", f"apt-get install {package}"))
    if host.is_local:  # the controller drives provisioning
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as package_version

        try:
            out.append(Check("tool ansible-runner", PASS, package_version("ansible-runner")))
        except PackageNotFoundError:
            out.append(Check("tool ansible-runner", WARN, "missing: `testbed provision` will not work",
                             "pip install ansible-runner ansible-core in testbed's environment"))
    return out


# --- registration -----------------------------------------------------------------------
class LabHostCheck(DoctorCheck, kind="lab-host"):
    order = 20

    def run(self, host: Host) -> Iterable[Check]:
        for fn in (kvm_checks, iommu_checks, sriov_checks, hugepage_checks, governor_checks, disk_checks,
                   cpu_memory_checks, optional_tool_checks):
            try:
                yield from fn(host)
            except (OSError, ValueError) as exc:  # one broken check must not hide the others
                yield Check(fn.__name__.removesuffix("_checks").replace("_", " "), FAIL, f"check failed to run: {exc}")
            except TestbedError as exc:
                if getattr(exc, "ends_session", False):
                    raise  # the SSH connection is gone: every other check would fail the same way
                yield Check(fn.__name__.removesuffix("_checks").replace("_", " "), FAIL, f"check failed to run: {exc}")
