"""What every sample of an sriov cell records about its VF: PF, VF PCI address, drivers, NIC model,
firmware version where readable, MAC/VLAN/spoof check/trust, NUMA node and IOMMU group."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from .config import VfSettings
from .discovery import PhysicalFunction, VirtualFunction
from .guest import host_driver_name
from .system import LocalSystem

PCI_IDS = (Path("/usr/share/misc/pci.ids"), Path("/usr/share/hwdata/pci.ids"))  # Debian's pci.ids package


@lru_cache(maxsize=64)
def pci_name(vendor: str, device: str, files: tuple[Path, ...] = PCI_IDS) -> str | None:
    """'Intel Corporation Ethernet Controller E810-C for QSFP' from pci.ids, None when unknown."""
    for path in files:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        vendor_name = None
        for line in lines:
            if not line or line.startswith("#"):
                continue
            if not line.startswith("\t"):
                if vendor_name is not None:
                    break  # past our vendor's block
                if line[:4].lower() == vendor:
                    vendor_name = line[4:].strip()
            elif vendor_name is not None and not line.startswith("\t\t") and line[1:5].lower() == device:
                return f"{vendor_name} {line[5:].strip()}"
        if vendor_name is not None:
            return vendor_name
    return None


def vf_provenance(system: LocalSystem, pf: PhysicalFunction, vf: VirtualFunction, settings: VfSettings,
                  host_driver: str | None) -> dict[str, Any]:
    """`host_driver`: what the VF is bound to on the host when leased (libvirt's managed='yes' moves
    it to vfio-pci while the guest runs); sriov_vf_driver is the Linux driver for the VF itself
    (what a Linux guest loads)."""
    info = system.ethtool_info(pf.name) if pf.name != pf.pci_address else {}
    firmware = info.get("firmware-version")
    return {
        "sriov_pf": pf.name, "sriov_pf_pci": pf.pci_address, "sriov_pf_driver": pf.driver,
        "sriov_pf_driver_version": info.get("version"), "sriov_firmware": None if firmware in (None, "N/A") else firmware,
        "sriov_nic": pf.pci_id, "sriov_nic_model": pci_name(pf.vendor, pf.device) or pf.pci_id,
        "sriov_pf_link": pf.link, "sriov_pf_speed_mbps": pf.speed_mbps,
        "sriov_vf_pci": vf.pci_address, "sriov_vf_index": vf.index, "sriov_vf_id": vf.pci_id,
        "sriov_vf_host_driver": host_driver, "sriov_vf_driver": host_driver_name(vf, system.kernel_modules()),
        "sriov_numa_node": vf.numa_node, "sriov_iommu_group": vf.iommu_group,
        "sriov_mac": settings.mac, "sriov_vlan": settings.vlan, "sriov_spoofchk": settings.spoofchk,
        "sriov_trust": settings.trust,
    }

