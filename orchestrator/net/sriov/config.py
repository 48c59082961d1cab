"""Changing VFs: their count per PF, their MAC/VLAN/spoof check/trust through the PF, their driver.

Every change goes through a System (system.py), so the sequences are tested on a fake tree:

* VF count (the SR-IOV operator's rule): sriov_numvfs only goes 0 -> N, so a different N is
  written as 0 then N; `sriov_drivers_autoprobe` is written first when asked (0 keeps new VFs
  off the host's VF driver, so nothing grabs them before vfio-pci does).
* VF settings: `ip link set dev PF vf N mac M vlan V spoofchk on|off trust on|off`; the values
  before the change are read from `ip -j link show dev PF` so release can put them back.
* Driver (dpdk-devbind's sequence): refuse a VF whose netdev carries addresses or routes;
  driver_override=vfio-pci, unbind, drivers_probe, clear the override. Every other device of the
  VF's IOMMU group must already be bound to vfio-pci (or be a bridge), else it is refused with
  the names of the devices in the way.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Callable

from ...errors import LaunchError, ResourceBusyError
from .discovery import driver_of, pci_device_dir, pci_exists, read
from .system import LocalSystem

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
ZERO_MAC = "00:00:00:00:00:00"
VFIO = "vfio-pci"


@dataclass
class VfSettings:
    """What the PF enforces on one VF; None = not set / leave as it is."""

    mac: str | None = None
    vlan: int | None = None  # 0 = untagged
    spoofchk: bool | None = None
    trust: bool | None = None

    def __post_init__(self) -> None:
        if self.mac is not None:
            self.mac = self.mac.lower()
            if not MAC_RE.match(self.mac):
                raise ValueError(f"bad MAC address {self.mac!r}")
        if self.vlan is not None and not 0 <= int(self.vlan) <= 4094:
            raise ValueError(f"VLAN {self.vlan} is outside 0-4094")

    def as_dict(self) -> dict:
        return asdict(self)

    def ip_args(self) -> list[str]:
        args: list[str] = []
        if self.mac is not None:
            args += ["mac", self.mac]
        if self.vlan is not None:
            args += ["vlan", str(int(self.vlan))]
        for name in ("spoofchk", "trust"):
            value = getattr(self, name)
            if value is not None:
                args += [name, "on" if value else "off"]
        return args

    def restoring(self, changed: "VfSettings") -> "VfSettings":
        """The subset of these (original) settings that `changed` touched; unknown originals fall
        back to the neutral value (no MAC, untagged)."""
        return VfSettings(
            mac=(self.mac or ZERO_MAC) if changed.mac is not None else None,
            vlan=(self.vlan or 0) if changed.vlan is not None else None,
            spoofchk=self.spoofchk if changed.spoofchk is not None else None,
            trust=self.trust if changed.trust is not None else None)


def read_vf_settings(system: LocalSystem, pf: str, index: int) -> VfSettings:
    """The PF's view of VF `index` (iproute2 prints `mac` before 5.x, `address` after)."""
    links = system.ip_json("link", "show", "dev", pf)
    for vf in (links[0].get("vfinfo_list") or []) if links else []:
        if int(vf.get("vf", -1)) != index:
            continue
        vlans = vf.get("vlan_list") or []
        vlan = vlans[0].get("vlan") if vlans else vf.get("vlan")
        mac = vf.get("address") or vf.get("mac")
        return VfSettings(mac=mac if mac and MAC_RE.match(mac.lower()) else None, vlan=int(vlan or 0),
                          spoofchk=vf.get("spoofchk"), trust=vf.get("trust"))
    raise LaunchError(f"ip link show dev {pf} lists no vf {index}; is {pf} its PF?")


def apply_vf_settings(system: LocalSystem, pf: str, index: int, settings: VfSettings) -> None:
    args = settings.ip_args()
    if args:
        system.ip("link", "set", "dev", pf, "vf", str(index), *args)


