"""The lab network of a run whose server is placed on a lab host: the host's experiment link.

A lab host has a direct link to the load generator's host (the papers' 10GbE back-to-back cable);
its interface on that link carries `lab_address` (lab file), and the suite's `lab.subnet` is that
link's subnet. Instances join the link itself, every command going through the Host:

    host_interface(label)  the host's own address on the link (native: a plain host process)
    namespace(label)       a fresh namespace on the host whose eth0 is a macvlan (bridge mode) of the
                           experiment interface, with an address of its own from the subnet
                           (runc, gVisor: the container's or sandbox's network)
    bridge_port()          an address + MAC for a guest whose virtio NIC libvirt puts on a macvtap
                           (bridge mode) of the experiment interface (`<interface type='direct'>`)

macvlan/macvtap in bridge mode are the kernel's bridge over the experiment interface: frames for an
instance's MAC are handed to it, instances reach each other and the wire, and the interface keeps
its address and configuration, which testbed never changes (no address moved to a bridge, nothing
to restore after a crash: a macvlan goes with its namespace, a macvtap with its domain). An
instance cannot reach the lab host's own lab_address (macvlan isolates the lower device); the load
comes from the other host. Instance addresses are taken from the subnet from .10 up, skipping every
lab_address in the lab file: keep that range free on the link. SR-IOV VFs on a lab host and taps
for VMMs testbed runs itself (microvm) are not offered here yet.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any, Callable, Iterable

from ..enums import NicKind
from ..errors import ConfigError, HostError, LaunchError, NotRunnableError, ResourceBusyError, TestbedError
from ..hosts.base import Host
from ..ledger import Ledger
from .labnet import AddressPool, Attachment, link_label, random_mac

log = logging.getLogger(__name__)

IP_TIMEOUT = 30

# One round trip per namespace: $1 namespace, $2 experiment interface, $3 MAC, $4 ADDR/PREFIX. The
# macvlan is made inside the namespace (never exists beside the host's own interfaces); IPv6 is off
# before it appears, so it sends nothing of its own on the link.
ADD_NAMESPACE = """set -e
ip netns add "$1"
ip -n "$1" link set lo up
ip netns exec "$1" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip link add link "$2" name eth0 netns "$1" address "$3" type macvlan mode bridge
ip -n "$1" addr add "$4" dev eth0
ip -n "$1" link set eth0 up
"""
# $1 namespace: whatever still runs inside goes first, or the namespace outlives its name.
DELETE_NAMESPACE = """[ -e "/run/netns/$1" ] || exit 0
pids=$(ip netns pids "$1")
[ -z "$pids" ] || kill -9 $pids
ip netns del "$1"
"""


def interface_with(addresses_output: str, address: str) -> tuple[str, ipaddress.IPv4Interface] | None:
    """(interface name, its address/prefix) holding `address`, from `ip -o -4 addr show` output."""
    for line in addresses_output.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "inet":
            iface = ipaddress.IPv4Interface(parts[3])
            if str(iface.ip) == address:
                return parts[1].split("@", 1)[0], iface
    return None


class RemoteLabNet:
    """Instances on a lab host's experiment link (see the module docstring)."""

    def __init__(self, host: Host, run_id: str, subnet: str, ledger: Ledger, reserved: Iterable[str] = ()):
        try:
            self.network = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise ConfigError(f"lab.subnet: {subnet!r} is not an IPv4 network ({exc}); use the experiment link's "
                              f"subnet, e.g. 10.77.0.0/24") from exc
        if not host.lab_address:
            raise ConfigError(f"host {host.name}: lab_address is needed to place a server there (the host's address "
                              f"on the experiment link, in the lab file)")
        if ipaddress.IPv4Address(host.lab_address) not in self.network:
            raise ConfigError(f"lab.subnet {self.network} does not contain {host.name}'s lab_address "
                              f"{host.lab_address}; with a server on a lab host, lab.subnet is the experiment "
                              f"link's subnet")
        self.host = host
        self.run_id = run_id
        self.ledger = ledger
        self.iface: str | None = None
        taken = {ipaddress.IPv4Address(a) for a in (*reserved, host.lab_address) if a}
        self.addresses = AddressPool(self.network, taken, where=f" on {host.name}")
        self._counter = 0
        self._attachments: list[Attachment] = []
        self._on_host: Attachment | None = None
        self.client_ns: str | None = None  # the load generator runs on its own host, outside any namespace

    # --- lifecycle -------------------------------------------------------------------
    def create(self) -> None:
        """Find the experiment interface (the one holding lab_address); nothing is created yet."""
        out = self.host.run(["ip", "-o", "-4", "addr", "show"], timeout=IP_TIMEOUT).stdout
        found = interface_with(out, str(self.host.lab_address))
        if found is None:
            raise ConfigError(f"host {self.host.name}: no interface has its lab_address {self.host.lab_address} "
                              f"(lab file); configure the experiment link there or fix lab_address")
        self.iface = found[0]

    def destroy(self) -> None:
        for att in list(self._attachments):
            self.release(att)

    # --- building blocks ---------------------------------------------------------------
    def host_interface(self, label: str) -> Attachment:
        """The host's own lab address (one instance at a time): a process on the host's interface."""
        if self._on_host is not None:
            raise ResourceBusyError(f"host {self.host.name}: its lab address {self.host.lab_address} is already in "
                                    f"use by another instance")
        address = ipaddress.IPv4Address(self.host.lab_address)
        self._on_host = Attachment(address, self.network, None, "", nic=NicKind.HOST,
                                   facts={"lab_interface": self.iface})
        return self._keep(self._on_host)

    def namespace(self, label: str) -> Attachment:
        """A namespace on the host whose eth0 is a macvlan of the experiment interface."""
        assert self.iface is not None, "create() first"
        address = self.addresses.take()
        self._counter += 1
        ns = f"tb-{self.run_id}-{link_label(label)}{self._counter}"
        mac = random_mac()
        self.ledger.acquire("netns", ns, **self.host.connection_meta())
        try:
            res = self.host.run(["sh", "-c", ADD_NAMESPACE, "sh", ns, self.iface, mac,
                                 f"{address}/{self.network.prefixlen}"], timeout=IP_TIMEOUT, check=False)
            if not res.ok:
                raise LaunchError(f"host {self.host.name}: cannot make namespace {ns} on {self.iface}: {res.tail()}")
        except BaseException:
            self._delete_namespace(ns)
            self.addresses.unused(address)
            raise
        return self._keep(Attachment(address, self.network, None, mac, nic=NicKind.MACVLAN, netns=ns,
                                     facts={"lab_interface": self.iface}))

    def bridge_port(self) -> Attachment:
        """An address and MAC for a guest whose NIC libvirt puts on a macvtap of the experiment interface."""
        assert self.iface is not None, "create() first"
        return self._keep(Attachment(self.addresses.take(), self.network, None, random_mac(), nic=NicKind.VIRTIO,
                                     direct=self.iface, facts={"lab_interface": self.iface, "host_nic": "macvtap"}))

    def tap(self, label: str) -> Attachment:
        raise NotRunnableError(f"host {self.host.name}: a tap for a VMM testbed runs itself is not offered on a lab "
                               f"host yet (place this platform on localhost)")

    def adopt(self, nic: NicKind, mac: str, device: Any = None, release: Callable[[], None] | None = None,
              facts: dict | None = None) -> Attachment:
        raise NotRunnableError(f"host {self.host.name}: SR-IOV on a lab host is not supported yet")

    def release(self, att: Attachment) -> None:
        if att in self._attachments:
            self._attachments.remove(att)
        if att is self._on_host:
            self._on_host = None
        try:
            for fn in att.on_release:
                fn()
            att.on_release.clear()
        finally:
            if att.netns:
                self._delete_namespace(att.netns)
            if att.nic != NicKind.HOST:
                self.addresses.release(att.address)

    # --- helpers ---------------------------------------------------------------------
    def _keep(self, att: Attachment) -> Attachment:
        self._attachments.append(att)
        return att

    def _delete_namespace(self, ns: str) -> None:
        """Delete it on the host and release its entry; an unreachable host keeps the entry for gc."""
        try:
            delete_namespace(self.host, ns)
        except HostError as exc:
            log.warning("%s: cannot delete namespace %s (%s); `testbed gc` reclaims it once the host answers",
                        self.host.name, ns, exc)
            return
        self.ledger.release("netns", ns)


def delete_namespace(host: Host, ns: str) -> None:
    res = host.run(["sh", "-c", DELETE_NAMESPACE, "sh", ns], timeout=IP_TIMEOUT, check=False)
    if not res.ok:
        raise TestbedError(f"host {host.name}: cannot delete namespace {ns}: {res.tail()}")
