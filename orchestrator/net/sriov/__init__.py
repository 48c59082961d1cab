"""SR-IOV: VF discovery, selectors, configuration, vfio binding, crash-safe leases, preflight.

The API platforms use:

    pool = VfPool.from_host(Path("/sys"), selectors=[VfSelector(pf="ens1f0")], ledger=ledger)
    with pool.lease(owner=domain_name, mac=attachment.mac) as lease:   # or lease.release()
        nic = SriovNic(lease.pci_address, attachment.mac)
        facts = lease.provenance()

Modules: discovery (sysfs, read-only), selectors, config (VF count, ip link vf settings,
driver binding), pool (locks, ledger, records, reconciliation), preflight (why not here),
provenance, guest (guest driver support, libvirt start errors), system (the injectable door
to sysfs writes and commands), fake (a kernel-like sysfs tree for tests).
"""

from __future__ import annotations

from pathlib import Path

from ...ledger import Ledger
from .config import VfSettings, set_num_vfs
from .discovery import SYSFS, GroupPeer, HostSriov, PhysicalFunction, VirtualFunction, host_sriov, list_physical_functions
from .guest import guest_vf_problem, hostdev_network_start_error, hostdev_start_error, vf_modules_in
from .pool import LEDGER_KIND, VfLease, VfPool
from .preflight import SriovProblem, inspect_host, sriov_preflight, sriov_problems
from ...config.vf_selectors import VfSelector, parse_selectors
from .system import LocalSystem

__all__ = ["SYSFS", "GroupPeer", "HostSriov", "LEDGER_KIND", "LocalSystem", "PhysicalFunction", "SriovProblem",
           "VfAllocator", "VfLease", "VfPool", "VfSelector", "VfSettings", "VirtualFunction", "guest_vf_problem",
           "host_sriov", "hostdev_network_start_error", "hostdev_start_error", "inspect_host", "list_physical_functions", "parse_selectors",
           "set_num_vfs", "sriov_preflight", "sriov_problems", "vf_modules_in"]


class VfAllocator:
    """The allocate/release shape platforms/libvirt_guest.py calls today, over VfPool; goes away
    when the platform takes a VfPool itself."""

    def __init__(self, pf: str, *, sysfs: Path = SYSFS, ledger: Ledger | None = None):
        self.pool = VfPool.from_host(sysfs, [VfSelector(pf=pf)], ledger)
        self._leases: dict[str, VfLease] = {}

    def allocate(self, mac: str, owner: str = "") -> VirtualFunction:
        lease = self.pool.lease(owner=owner, mac=mac)
        self._leases[lease.pci_address] = lease
        return lease.vf

    def release(self, vf: VirtualFunction) -> None:
        lease = self._leases.pop(vf.pci_address, None)
        if lease is not None:
            lease.release()