# --- VF count ------------------------------------------------------------------------------
def set_num_vfs(system: LocalSystem, pf_pci: str, count: int, *, autoprobe: bool | None = None,
                busy: Callable[[], list[str]] = lambda: []) -> bool:
    """Make PF `pf_pci` have `count` VFs (0 -> N). `busy()` lists leases that forbid removing the
    current VFs (a PF's VF count cannot change under a running guest). Returns True if changed."""
    device = pci_device_dir(system.sysfs, pf_pci)
    total = read(device / "sriov_totalvfs")
    if total is None:
        raise LaunchError(f"{pf_pci} is not an SR-IOV physical function (no sriov_totalvfs)")
    if not 0 <= count <= int(total):
        raise ValueError(f"{pf_pci}: VF count {count} is outside 0-{total}")
    if autoprobe is not None:
        system.write(device / "sriov_drivers_autoprobe", "1" if autoprobe else "0")
    current = int(read(device / "sriov_numvfs") or 0)
    if current == count:
        return False
    if current:
        holders = busy()
        if holders:
            raise ResourceBusyError(f"{pf_pci}: cannot change its VF count from {current} while VFs are leased "
                                    f"({'; '.join(holders)})")
        system.write(device / "sriov_numvfs", "0")
    if count:
        system.write(device / "sriov_numvfs", str(count))
    return True


# --- drivers -------------------------------------------------------------------------------
def netdev_in_use(system: LocalSystem, netdev: str) -> str | None:
    """Why the host itself uses `netdev` (an address beyond link-local, a route, a master), or None."""
    links = system.ip_json("-d", "addr", "show", "dev", netdev)
    if not links:
        return None
    link = links[0]
    if link.get("master"):
        return f"netdev {netdev} is enslaved to {link['master']}"
    addrs = [f"{a.get('local')}/{a.get('prefixlen')}" for a in link.get("addr_info") or [] if a.get("scope") != "link"]
    if addrs:
        return f"netdev {netdev} has address {', '.join(addrs)}"
    routes = system.ip_json("route", "show", "dev", netdev)
    if routes:
        return f"netdev {netdev} carries routes ({routes[0].get('dst', '?')})"
    return None


def group_blockers(system: LocalSystem, pci: str, target: str) -> list[str]:
    """Devices of `pci`'s IOMMU group that stop it from being bound to `target` (vfio-pci)."""
    if target != VFIO:
        return []
    device = pci_device_dir(system.sysfs, pci)
    group = device / "iommu_group"
    if not group.exists():
        return [f"{pci} has no IOMMU group (IOMMU off)"]
    out = []
    for peer in sorted((group / "devices").iterdir()):
        if peer.name == pci:
            continue
        drv = driver_of(peer)
        if drv != VFIO and not (read(peer / "class") or "").startswith("0x0604"):
            out.append(f"{peer.name} ({drv or 'no driver'})")
    return out


def bind_driver(system: LocalSystem, pci: str, target: str | None) -> None:
    """Bind `pci` to `target` (None: leave unbound) with driver_override; a no-op if already there."""
    device = pci_device_dir(system.sysfs, pci)
    current = driver_of(device)
    if current == target:
        return
    if target == VFIO and not (system.sysfs / "bus" / "pci" / "drivers" / VFIO).is_dir():
        system.modprobe(VFIO)
    blockers = group_blockers(system, pci, target or "")
    if blockers:
        raise LaunchError(f"VF {pci}: cannot bind to {target}: its IOMMU group also holds {', '.join(blockers)}, "
                          f"which must be bound to vfio-pci or be a bridge")
    system.write(device / "driver_override", target or "\n")
    try:
        if current is not None:
            system.write(device / "driver" / "unbind", pci)
        if target is not None:
            system.write(system.sysfs / "bus" / "pci" / "drivers_probe", pci)
    finally:
        system.write(device / "driver_override", "\n")  # clear: the device may take any driver again
    now = driver_of(device)
    if now != target:
        raise LaunchError(f"VF {pci}: bound to {now or 'no driver'} after asking for {target or 'none'}")


def restore_driver(system: LocalSystem, pci: str, original: str | None) -> None:
    """Put `pci` back on the driver it had (unbound stays unbound); a vanished device is fine."""
    if not pci_exists(system.sysfs, pci):
        return
    bind_driver(system, pci, original)

