"""The run's isolated lab network, and the building blocks platforms attach with.

Topology (one per run, all names carry the run id):

    netns tb-<rid>-lab:     bridge br0 (gateway .1)  <- every lab port is enslaved here
    netns tb-<rid>-client:  eth0 .2  --veth-->  br0   (load generators and probes run here)
    netns tb-<rid>-<inst>:  eth0 .N  --veth-->  br0   (native / runc / gVisor instances)
    host ns: bridge tb<rid>h, no address, IPv6 off --veth--> br0
             (guest taps go here: libvirt's, and the ones testbed makes for QEMU run directly)

Every address lives only inside these namespaces and guests, and the host bridge has
no address, so nothing routes between the lab and the host's own interfaces.

A platform chooses its attachment (Platform.attach) from the blocks a LabNetwork offers:
`namespace(label)`, `host_interface(label)` (the host's own network: here a namespace like any
other, on a lab host its experiment interface), `bridge_port()` (an address + MAC on the host
bridge; libvirt makes the tap), `tap(label)` (testbed makes the tap) and `adopt(...)` (a device
attached elsewhere, e.g. an SR-IOV VF, whose lab address must be reserved). `release(att)` undoes
any of them. A server placed on a lab host gets the same blocks on that host's experiment link
(net/labhost.py).
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..enums import NicKind
from ..errors import ConfigError, ResourceBusyError
from ..ledger import Ledger
from . import netns as nn

log = logging.getLogger(__name__)

LAB_BRIDGE = "br0"
FIRST_INSTANCE_HOST = 10


@dataclass(eq=False)  # identity: two attachments are never "equal" just because their fields are
class Attachment:
    """Where an instance sits on the lab network; passed to Platform.launch."""

    address: ipaddress.IPv4Address
    network: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address | None
    mac: str
    nic: NicKind = NicKind.VIRTIO
    netns: str | None = None  # namespace platforms: the namespace the instance joins
    bridge: str | None = None  # guests: the host bridge their tap is on
    direct: str | None = None  # guests on a lab host: the interface their macvtap sits on (type='direct')
    tap: str | None = None  # guests run without libvirt: the tap testbed made on `bridge`
    host_links: list[str] = field(default_factory=list)
    device: Any = None  # an adopted device (e.g. an SR-IOV VF lease); released with the attachment
    on_release: list[Callable[[], None]] = field(default_factory=list)
    facts: dict = field(default_factory=dict)  # what every sample of an instance here records

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    @property
    def netmask(self) -> str:
        return str(self.network.netmask)


class LabNetwork(Protocol):
    """The building blocks a platform attaches with (see the module docstring)."""

    def namespace(self, label: str) -> Attachment: ...

    def host_interface(self, label: str) -> Attachment: ...

    def bridge_port(self) -> Attachment: ...

    def tap(self, label: str) -> Attachment: ...

    def adopt(self, nic: NicKind, mac: str, device: Any = None, release: Callable[[], None] | None = None,
              facts: dict | None = None) -> Attachment: ...

    def release(self, att: Attachment) -> None: ...


class AddressPool:
    """The subnet's instance addresses, .10 up (less any taken elsewhere): a released one goes to the
    back, one a failed creation never used to the front."""

    def __init__(self, network: ipaddress.IPv4Network, taken: set[ipaddress.IPv4Address] | None = None,
                 where: str = ""):
        self.network = network
        self.where = where
        self._free = [a for a in list(network.hosts())[FIRST_INSTANCE_HOST - 1:] if a not in (taken or set())]

    def take(self) -> ipaddress.IPv4Address:
        if not self._free:
            raise ResourceBusyError(f"lab subnet {self.network} has no free address left{self.where}")
        return self._free.pop(0)

    def unused(self, address: ipaddress.IPv4Address) -> None:
        self._free.insert(0, address)

    def release(self, address: ipaddress.IPv4Address) -> None:
        if address not in self._free:
            self._free.append(address)


def random_mac() -> str:
    # Locally administered, unicast, with testbed's fixed prefix so leftovers are recognisable.
    return "52:54:00:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))


def link_label(label: str, width: int = 6) -> str:
    """A short, interface-name-safe form of an entry name (namespace and link names are bounded)."""
    return (re.sub(r"[^a-z0-9]", "", label.lower()) or "x")[:width]


class LabNet:
    """The lab network of one run on this machine."""

    def __init__(self, run_id: str, subnet: str, ledger: Ledger):
        try:
            self.network = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise ConfigError(f"lab.subnet: {subnet!r} is not an IPv4 network ({exc}); use e.g. 10.77.0.0/24") from exc
        if self.network.num_addresses < 16:
            raise ConfigError(f"lab.subnet: {subnet} is too small; use a /24")
        self.run_id = run_id
        self.ledger = ledger
        self.prefix = f"tb{run_id}"
        self.lab_ns = f"tb-{run_id}-lab"
        self.client_ns = f"tb-{run_id}-client"
        hosts = list(self.network.hosts())
        self.gateway = hosts[0]
        self.client_address = hosts[1]
        self.addresses = AddressPool(self.network)
        self._counter = 0
        self.host_bridge: str | None = None
        self._created = False
        self._attachments: list[Attachment] = []

    # --- lifecycle -------------------------------------------------------------------
    def create(self) -> None:
        self._add_ns(self.lab_ns)
        self._created = True
        nn.ip("link", "add", LAB_BRIDGE, "type", "bridge", netns=self.lab_ns)
        nn.ip("addr", "add", f"{self.gateway}/{self.network.prefixlen}", "dev", LAB_BRIDGE, netns=self.lab_ns)
        nn.ip("link", "set", LAB_BRIDGE, "up", netns=self.lab_ns)
        self._add_ns(self.client_ns)
        self._veth_into(self.client_ns, f"{self.prefix}c", self.client_address)

    def destroy(self) -> None:
        for att in list(self._attachments):
            self.release(att)
        if self.host_bridge:
            self._del_link(f"{self.prefix}hx")
            self._del_link(self.host_bridge)
            self.host_bridge = None
        for ns in (self.client_ns, self.lab_ns):
            nn.delete_netns(ns)
            self.ledger.release("netns", ns)
        self._created = False

    # --- building blocks ---------------------------------------------------------------
    def namespace(self, label: str) -> Attachment:
        """A fresh namespace with eth0 on the lab bridge, for process and container platforms."""
        address = self.addresses.take()
        self._counter += 1
        ns = f"tb-{self.run_id}-{link_label(label)}{self._counter}"
        veth = f"{self.prefix}v{self._counter}"
        try:
            self._add_ns(ns)
            mac = self._veth_into(ns, veth, address)
        except BaseException:
            nn.delete_netns(ns)
            self.ledger.release("netns", ns)
            self.addresses.unused(address)
            raise
        return self._keep(Attachment(address, self.network, self.gateway, mac, nic=NicKind.VETH, netns=ns,
                                     host_links=[veth]))

    def host_interface(self, label: str) -> Attachment:
        """A host process's network: on this machine, a namespace on the lab bridge like any other."""
        return self.namespace(label)

    def bridge_port(self) -> Attachment:
        """An address and MAC for a guest NIC whose tap the VMM's manager (libvirt) puts on the host bridge."""
        self._ensure_host_bridge()
        return self._keep(Attachment(self.addresses.take(), self.network, self.gateway, random_mac(),
                                     nic=NicKind.VIRTIO, bridge=self.host_bridge))

    def tap(self, label: str) -> Attachment:
        """A tap testbed creates on the host bridge, for a VMM started directly (no libvirt)."""
        self._ensure_host_bridge()
        self._counter += 1
        name = f"{self.prefix}t{self._counter}"[:15]
        address = self.addresses.take()
        self.ledger.acquire("link", name)
        try:
            nn.ip("tuntap", "add", "dev", name, "mode", "tap")
            nn.set_sysctl(f"net.ipv6.conf.{name}.disable_ipv6", "1")
            nn.ip("link", "set", name, "master", str(self.host_bridge), "up")
        except BaseException:
            self._del_link(name)
            self.addresses.unused(address)
            raise
        return self._keep(Attachment(address, self.network, self.gateway, random_mac(), nic=NicKind.VIRTIO,
                                     bridge=self.host_bridge, tap=name))

    def adopt(self, nic: NicKind, mac: str, device: Any = None, release: Callable[[], None] | None = None,
              facts: dict | None = None) -> Attachment:
        """Reserve a lab address for a device attached elsewhere (e.g. an SR-IOV VF); `release` runs
        when the attachment is released."""
        att = Attachment(self.addresses.take(), self.network, self.gateway, mac, nic=nic, device=device,
                         facts=dict(facts or {}))
        if release is not None:
            att.on_release.append(release)
        return self._keep(att)

    def release(self, att: Attachment) -> None:
        if att in self._attachments:
            self._attachments.remove(att)
        try:
            for fn in att.on_release:
                fn()
            att.on_release.clear()
        finally:
            for link in att.host_links:
                self._del_link(link, self.lab_ns)
            if att.tap:
                self._del_link(att.tap)
            if att.netns:
                nn.delete_netns(att.netns)
                self.ledger.release("netns", att.netns)
            self.addresses.release(att.address)

    # --- helpers ---------------------------------------------------------------------
    def _keep(self, att: Attachment) -> Attachment:
        self._attachments.append(att)
        return att

    def _add_ns(self, ns: str) -> None:
        self.ledger.acquire("netns", ns)
        nn.add_netns(ns)
        nn.set_sysctl("net.ipv6.conf.all.disable_ipv6", "1", netns=ns)
        nn.set_sysctl("net.ipv6.conf.default.disable_ipv6", "1", netns=ns)

    def _del_link(self, name: str, netns: str | None = None) -> None:
        nn.delete_link(name, netns)
        self.ledger.release("link", name)

    def _veth_into(self, ns: str, lab_side: str, address: ipaddress.IPv4Address) -> str:
        """veth pair: `lab_side` on br0 in the lab namespace, eth0 with `address` in `ns`."""
        mac = random_mac()
        nn.ip("link", "add", lab_side, "netns", self.lab_ns, "type", "veth", "peer", "name", "eth0",
              "address", mac, "netns", ns)
        nn.ip("link", "set", lab_side, "master", LAB_BRIDGE, "up", netns=self.lab_ns)
        nn.ip("addr", "add", f"{address}/{self.network.prefixlen}", "dev", "eth0", netns=ns)
        nn.ip("link", "set", "eth0", "up", netns=ns)
        nn.ip("route", "add", "default", "via", str(self.gateway), netns=ns)
        return mac

    def _ensure_host_bridge(self) -> None:
        if self.host_bridge:
            return
        bridge, hx = f"{self.prefix}h", f"{self.prefix}hx"
        self.ledger.acquire("link", bridge)
        if nn.link_exists(bridge):
            raise ResourceBusyError(f"bridge {bridge} already exists; run `testbed gc`")
        nn.ip("link", "add", bridge, "type", "bridge")
        self.host_bridge = bridge
        # No address and no IPv6 on the host side: the host takes no part in lab traffic.
        nn.set_sysctl(f"net.ipv6.conf.{bridge}.disable_ipv6", "1")
        self.ledger.acquire("link", hx)
        nn.ip("link", "add", hx, "type", "veth", "peer", "name", "hostlink", "netns", self.lab_ns)
        nn.set_sysctl(f"net.ipv6.conf.{hx}.disable_ipv6", "1")
        nn.ip("link", "set", hx, "master", bridge, "up")
        nn.ip("link", "set", bridge, "up")
        nn.ip("link", "set", "hostlink", "master", LAB_BRIDGE, "up", netns=self.lab_ns)

    def __enter__(self) -> "LabNet":
        self.create()
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()
