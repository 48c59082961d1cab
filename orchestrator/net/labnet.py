"""The run's isolated lab network.

Topology (one per run, all names carry the run id):

    netns tb-<rid>-lab:     bridge br0 (gateway .1)  <- every lab port is enslaved here
    netns tb-<rid>-client:  eth0 .2  --veth-->  br0   (load generators and probes run here)
    netns tb-<rid>-<inst>:  eth0 .N  --veth-->  br0   (native / runc / gVisor instances)
    host ns: bridge tb<rid>h, no address, IPv6 off --veth--> br0
             (libvirt puts VM taps here: libvirtd creates taps in its own namespace)

Every address lives only inside these namespaces and guests, and the host bridge has
no address, so nothing routes between the lab and the host's own interfaces.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from dataclasses import dataclass, field

from ..errors import ConfigError, ResourceBusyError
from ..ledger import Ledger
from . import netns as nn

log = logging.getLogger(__name__)

LAB_BRIDGE = "br0"
FIRST_INSTANCE_HOST = 10


@dataclass
class Attachment:
    """Where an instance sits on the lab network; passed to Platform.launch."""

    address: ipaddress.IPv4Address
    network: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    mac: str
    nic: str = "virtio"  # virtio | sriov | veth
    netns: str | None = None  # for namespace platforms: the namespace the instance joins
    bridge: str | None = None  # for VMs: the host bridge libvirt attaches the tap to
    host_links: list[str] = field(default_factory=list)
    vf: object | None = None  # for sriov: the allocated VirtualFunction

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    @property
    def netmask(self) -> str:
        return str(self.network.netmask)


def random_mac() -> str:
    # Locally administered, unicast, with testbed's fixed prefix so leftovers are recognisable.
    return "52:54:00:%02x:%02x:%02x" % (random.randrange(256), random.randrange(256), random.randrange(256))


class LabNet:
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
        self._free = hosts[FIRST_INSTANCE_HOST - 1 :]
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

    # --- attachments -----------------------------------------------------------------
    def attach_namespace(self, label: str) -> Attachment:
        """A fresh namespace with eth0 on the lab bridge, for process and container platforms."""
        address = self._take_address()
        self._counter += 1
        ns = f"tb-{self.run_id}-{label}{self._counter}"
        try:
            self._add_ns(ns)
            mac = self._veth_into(ns, f"{self.prefix}v{self._counter}", address)
        except Exception:
            nn.delete_netns(ns)
            self.ledger.release("netns", ns)
            self._free.insert(0, address)
            raise
        att = Attachment(address, self.network, self.gateway, mac, nic="veth", netns=ns,
                         host_links=[f"{self.prefix}v{self._counter}"])
        self._attachments.append(att)
        return att

    def attach_vm(self, nic: str = "virtio") -> Attachment:
        """An address and MAC for a guest whose virtio NIC libvirt puts on the host bridge."""
        if nic != "virtio":
            raise ConfigError(f"nic: {nic!r} needs a device attachment (see net/sriov.py); labnet attaches virtio only")
        self._ensure_host_bridge()
        att = Attachment(self._take_address(), self.network, self.gateway, random_mac(), nic="virtio", bridge=self.host_bridge)
        self._attachments.append(att)
        return att

    def adopt(self, att: Attachment) -> Attachment:
        """Register an attachment made elsewhere (e.g. an SR-IOV VF) so its address is reserved."""
        if att.address in self._free:
            self._free.remove(att.address)
        self._attachments.append(att)
        return att

    def take_address(self) -> ipaddress.IPv4Address:
        return self._take_address()

    def release(self, att: Attachment) -> None:
        if att in self._attachments:
            self._attachments.remove(att)
        for link in att.host_links:
            self._del_link(link, self.lab_ns)
        if att.netns:
            nn.delete_netns(att.netns)
            self.ledger.release("netns", att.netns)
        if att.address not in self._free:
            self._free.append(att.address)

    # --- helpers ---------------------------------------------------------------------
    def _take_address(self) -> ipaddress.IPv4Address:
        if not self._free:
            raise ResourceBusyError(f"lab subnet {self.network} has no free address left")
        return self._free.pop(0)

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
