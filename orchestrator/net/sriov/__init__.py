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

from .config import VfSettings, set_num_vfs
from .discovery import SYSFS, GroupPeer, HostSriov, PhysicalFunction, VirtualFunction, host_sriov, list_physical_functions
from .guest import guest_vf_problem, hostdev_network_start_error, hostdev_start_error, vf_modules_in
from .pool import LEDGER_KIND, VfLease, VfPool
from .preflight import SriovProblem, inspect_host, sriov_preflight, sriov_problems
from ...config.vf_selectors import VfSelector, parse_selectors
from .system import LocalSystem

__all__ = [
           "LEDGER_KIND",
           "SYSFS",
           "GroupPeer",
           "HostSriov",
           "LocalSystem",
           "PhysicalFunction",
           "SriovProblem",
           "VfLease",
           "VfPool",
           "VfSelector",
           "VfSettings",
           "VirtualFunction",
           "guest_vf_problem",
           "host_sriov",
           "hostdev_network_start_error",
           "hostdev_start_error",
           "inspect_host",
           "list_physical_functions",
           "parse_selectors",
           "set_num_vfs",
           "sriov_preflight",
           "sriov_problems",
           "vf_modules_in",
]
