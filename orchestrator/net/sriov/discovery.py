"""SR-IOV physical and virtual functions as sysfs shows them; read-only.

Self-contained on purpose (standard library only, no package imports): `testbed doctor HOST`
sends this file's source to a lab host's python3 and reads back `snapshot()` as JSON, so a
remote host is inspected by the same code in one round trip. Every function takes the sysfs
root (and /proc, /lib/modules roots) so tests point it at a tree they build.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

SYSFS = Path("/sys")
PROC = Path("/proc")
MODULES = Path("/lib/modules")
IOMMU_ARG_PREFIXES = ("intel_iommu=", "amd_iommu=", "iommu=")
# Drivers a device may have while another device of its IOMMU group is given to a guest
# (the kernel's VFIO "viable group" rule): VFIO itself, the stub, or none.
VIABLE_DRIVERS = ("vfio-pci", "pci-stub", None)


@dataclass
class GroupPeer:
    """Another device in a VF's IOMMU group."""

    pci_address: str
    driver: str | None
    bridge: bool  # PCI-to-PCI bridges (class 0x0604) do not stop a group from being assigned


@dataclass
class VirtualFunction:
    pf: str  # the PF's netdev name (its PCI address when it has no netdev)
    index: int
    pci_address: str  # e.g. 0000:3b:02.1
    netdev: str | None  # while bound to the host's VF driver (iavf, ixgbevf, mlx5_core)
    driver: str | None  # e.g. iavf, vfio-pci; None when unbound
    vendor: str = ""  # 4 hex digits, e.g. 8086
    device: str = ""  # e.g. 1889
    numa_node: int | None = None
    iommu_group: int | None = None
    group_peers: list[GroupPeer] = field(default_factory=list)
    modalias: str | None = None
    link: str | None = None  # operstate of its netdev
    pf_pci: str = ""
    driver_override: str | None = None

    @property
    def pci_id(self) -> str:
        return f"{self.vendor}:{self.device}"

    def isolation_problem(self) -> str | None:
        """Why this VF cannot go to a guest alone (None when its IOMMU group allows it)."""
        if self.iommu_group is None:
            return f"VF {self.pci_address} has no IOMMU group (the IOMMU is off)"
        blockers = [p for p in self.group_peers if not p.bridge and p.driver not in VIABLE_DRIVERS]
        if not blockers:
            return None
        names = ", ".join(f"{p.pci_address} ({p.driver})" for p in blockers)
        return (f"VF {self.pci_address} is not isolated: IOMMU group {self.iommu_group} also holds {names}, "
                f"which must be bound to vfio-pci or be a bridge")


@dataclass
class PhysicalFunction:
    name: str
    pci_address: str
    driver: str | None
    total_vfs: int
    num_vfs: int
    vendor: str = ""
    device: str = ""
    numa_node: int | None = None
    iommu_group: int | None = None
    drivers_autoprobe: bool | None = None
    link: str | None = None  # operstate
    speed_mbps: int | None = None
    vfs: list[VirtualFunction] = field(default_factory=list)

    @property
    def pci_id(self) -> str:
        return f"{self.vendor}:{self.device}"


@dataclass
class HostSriov:
    """Everything SR-IOV needs to know about one host."""

    pfs: list[PhysicalFunction]
    iommu_groups: int
    iommu_args: list[str]  # IOMMU arguments on the kernel command line
    vfio_pci: str  # "loaded" | "module" (present, not loaded) | "builtin" | "missing"
    kernel: str | None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "HostSriov":
        data = json.loads(text)
        pfs = []
        for p in data.pop("pfs"):
            vfs = [VirtualFunction(**{**v, "group_peers": [GroupPeer(**g) for g in v["group_peers"]]})
                   for v in p.pop("vfs")]
            pfs.append(PhysicalFunction(**p, vfs=vfs))
        return cls(pfs=pfs, **data)


# --- sysfs reading ------------------------------------------------------------------------
def read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # absent, or a sysfs attribute the driver refuses (speed of a down link)
        return None


