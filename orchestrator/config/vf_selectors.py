"""Which VFs a pool may hand out: selectors by PF (with VF index ranges), vendor/device and driver.

Semantics follow the Kubernetes SR-IOV device plugin: within one selector every given field must
match; a VF is in the pool when any selector matches it. An empty list selects every VF.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the lab file validates selectors; matching them is the SR-IOV pool's business
    from ..net.sriov.discovery import PhysicalFunction, VirtualFunction

PCI_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
IFACE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
HEX4_RE = re.compile(r"^[0-9a-f]{4}$")
DRIVER_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def parse_ranges(text: str) -> frozenset[int]:
    """'0-3,6' -> {0, 1, 2, 3, 6}; ValueError with the fix for anything else."""
    out: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"{text!r} is not a VF range; write indices like '0-3' or '0-3,6'")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo or hi > 255:
            raise ValueError(f"{part!r}: a VF range goes low-high within 0-255")
        out.update(range(lo, hi + 1))
    return frozenset(out)


def hex4(value: str | int, what: str) -> str:
    v = str(value).lower().removeprefix("0x")
    if not HEX4_RE.match(v):
        raise ValueError(f"{what} {value!r} must be 4 hex digits as `lspci -n` shows them, quoted, e.g. '8086'")
    return v


def check_pf(value: str) -> str:
    if not (IFACE_RE.match(str(value)) or PCI_RE.match(str(value).lower())):
        raise ValueError(f"pf {value!r} is neither a network interface name nor a PCI address like 0000:3b:00.0")
    return str(value)


def check_driver(value: str) -> str:
    if not DRIVER_RE.match(str(value)):
        raise ValueError(f"driver {value!r} is not a kernel driver name (e.g. iavf, vfio-pci)")
    return str(value)


FIELDS = ("pf", "vfs", "vendor", "device", "driver")


@dataclass(frozen=True)
class VfSelector:
    pf: str | None = None  # PF netdev name (ens1f0) or PCI address (0000:3b:00.0)
    vfs: frozenset[int] | None = None  # VF indices on that PF
    vendor: str | None = None  # the VF's PCI vendor id, 4 hex digits
    device: str | None = None  # the VF's PCI device id
    driver: str | None = None  # the VF's current host driver (iavf, vfio-pci, ...)
    describe: str = field(default="", compare=False)

    @classmethod
    def parse(cls, data: dict) -> "VfSelector":
        """From the lab file's mapping; ValueError naming the field and the fix."""
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown selector field(s) {', '.join(sorted(unknown))}; use {', '.join(FIELDS)}")
        data = {k: v for k, v in data.items() if v is not None}
        if not data:
            raise ValueError(f"an empty selector would match every VF; give at least one of {', '.join(FIELDS)}")
        if "vfs" in data and "pf" not in data:
            raise ValueError("vfs are indices on one PF; give pf too")
        sel = cls(pf=check_pf(data["pf"]) if "pf" in data else None,
                  vfs=parse_ranges(str(data["vfs"])) if "vfs" in data else None,
                  vendor=hex4(data["vendor"], "vendor") if "vendor" in data else None,
                  device=hex4(data["device"], "device") if "device" in data else None,
                  driver=check_driver(data["driver"]) if "driver" in data else None)
        object.__setattr__(sel, "describe", " ".join(f"{k}={v}" for k, v in data.items()))
        return sel

    def matches(self, pf: PhysicalFunction, vf: VirtualFunction) -> bool:
        return ((self.pf is None or self.pf in (pf.name, pf.pci_address))
                and (self.vfs is None or vf.index in self.vfs)
                and (self.vendor is None or self.vendor == vf.vendor)
                and (self.device is None or self.device == vf.device)
                and (self.driver is None or self.driver == vf.driver))

    def __str__(self) -> str:
        return self.describe or ("pf=" + self.pf if self.pf else "any VF")


def selected(pfs: list[PhysicalFunction], selectors: list[VfSelector]) -> list[tuple[PhysicalFunction, VirtualFunction]]:
    """(pf, vf) pairs any selector matches, in PF then VF order; every VF when there are no selectors."""
    return [(pf, vf) for pf in pfs for vf in pf.vfs if not selectors or any(s.matches(pf, vf) for s in selectors)]


def parse_selectors(items: list[dict] | None) -> list[VfSelector]:
    return [VfSelector.parse(dict(item)) for item in items or []]
