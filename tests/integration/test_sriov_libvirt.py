"""SR-IOV XML in the real libvirtd (qemu:///system): both forms define; starting fails with
testbed's one line, not a libvirt traceback. This machine has no SR-IOV NIC, so the VF's PCI
address (0000:ff:1f.7) and the PF (tbsrnopf0) do not exist here."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from orchestrator.errors import LaunchError
from orchestrator.ledger import Ledger
from orchestrator.net.sriov import hostdev_network_start_error, hostdev_start_error
from orchestrator.virt.connection import Connection, require_libvirt
from orchestrator.virt.domain import DomainSpec, NetworkNic, SriovNic, domain_xml, hostdev_network_xml, kernel_cmdline
from orchestrator.virt.lifecycle import create_transient

pytestmark = pytest.mark.skipif(shutil.which("libvirtd") is None, reason="libvirtd not installed")

MISSING_VF = "0000:ff:1f.7"
MISSING_PF = "tbsrnopf0"
MAC = "52:54:00:95:00:0a"


@pytest.fixture
def conn():
    c = Connection("qemu:///system")
    yield c
    c.close()


def spec(tmp_path: Path, name: str, nic) -> DomainSpec:
    """A linux-vm style domain; the kernel and initrd only need to exist as paths."""
    for f in ("vmlinuz", "initrd.img"):
        (tmp_path / f).write_bytes(b"\0")
    return DomainSpec(name=name, kernel=str(tmp_path / "vmlinuz"), initrd=str(tmp_path / "initrd.img"),
                      cmdline=kernel_cmdline("10.95.0.10", 24, "10.95.0.1", MAC),
                      console_log=str(tmp_path / "console.log"), nics=[nic])


def test_hostdev_interface_defines_and_start_fails_with_one_line(tmp_path, conn):
    lv = require_libvirt()
    name = f"tbsr-{uuid.uuid4().hex[:6]}"
    dom = conn.call(conn.conn.defineXML, domain_xml(spec(tmp_path, name, SriovNic(MISSING_VF, MAC))), what="define")
    try:
        assert conn.lookup(name) is not None
        with pytest.raises(lv.libvirtError) as err:
            conn.call(dom.create, what=f"create {name}")
        mine = hostdev_start_error(err.value, [MISSING_VF])
        assert str(mine) == f"VF {MISSING_VF}: PCI device does not exist on this host"
    finally:
        conn.destroy(name)
    assert conn.lookup(name) is None


def test_transient_start_as_platforms_do_fails_with_one_line(tmp_path, conn):
    """create_transient (createXML, autodestroy) as the guest platforms call it; the ledger ends clean."""
    name = f"tbsr-{uuid.uuid4().hex[:6]}"
    ledger = Ledger(f"tbsr{uuid.uuid4().hex[:6]}", tmp_path / "ledger")
    with pytest.raises(LaunchError) as err:
        create_transient(conn, ledger, name, domain_xml(spec(tmp_path, name, SriovNic(MISSING_VF, MAC, vlan=10))))
    assert str(hostdev_start_error(err.value, [MISSING_VF])) == f"VF {MISSING_VF}: PCI device does not exist on this host"
    assert ledger.live() == [] and conn.lookup(name) is None


def test_hostdev_network_defines_and_start_fails_with_one_line(tmp_path, conn):
    lv = require_libvirt()
    network = f"tbsr-{uuid.uuid4().hex[:6]}"
    net = conn.call(conn.conn.networkDefineXML, hostdev_network_xml(network, pf=MISSING_PF), what="define network")
    try:
        with pytest.raises(lv.libvirtError) as err:
            conn.call(net.create, what=f"start network {network}")
        assert str(hostdev_network_start_error(err.value, network, MISSING_PF)) == (
            f"hostdev network {network}: PF {MISSING_PF} does not exist on this host")
        # a guest on the (inactive) network defines too
        name = f"tbsr-{uuid.uuid4().hex[:6]}"
        conn.call(conn.conn.defineXML, domain_xml(spec(tmp_path, name, NetworkNic(network, MAC))), what="define")
        conn.destroy(name)
    finally:
        conn.call(net.undefine, what=f"undefine network {network}")
    assert network not in [n.name() for n in conn.call(conn.conn.listAllNetworks, what="networks")]