def link_name(path: Path) -> str | None:
    """The last component of a symlink's target (a driver, an IOMMU group), None if no link."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def _hex_id(path: Path) -> str:
    value = read(path) or ""
    return value[2:].lower() if value.startswith("0x") else value.lower()


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _numa(device: Path) -> int | None:
    node = _int(read(device / "numa_node"))
    return node if node is not None and node >= 0 else None


def _netdevs(device: Path) -> list[str]:
    try:
        return sorted(os.listdir(device / "net"))
    except OSError:
        return []


def driver_of(device: Path) -> str | None:
    return link_name(device / "driver")


def _override(device: Path) -> str | None:
    value = read(device / "driver_override")
    return None if value in (None, "", "(null)") else value


def pci_device_dir(sysfs: Path, pci_address: str) -> Path:
    return sysfs / "bus" / "pci" / "devices" / pci_address


def pci_exists(sysfs: Path, pci_address: str) -> bool:
    return pci_device_dir(sysfs, pci_address).exists()


def _group_peers(sysfs: Path, pci_address: str, group: int | None) -> list[GroupPeer]:
    if group is None:
        return []
    members = sysfs / "kernel" / "iommu_groups" / str(group) / "devices"
    try:
        names = sorted(os.listdir(members))
    except OSError:
        return []
    peers = []
    for name in names:
        if name == pci_address:
            continue
        dev = members / name
        peers.append(GroupPeer(name, driver_of(dev), (read(dev / "class") or "").startswith("0x0604")))
    return peers


def virtual_function(sysfs: Path, pf_name: str, pf_pci: str, index: int, device: Path) -> VirtualFunction:
    pci = device.name
    netdevs = _netdevs(device)
    group = _int(link_name(device / "iommu_group"))
    return VirtualFunction(
        pf=pf_name, index=index, pci_address=pci, netdev=netdevs[0] if netdevs else None, driver=driver_of(device),
        vendor=_hex_id(device / "vendor"), device=_hex_id(device / "device"), numa_node=_numa(device),
        iommu_group=group, group_peers=_group_peers(sysfs, pci, group), modalias=read(device / "modalias"),
        link=read(device / "net" / netdevs[0] / "operstate") if netdevs else None, pf_pci=pf_pci,
        driver_override=_override(device))


def _candidate_devices(sysfs: Path) -> list[Path]:
    """PCI device directories, from bus/pci/devices and from the network class (resolved, deduplicated)."""
    seen: dict[str, Path] = {}
    bus = sysfs / "bus" / "pci" / "devices"
    for parent, pattern in ((bus, "*"), (sysfs / "class" / "net", "*/device")):
        if parent.is_dir():
            for entry in parent.glob(pattern):
                real = entry.resolve()
                seen.setdefault(real.name, real)
    return [seen[k] for k in sorted(seen)]


def _virtfn_index(name: str) -> int:
    return int(name[len("virtfn"):])


def physical_function(sysfs: Path, device: Path) -> PhysicalFunction | None:
    total = _int(read(device / "sriov_totalvfs"))
    if total is None:
        return None
    netdevs = _netdevs(device)
    name = netdevs[0] if netdevs else device.name
    autoprobe = read(device / "sriov_drivers_autoprobe")
    pf = PhysicalFunction(
        name=name, pci_address=device.name, driver=driver_of(device), total_vfs=total,
        num_vfs=_int(read(device / "sriov_numvfs")) or 0, vendor=_hex_id(device / "vendor"),
        device=_hex_id(device / "device"), numa_node=_numa(device),
        iommu_group=_int(link_name(device / "iommu_group")),
        drivers_autoprobe=None if autoprobe is None else autoprobe == "1",
        link=read(device / "net" / name / "operstate") if netdevs else None,
        speed_mbps=_positive(_int(read(device / "net" / name / "speed"))) if netdevs else None)
    for virtfn in sorted(device.glob("virtfn*"), key=lambda p: _virtfn_index(p.name)):
        pf.vfs.append(virtual_function(sysfs, name, device.name, _virtfn_index(virtfn.name), virtfn.resolve()))
    return pf


def _positive(value: int | None) -> int | None:
    return value if value is not None and value > 0 else None


def list_physical_functions(sysfs: Path = SYSFS) -> list[PhysicalFunction]:
    """Every PCI device that exposes sriov_totalvfs, with its VFs, sorted by PF name."""
    pfs = [pf for dev in _candidate_devices(sysfs) if (pf := physical_function(sysfs, dev)) is not None]
    return sorted(pfs, key=lambda p: p.name)


def module_names(index_text: str) -> set[str]:
    """Module names in a modules.dep or modules.builtin text ("kernel/.../vfio-pci.ko.xz: ..." -> vfio_pci)."""
    return {os.path.basename(line.split(":", 1)[0]).split(".ko")[0].replace("-", "_")
            for line in index_text.splitlines() if line.strip()}


def vfio_pci_state(sysfs: Path, modules: Path, kernel: str | None) -> str:
    if (sysfs / "bus" / "pci" / "drivers" / "vfio-pci").is_dir():
        return "loaded"
    if kernel:
        for index, state in (("modules.builtin", "builtin"), ("modules.dep", "module")):
            if "vfio_pci" in module_names(read(modules / kernel / index) or ""):
                return state
    return "missing"


def host_sriov(sysfs: Path = SYSFS, proc: Path = PROC, modules: Path = MODULES) -> HostSriov:
    try:
        groups = len(os.listdir(sysfs / "kernel" / "iommu_groups"))
    except OSError:
        groups = 0
    cmdline = (read(proc / "cmdline") or "").split()
    kernel = read(proc / "sys" / "kernel" / "osrelease")
    return HostSriov(pfs=list_physical_functions(sysfs), iommu_groups=groups,
                     iommu_args=[a for a in cmdline if a.startswith(IOMMU_ARG_PREFIXES)],
                     vfio_pci=vfio_pci_state(sysfs, modules, kernel), kernel=kernel)


def main(argv: list[str]) -> None:
    """`python3 - SYSFS PROC MODULES` on a lab host: print host_sriov() as JSON."""
    defaults = [str(SYSFS), str(PROC), str(MODULES)]
    sysfs, proc, modules = (Path(a) for a in (argv + defaults[len(argv):])[:3])
    sys.stdout.write(host_sriov(sysfs, proc, modules).to_json() + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
