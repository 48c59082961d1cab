"""SR-IOV guest XML in both forms, validated against libvirt's RNG schema (virt-xml-validate):
`<interface type='hostdev' managed='yes'>` with the VF's PCI address and MAC, and a libvirt
hostdev network over the PF (`<forward mode='hostdev' managed='yes'><pf dev=.../>`) with a
guest `<interface type='network'>` on it."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from orchestrator.virt.domain import (DomainSpec, NetworkNic, SriovNic, domain_xml, hostdev_network_xml,
                                      kernel_cmdline)

pytestmark = pytest.mark.skipif(shutil.which("virt-xml-validate") is None, reason="virt-xml-validate not installed")

MAC = "52:54:00:95:00:0a"


def spec(nic) -> DomainSpec:
    return DomainSpec(name="tb-sriov-redis-10", kernel="/cache/vmlinuz", initrd="/runs/x/initrd.img",
                      cmdline=kernel_cmdline("10.95.0.10", 24, "10.95.0.1", MAC), console_log="/runs/x/console.log",
                      domain_type="kvm", nics=[nic])


def validate(tmp_path, xml: str, kind: str) -> None:
    path = tmp_path / f"{kind}.xml"
    path.write_text(xml)
    proc = subprocess.run(["virt-xml-validate", str(path), kind], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr + xml


@pytest.mark.parametrize("nic", [
    SriovNic("0000:3b:02.1", MAC),
    SriovNic("0000:3b:02.1", MAC, vlan=100),
    SriovNic("0000:af:10.7", MAC, managed=False),
    NetworkNic("tb-sriov-ens1f0", MAC),
    NetworkNic("tb-sriov-ens1f0", MAC, vlan=7),
], ids=["hostdev", "hostdev-vlan", "hostdev-unmanaged", "network", "network-vlan"])
def test_guest_nic_validates(tmp_path, nic):
    validate(tmp_path, domain_xml(spec(nic)), "domain")


@pytest.mark.parametrize("kw", [dict(pf="ens1f0"), dict(vfs=["0000:3b:02.0", "0000:3b:02.1"])], ids=["pf", "vf-list"])
def test_hostdev_network_validates(tmp_path, kw):
    xml = hostdev_network_xml("tb-sriov-ens1f0", **kw)
    validate(tmp_path, xml, "network")
    forward = ET.fromstring(xml).find("forward")
    assert forward.attrib == {"mode": "hostdev", "managed": "yes"}
    if "pf" in kw:
        assert forward.find("pf").get("dev") == "ens1f0"
    else:
        assert [a.get("slot") + "." + a.get("function") for a in forward.findall("address")] == ["0x02.0x0", "0x02.0x1"]


def test_hostdev_interface_structure():
    iface = ET.fromstring(domain_xml(spec(SriovNic("0000:3b:02.1", MAC, vlan=100)))).find("devices/interface")
    assert (iface.get("type"), iface.get("managed")) == ("hostdev", "yes")
    assert iface.find("mac").get("address") == MAC
    assert iface.find("source/address").attrib == {"type": "pci", "domain": "0x0000", "bus": "0x3b", "slot": "0x02",
                                                   "function": "0x1"}
    assert iface.find("vlan/tag").get("id") == "100"
    net = ET.fromstring(domain_xml(spec(NetworkNic("tb-sriov-ens1f0", MAC)))).find("devices/interface")
    assert net.get("type") == "network" and net.find("source").get("network") == "tb-sriov-ens1f0"


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="not both or neither"):
        hostdev_network_xml("n", pf="ens1f0", vfs=["0000:3b:02.0"])
    with pytest.raises(ValueError, match="not both or neither"):
        hostdev_network_xml("n")
    with pytest.raises(ValueError, match="outside 1-4094"):
        domain_xml(spec(SriovNic("0000:3b:02.1", MAC, vlan=5000)))
