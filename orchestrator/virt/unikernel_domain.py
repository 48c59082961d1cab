"""libvirt domain XML for unikernels (OSv, rumprun), built on virt/domain.py's ElementTree builder.

What a unikernel needs beyond the Linux guest's domain: no initrd; either direct kernel boot
(`<kernel>` + `<cmdline>`) or disk boot (`<boot dev='hd'/>`, the command line stored in the
disk); virtio-blk disks (OSv's root file system, rumprun's data images); and no VGA at all
(`<video><model type='none'/></video>`), so that rumprun writes its console to COM1, which
the serial file captures. Everything else (NIC, serial console file, pinning, accelerator
domain type, seclabel) is the linux-vm engineer's domain_element(), reused unchanged.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace

from .domain import DomainSpec, domain_element, to_xml

DISK_FORMATS = ("raw", "qcow2")


@dataclass
class Disk:
    """A virtio-blk disk: vda, vdb, ... in the order given."""

    path: str
    format: str = "qcow2"  # raw | qcow2
    readonly: bool = False
    serial: str | None = None

    def __post_init__(self) -> None:
        if self.format not in DISK_FORMATS:
            raise ValueError(f"disk format must be one of {', '.join(DISK_FORMATS)}, not {self.format!r}")


@dataclass
class UnikernelSpec:
    """A unikernel domain: the common parts in `base` (its kernel/cmdline are used for kernel boot)."""

    base: DomainSpec
    boot: str = "kernel"  # kernel: direct kernel boot; disk: BIOS boots the first disk
    disks: list[Disk] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.boot not in ("kernel", "disk"):
            raise ValueError(f"boot must be kernel or disk, not {self.boot!r}")
        if self.boot == "disk" and not self.disks:
            raise ValueError("boot: disk needs at least one disk")
        if self.boot == "kernel" and not self.base.kernel:
            raise ValueError("boot: kernel needs a kernel")


def _target(index: int) -> str:
    if index >= 26:
        raise ValueError("at most 26 disks")
    return "vd" + chr(ord("a") + index)


def unikernel_element(spec: UnikernelSpec) -> ET.Element:
    # domain_element() always writes kernel/initrd/cmdline; build with placeholders and adjust <os>.
    base = replace(spec.base, kernel=spec.base.kernel or "unused", initrd="unused")
    dom = domain_element(base)
    os_el = dom.find("os")
    assert os_el is not None, "domain_element always writes <os>"
    for tag in ("initrd",) if spec.boot == "kernel" else ("kernel", "initrd", "cmdline"):
        el = os_el.find(tag)
        if el is not None:
            os_el.remove(el)
    if spec.boot == "disk":
        ET.SubElement(os_el, "boot", {"dev": "hd"})
    devices = dom.find("devices")
    assert devices is not None, "domain_element always writes <devices>"
    # Disks first among the devices (libvirt's own order), after the optional <emulator>.
    at = 1 if devices.find("emulator") is not None else 0
    for i, disk in enumerate(spec.disks):
        el = ET.Element("disk", {"type": "file", "device": "disk"})
        ET.SubElement(el, "driver", {"name": "qemu", "type": disk.format})
        ET.SubElement(el, "source", {"file": disk.path})
        ET.SubElement(el, "target", {"dev": _target(i), "bus": "virtio"})
        if disk.readonly:
            ET.SubElement(el, "readonly")
        if disk.serial:
            ET.SubElement(el, "serial").text = disk.serial
        devices.insert(at + i, el)
    video = ET.SubElement(devices, "video")
    ET.SubElement(video, "model", {"type": "none"})
    return dom


def unikernel_xml(spec: UnikernelSpec) -> str:
    return to_xml(unikernel_element(spec))
