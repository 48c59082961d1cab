"""The guest's side of a VF: does the guest have a driver for it, and what a failed start means.

A Linux guest can drive a VF when its kernel's modules.alias matches the VF's PCI modalias
(iavf for Intel E810/X710 VFs, ixgbevf for 82599/X540/X550 VFs, mlx5_core for ConnectX-4 and
later). The unikernels carry fixed driver sets: OSv has virtio-net, vmxnet3, Xen netfront and
ENA (AWS's own VF), rumprun's hw_virtio bake has only vioif (hw_generic adds wm, Intel PFs), so
their sriov cells with a lab NIC's VF are not runnable, and say so.
"""

from __future__ import annotations

import fnmatch
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import LaunchError, TestbedError
from .discovery import MODULES, SYSFS, VirtualFunction, read, pci_exists

if TYPE_CHECKING:
    from ...images.cache import Image

VF_DRIVERS = ("iavf", "ixgbevf", "mlx5_core")
# Linux names of the VF drivers each unikernel has an equivalent of, and its NIC drivers (for the reason).
UNIKERNEL_VF_DRIVERS: dict[str, frozenset[str]] = {"osv": frozenset({"ena"}), "rumprun": frozenset()}
UNIKERNEL_NIC_DRIVERS = {"osv": "virtio-net, vmxnet3, xen netfront, ena",
                         "rumprun": "vioif (hw_virtio; hw_generic adds wm for Intel PFs)"}
DEBIAN_FULL_KERNEL = "linux-image-amd64"


def vf_modalias(vf: VirtualFunction) -> str:
    """The VF's modalias as sysfs gives it, or one built from its ids (class: Ethernet controller)."""
    if vf.modalias:
        return vf.modalias
    v, d = vf.vendor.upper(), vf.device.upper()
    return f"pci:v0000{v}d0000{d}sv0000{v}sd00000000bc02sc00i00"


@lru_cache(maxsize=16)
def _aliases(modules_dir: Path) -> tuple[tuple[str, str], ...]:
    text = read(modules_dir / "modules.alias") or ""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "alias" and parts[1].startswith("pci:"):
            out.append((parts[1].upper(), parts[2]))
    return tuple(out)


def linux_driver_for(modalias: str, modules_dir: Path) -> str | None:
    """The module of the kernel at `modules_dir` (.../lib/modules/RELEASE) that binds `modalias`."""
    target = modalias.upper()
    for pattern, module in _aliases(modules_dir):
        if fnmatch.fnmatchcase(target, pattern):
            return module
    return None


def host_driver_name(vf: VirtualFunction, host_modules: Path | None = None) -> str | None:
    """The Linux driver for this VF: its driver now, or the running kernel's match when it sits on vfio-pci."""
    if vf.driver not in (None, "vfio-pci", "pci-stub"):
        return vf.driver
    modules = host_modules or MODULES / os.uname().release
    return linux_driver_for(vf_modalias(vf), modules)


def guest_vf_problem(guest: str, vf: VirtualFunction, *, guest_modules: Path | None = None,
                     host_modules: Path | None = None) -> str | None:
    """Why a `guest` (linux-vm | osv | rumprun) cannot drive `vf`; None when it can.
    For linux-vm pass the guest kernel's modules directory (.../lib/modules/RELEASE)."""
    name = host_driver_name(vf, host_modules)
    shown = f"{vf.pci_id}, {name or 'unknown driver'}"
    if guest in UNIKERNEL_VF_DRIVERS:
        if name in UNIKERNEL_VF_DRIVERS[guest]:
            return None
        return f"{guest} has no driver for VF {vf.pci_address} ({shown}); its NIC drivers: {UNIKERNEL_NIC_DRIVERS[guest]}"
    if guest_modules is None:
        raise ValueError("a Linux guest's VF support is decided by its kernel: pass guest_modules")
    if linux_driver_for(vf_modalias(vf), guest_modules) is not None:
        return None
    return (f"the guest kernel {guest_modules.name} has no driver for VF {vf.pci_address} ({shown}); "
            f"Debian's {DEBIAN_FULL_KERNEL} kernel has {', '.join(VF_DRIVERS)}")


def vf_modules_in(modules_dir: Path) -> tuple[str, ...]:
    """Which of VF_DRIVERS the kernel at `modules_dir` builds as modules."""
    from .discovery import module_names

    present = module_names(read(modules_dir / "modules.dep") or "")
    return tuple(m for m in VF_DRIVERS if m in present)


def sriov_guest_modules(kernel: "Image") -> tuple[str, ...]:
    """GUEST_MODULES plus the VF drivers (VF_DRIVERS) `kernel` has as modules.

    Debian's cloud kernel (6.1.0-*-cloud-amd64) builds ixgbevf (Intel 82599/X540/X550 VFs) and
    mlx5_core (ConnectX-4 and later) as modules but not iavf (Intel E810/X710 VFs; CONFIG_IAVF is
    unset); Debian's full kernel, linux-image-amd64, has all three. Only sriov cells pass these to
    guest_image(): virtio cells' initramfs and boot stay as they were."""
    from ...images.linux import GUEST_MODULES, kernel_release

    return GUEST_MODULES + vf_modules_in(kernel.file("modules") / kernel_release(kernel))


# --- libvirt ---------------------------------------------------------------------------------
def hostdev_start_error(error: BaseException | str, pci_addresses: list[str], sysfs: Path = SYSFS) -> TestbedError | None:
    """testbed's one line for a domain with VFs that libvirt would not start; None when the failure
    is not about the VFs (the caller keeps its own message)."""
    for pci in pci_addresses:
        if not pci_exists(sysfs, pci):
            return LaunchError(f"VF {pci}: PCI device does not exist on this host")
    message = " ".join(str(error).split())
    lowered = message.lower()
    if pci_addresses and ("passthrough" in lowered or "vfio" in lowered or "iommu" in lowered):
        return LaunchError(f"VF {pci_addresses[0]}: this host cannot pass PCI devices to guests ({message}); "
                           "run `testbed doctor` for the IOMMU and vfio-pci checks")
    return None


def hostdev_network_start_error(error: BaseException | str, network: str, pf: str,
                                sysfs: Path = SYSFS) -> TestbedError:
    """testbed's one line for a libvirt hostdev network over `pf` that would not start."""
    device = sysfs / "class" / "net" / pf / "device"
    if not (sysfs / "class" / "net" / pf).exists():
        return LaunchError(f"hostdev network {network}: PF {pf} does not exist on this host")
    if not (device / "sriov_totalvfs").exists():
        return LaunchError(f"hostdev network {network}: {pf} is not an SR-IOV PF (no sriov_totalvfs)")
    if (read(device / "sriov_numvfs") or "0") == "0":
        return LaunchError(f"hostdev network {network}: PF {pf} has no VFs enabled "
                           f"(fix: set `sriov: {{{pf}: N}}` for the host in the lab file and run `testbed provision`)")
    return LaunchError(f"hostdev network {network}: libvirt could not start it: {' '.join(str(error).split())}")
