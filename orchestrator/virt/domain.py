"""libvirt domain XML for a direct-kernel-boot Linux guest, built with ElementTree.

Never string-concatenated: every value goes through ElementTree, which escapes it. Tests
validate each variant against libvirt's RNG schema with `virt-xml-validate FILE domain`.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

TESTBED_NS = "https://testbed.invalid/xmlns/domain/1"


@dataclass
class SriovNic:
    """A VF given to the guest as `<interface type='hostdev'>`; pci_address like 0000:3b:02.1.
    libvirt sets the MAC (and VLAN) on the VF through its PF and restores them at shutdown."""

    pci_address: str
    mac: str
    vlan: int | None = None
    managed: bool = True  # libvirt binds vfio-pci and back; False when testbed bound it (VfPool.lease(driver=...))


@dataclass
class NetworkNic:
    """A NIC from a libvirt network. Over a hostdev network (hostdev_network_xml) libvirt picks
    a free VF of the network's PF itself; that pool's state lives only inside libvirtd."""

    network: str
    mac: str
    vlan: int | None = None


@dataclass
class BridgeNic:
    """A virtio NIC whose tap libvirt puts on `bridge` (a host bridge without addresses)."""

    bridge: str
    mac: str
    tap: str | None = None  # target dev name (recognisable as testbed's); libvirt picks vnetN if None


@dataclass
class DirectNic:
    """A virtio NIC on a macvtap of a host interface (`<interface type='direct'>`, bridge mode): a
    guest on a lab host sits on the host's experiment link itself (net/labhost.py)."""

    dev: str
    mac: str
    mode: str = "bridge"


@dataclass
class DomainSpec:
    name: str
    kernel: str
    initrd: str
    cmdline: str
    console_log: str
    domain_type: str = "qemu"  # kvm | qemu (TCG)
    machine: str = "pc"
    vcpus: int = 1
    memory_mib: int = 512
    vcpu_pins: list[int] | None = None  # vCPU i runs on host CPU vcpu_pins[i % len]
    emulator_pins: list[int] | None = None
    cpuset: list[int] | None = None  # every vCPU may run on these host CPUs (when not pinned one by one)
    hugepages: bool = False
    nics: list[BridgeNic | SriovNic | NetworkNic | DirectNic] = field(default_factory=list)
    emulator: str | None = None
    run_as_root: bool = True  # QEMU as root: testbed's files live in root-only directories
    metadata: dict[str, str] = field(default_factory=dict)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k.rstrip("_"): str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def _cpuset(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus)


def pci_address_attrs(address: str) -> dict[str, str]:
    """'0000:3b:02.1' -> libvirt's <address type='pci' domain= bus= slot= function=/> attributes."""
    dom_bus_slot, function = address.rsplit(".", 1)
    domain, bus, slot = dom_bus_slot.split(":")
    return {"type": "pci", "domain": f"0x{int(domain, 16):04x}", "bus": f"0x{int(bus, 16):02x}",
            "slot": f"0x{int(slot, 16):02x}", "function": f"0x{int(function, 16):x}"}


def _vlan(iface: ET.Element, vlan: int | None) -> None:
    if vlan:
        if not 1 <= int(vlan) <= 4094:
            raise ValueError(f"VLAN {vlan} is outside 1-4094")
        _sub(_sub(iface, "vlan"), "tag", id=str(int(vlan)))


def hostdev_network_element(name: str, pf: str | None = None, vfs: list[str] | None = None) -> ET.Element:
    """libvirt's SR-IOV network: `<forward mode='hostdev' managed='yes'>` over a PF (libvirt
    enumerates its VFs) or over an explicit list of VF PCI addresses."""
    if bool(pf) == bool(vfs):
        raise ValueError("a hostdev network takes a PF or a list of VFs, not both or neither")
    net = ET.Element("network")
    _sub(net, "name", name)
    forward = _sub(net, "forward", mode="hostdev", managed="yes")
    if pf:
        _sub(forward, "pf", dev=pf)
    for pci in vfs or []:
        _sub(forward, "address", **pci_address_attrs(pci))
    return net


def hostdev_network_xml(name: str, pf: str | None = None, vfs: list[str] | None = None) -> str:
    return to_xml(hostdev_network_element(name, pf, vfs))


