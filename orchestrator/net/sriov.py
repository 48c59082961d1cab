"""SR-IOV physical and virtual functions, read from sysfs.

Everything takes a `sysfs` root so tests can build a fake tree (this machine has no
SR-IOV NIC); on a lab host the root is /sys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SYSFS = Path("/sys")


@dataclass
class VirtualFunction:
    pf: str  # the PF's netdev name
    index: int
    pci_address: str  # e.g. 0000:3b:02.1
    netdev: str | None  # VF netdev name while bound to the host's VF driver
    driver: str | None  # e.g. iavf, mlx5_core, vfio-pci


@dataclass
class PhysicalFunction:
    name: str
    pci_address: str
    driver: str | None
    total_vfs: int
    num_vfs: int
    vfs: list[VirtualFunction] = field(default_factory=list)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _driver(device: Path) -> str | None:
    link = device / "driver"
    return link.resolve().name if link.exists() else None


def list_physical_functions(sysfs: Path = SYSFS) -> list[PhysicalFunction]:
    """Every network device that exposes sriov_totalvfs, with its VFs."""
    pfs = []
    net = sysfs / "class" / "net"
    if not net.exists():
        return pfs
    for iface in sorted(net.iterdir()):
        device = iface / "device"
        total = _read(device / "sriov_totalvfs")
        if total is None:
            continue
        pf = PhysicalFunction(iface.name, device.resolve().name, _driver(device), int(total),
                              int(_read(device / "sriov_numvfs") or 0))
        for virtfn in sorted(device.glob("virtfn*"), key=lambda p: int(p.name[6:])):
            vf_dev = virtfn.resolve()
            netdevs = sorted(p.name for p in (vf_dev / "net").iterdir()) if (vf_dev / "net").exists() else []
            pf.vfs.append(VirtualFunction(iface.name, int(virtfn.name[6:]), vf_dev.name,
                                          netdevs[0] if netdevs else None, _driver(vf_dev)))
        pfs.append(pf)
    return pfs
