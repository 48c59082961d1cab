"""Domain XML variants, validated against libvirt's own RNG schema (virt-xml-validate)."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from orchestrator.virt.domain import (
    BridgeNic,
    DirectNic,
    DomainSpec,
    SriovNic,
    domain_xml,
    kernel_cmdline,
    pci_address_attrs,
)

pytestmark = pytest.mark.skipif(shutil.which("virt-xml-validate") is None, reason="virt-xml-validate not installed")


def spec(**kw) -> DomainSpec:
    base = dict(name="tb-unit-redis-10", kernel="/cache/vmlinuz", initrd="/runs/x/initrd.img",
                cmdline=kernel_cmdline("10.77.0.10", 24, "10.77.0.1", "52:54:00:aa:bb:cc"),
                console_log="/runs/x/console.log", metadata={"run": "unit", "workload": "redis"},
                nics=[BridgeNic("tbunith", "52:54:00:aa:bb:cc", tap="tbunitt10")])
    base.update(kw)
    return DomainSpec(**base)


def validate(tmp_path, xml: str) -> None:
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    proc = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, timeout=30,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr + xml


VARIANTS = {
    "tcg-plain": dict(),
    "kvm-plain": dict(domain_type="kvm"),
    "pinned": dict(vcpus=2, vcpu_pins=[0, 1], emulator_pins=[1]),
    "placed": dict(vcpus=2, cpuset=[1], emulator_pins=[1]),
    "hugepages": dict(hugepages=True, memory_mib=1024),
    "pinned-hugepages-kvm-q35": dict(domain_type="kvm", vcpus=4, vcpu_pins=[2, 3], hugepages=True, machine="q35"),
    "sriov": dict(nics=[SriovNic("0000:3b:02.1", "52:54:00:aa:bb:cc")]),
    "sriov-kvm-pinned": dict(domain_type="kvm", vcpu_pins=[1], nics=[SriovNic("0000:af:10.7", "52:54:00:01:02:03")]),
    "no-nic-user-qemu": dict(nics=[], run_as_root=False),
    "lab-host-macvtap": dict(nics=[DirectNic("eth0", "52:54:00:aa:bb:cc")]),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_validates_against_libvirt_schema(tmp_path, variant):
    validate(tmp_path, domain_xml(spec(**VARIANTS[variant])))


def test_guest_on_a_lab_host_sits_on_a_macvtap_of_its_experiment_interface():
    import xml.etree.ElementTree as ET

    iface = ET.fromstring(domain_xml(spec(nics=[DirectNic("enp1s0f1", "52:54:00:aa:bb:cc")]))).find("devices/interface")
    assert iface is not None and iface.get("type") == "direct"
    assert iface.find("source").attrib == {"dev": "enp1s0f1", "mode": "bridge"}
    assert iface.find("model").get("type") == "virtio" and iface.find("mac").get("address") == "52:54:00:aa:bb:cc"


def test_structure_of_a_pinned_hugepage_guest():
    root = ET.fromstring(domain_xml(spec(domain_type="kvm", vcpus=3, vcpu_pins=[4, 5], hugepages=True)))
    assert root.get("type") == "kvm"
    assert [(p.get("vcpu"), p.get("cpuset")) for p in root.iter("vcpupin")] == [("0", "4"), ("1", "5"), ("2", "4")]
    assert root.find("memoryBacking/hugepages") is not None
    assert root.findtext("on_poweroff") == "destroy" and root.findtext("on_crash") == "destroy"
    assert root.find("os/kernel").text == "/cache/vmlinuz"
    assert root.find("devices/serial").get("type") == "file"
    assert root.find("devices/serial/source").get("path") == "/runs/x/console.log"
    iface = root.find("devices/interface")
    assert iface.get("type") == "bridge" and iface.find("model").get("type") == "virtio"
    assert iface.find("source").get("bridge") == "tbunith"


def test_tcg_guest_has_no_host_cpu_and_no_tuning():
    root = ET.fromstring(domain_xml(spec()))
    assert root.get("type") == "qemu"
    assert root.find("cpu") is None and root.find("cputune") is None and root.find("memoryBacking") is None


def test_sriov_hostdev_interface():
    root = ET.fromstring(domain_xml(spec(nics=[SriovNic("0000:3b:02.1", "52:54:00:aa:bb:cc")])))
    iface = root.find("devices/interface")
    assert iface.get("type") == "hostdev" and iface.get("managed") == "yes"
    assert iface.find("mac").get("address") == "52:54:00:aa:bb:cc"
    assert iface.find("source/address").attrib == {"type": "pci", "domain": "0x0000", "bus": "0x3b",
                                                   "slot": "0x02", "function": "0x1"}


def test_values_are_escaped_not_concatenated(tmp_path):
    xml = domain_xml(spec(name="tb-a&b", cmdline="console=ttyS0 x=<y>"))
    assert ET.fromstring(xml).findtext("os/cmdline") == "console=ttyS0 x=<y>"
    assert ET.fromstring(xml).findtext("name") == "tb-a&b"


def test_pci_address_attrs():
    assert pci_address_attrs("0001:af:1f.7") == {"type": "pci", "domain": "0x0001", "bus": "0xaf", "slot": "0x1f",
                                                 "function": "0x7"}


def test_kernel_cmdline():
    assert kernel_cmdline("10.77.0.10", 24, "10.77.0.1", "52:54:00:AA:bb:cc") == (
        "console=ttyS0 panic=-1 testbed.ip=10.77.0.10/24 testbed.gw=10.77.0.1 testbed.mac=52:54:00:aa:bb:cc")
    assert kernel_cmdline("10.0.0.5", 16, None) == "console=ttyS0 panic=-1 testbed.ip=10.0.0.5/16"
    assert kernel_cmdline("10.0.0.5", 16, None, extra=["quiet"]).endswith(" quiet")
    with pytest.raises(ValueError):
        kernel_cmdline("10.0.0.5 init=/bin/sh", 24, None)
    with pytest.raises(ValueError):
        kernel_cmdline("10.0.0.5", 24, None, mac="52:54:00:aa:bb")
    with pytest.raises(ValueError):
        kernel_cmdline("10.0.0.5", 24, None, extra=["a b"])