def domain_element(spec: DomainSpec) -> ET.Element:
    if spec.domain_type not in ("kvm", "qemu"):
        raise ValueError(f"domain type must be kvm or qemu, not {spec.domain_type!r}")
    dom = ET.Element("domain", {"type": spec.domain_type})
    _sub(dom, "name", spec.name)
    if spec.metadata:
        md = _sub(dom, "metadata")
        ET.SubElement(md, f"{{{TESTBED_NS}}}testbed", {k: str(v) for k, v in sorted(spec.metadata.items())})
    _sub(dom, "memory", str(spec.memory_mib), unit="MiB")
    _sub(dom, "currentMemory", str(spec.memory_mib), unit="MiB")
    if spec.hugepages:
        mb = _sub(dom, "memoryBacking")
        _sub(mb, "hugepages")
    vcpu_attrs = {"placement": "static"}
    if spec.cpuset:
        vcpu_attrs["cpuset"] = _cpuset(spec.cpuset)
    _sub(dom, "vcpu", str(spec.vcpus), **vcpu_attrs)
    if spec.vcpu_pins or spec.emulator_pins:
        tune = _sub(dom, "cputune")
        pins = spec.vcpu_pins or []
        for i in range(spec.vcpus if pins else 0):
            _sub(tune, "vcpupin", vcpu=str(i), cpuset=str(pins[i % len(pins)]))
        if spec.emulator_pins:
            _sub(tune, "emulatorpin", cpuset=_cpuset(spec.emulator_pins))
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine=spec.machine)
    _sub(os_el, "kernel", spec.kernel)
    _sub(os_el, "initrd", spec.initrd)
    _sub(os_el, "cmdline", spec.cmdline)
    features = _sub(dom, "features")
    _sub(features, "acpi")
    if spec.domain_type == "kvm":
        _sub(dom, "cpu", mode="host-passthrough", check="none")
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "destroy")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    if spec.emulator:
        _sub(devices, "emulator", spec.emulator)
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=spec.console_log, append="off")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="file")
    _sub(console, "source", path=spec.console_log, append="off")
    _sub(console, "target", type="serial", port="0")
    for nic in spec.nics:
        if isinstance(nic, BridgeNic):
            iface = _sub(devices, "interface", type="bridge")
            _sub(iface, "mac", address=nic.mac)
            _sub(iface, "source", bridge=nic.bridge)
            if nic.tap:
                _sub(iface, "target", dev=nic.tap)
            _sub(iface, "model", type="virtio")
        elif isinstance(nic, SriovNic):
            iface = _sub(devices, "interface", type="hostdev", managed="yes" if nic.managed else "no")
            _sub(iface, "mac", address=nic.mac)
            source = _sub(iface, "source")
            _sub(source, "address", **pci_address_attrs(nic.pci_address))
            _vlan(iface, nic.vlan)
        elif isinstance(nic, DirectNic):
            iface = _sub(devices, "interface", type="direct")
            _sub(iface, "mac", address=nic.mac)
            _sub(iface, "source", dev=nic.dev, mode=nic.mode)
            _sub(iface, "model", type="virtio")
        elif isinstance(nic, NetworkNic):
            iface = _sub(devices, "interface", type="network")
            _sub(iface, "mac", address=nic.mac)
            _sub(iface, "source", network=nic.network)
            _vlan(iface, nic.vlan)
        else:
            raise TypeError(f"unknown NIC {nic!r}")
    _sub(devices, "memballoon", model="none")
    if spec.run_as_root:
        sec = _sub(dom, "seclabel", type="static", model="dac", relabel="no")
        _sub(sec, "label", "+0:+0")
    return dom


def to_xml(el: ET.Element) -> str:
    """A domain element as libvirt gets it: indented, testbed's namespace under its own prefix."""
    ET.register_namespace("testbed", TESTBED_NS)
    ET.indent(el)
    return ET.tostring(el, encoding="unicode")


def domain_xml(spec: DomainSpec) -> str:
    return to_xml(domain_element(spec))


def kernel_cmdline(address: ipaddress.IPv4Address | str, prefixlen: int, gateway: ipaddress.IPv4Address | str | None,
                   mac: str | None = None, extra: list[str] | None = None) -> str:
    """The guest's command line: serial console, no reboot on panic, and testbed's network
    parameters that guests/init.sh.j2 applies (testbed.ip=ADDR/PREFIX testbed.gw=GW testbed.mac=MAC)."""
    ipaddress.IPv4Address(str(address))  # validate: nothing odd reaches the command line
    args = ["console=ttyS0", "panic=-1", f"testbed.ip={address}/{int(prefixlen)}"]
    if gateway is not None:
        args.append(f"testbed.gw={ipaddress.IPv4Address(str(gateway))}")
    if mac:
        if not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in mac.split(":")) \
                or mac.count(":") != 5:
            raise ValueError(f"bad MAC address {mac!r}")
        args.append(f"testbed.mac={mac.lower()}")
    for a in extra or []:
        if any(c.isspace() for c in a) or not a:
            raise ValueError(f"kernel argument {a!r} must be one non-empty word")
        args.append(a)
    return " ".join(args)
