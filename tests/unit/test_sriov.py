"""SR-IOV discovery and VF allocation on a fake sysfs tree (this machine has no SR-IOV NIC)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError, ResourceBusyError
from orchestrator.ledger import Ledger, reclaimer_for
from orchestrator.net.sriov import VfAllocator, list_physical_functions


def fake_sysfs(root: Path, pf: str = "ens1f0", pf_pci: str = "0000:3b:00.0", nvfs: int = 3) -> Path:
    devices = root / "devices" / "pci0000:3a"
    drivers = root / "bus" / "pci" / "drivers"
    for d in ("ice", "iavf"):
        (drivers / d).mkdir(parents=True, exist_ok=True)
    pf_dev = devices / pf_pci
    pf_dev.mkdir(parents=True)
    (pf_dev / "sriov_totalvfs").write_text("64\n")
    (pf_dev / "sriov_numvfs").write_text(f"{nvfs}\n")
    (pf_dev / "driver").symlink_to(drivers / "ice")
    (root / "class" / "net").mkdir(parents=True, exist_ok=True)
    (root / "class" / "net" / pf).symlink_to(pf_dev / "net" / pf)
    (pf_dev / "net" / pf).mkdir(parents=True)
    (pf_dev / "net" / pf / "device").symlink_to(pf_dev)
    for i in range(nvfs):
        vf = devices / f"0000:3b:02.{i}"
        vf.mkdir()
        (vf / "driver").symlink_to(drivers / "iavf")
        (vf / "net" / f"{pf}v{i}").mkdir(parents=True)
        (pf_dev / f"virtfn{i}").symlink_to(vf)
    # a plain NIC without SR-IOV
    plain = devices / "0000:00:03.0"
    (plain / "net" / "eth0").mkdir(parents=True)
    (plain / "net" / "eth0" / "device").symlink_to(plain)
    (root / "class" / "net" / "eth0").symlink_to(plain / "net" / "eth0")
    return root


class IpRecorder:
    """Stands in for `ip link set PF vf N mac MAC`, which needs a real PF."""

    def __init__(self):
        self.calls: list[tuple[str, int, str]] = []

    def __call__(self, pf, index, mac):
        self.calls.append((pf, index, mac))


def test_discovery(tmp_path):
    pfs = list_physical_functions(fake_sysfs(tmp_path / "sys"))
    assert [p.name for p in pfs] == ["ens1f0"]
    pf = pfs[0]
    assert (pf.pci_address, pf.driver, pf.total_vfs, pf.num_vfs) == ("0000:3b:00.0", "ice", 64, 3)
    assert [(v.index, v.pci_address, v.netdev, v.driver) for v in pf.vfs] == [
        (0, "0000:3b:02.0", "ens1f0v0", "iavf"), (1, "0000:3b:02.1", "ens1f0v1", "iavf"),
        (2, "0000:3b:02.2", "ens1f0v2", "iavf")]


def test_allocate_sets_mac_and_release_frees(tmp_path):
    sysfs = fake_sysfs(tmp_path / "sys")
    ip = IpRecorder()
    ledger = Ledger("sriovtest", tmp_path / "ledger")
    a = VfAllocator("ens1f0", sysfs=sysfs, claims=tmp_path / "claims", set_mac=ip, ledger=ledger)
    vf0 = a.allocate("52:54:00:00:00:01", owner="dom1")
    vf1 = a.allocate("52:54:00:00:00:02", owner="dom2")
    assert (vf0.index, vf1.index) == (0, 1)
    assert ip.calls == [("ens1f0", 0, "52:54:00:00:00:01"), ("ens1f0", 1, "52:54:00:00:00:02")]
    assert [v.index for v in a.free()] == [2]
    assert {n for k, n, _ in ledger.live()} == {"0000:3b:02.0", "0000:3b:02.1"}
    # a second allocator (another run) sees the claims
    other = VfAllocator("ens1f0", sysfs=sysfs, claims=tmp_path / "claims", set_mac=ip)
    assert other.allocate("52:54:00:00:00:03").index == 2
    with pytest.raises(ResourceBusyError):
        other.allocate("52:54:00:00:00:04")
    a.release(vf0)
    assert ip.calls[-1] == ("ens1f0", 0, "00:00:00:00:00:00")
    assert [v.index for v in a.free()] == [0]
    a.release(vf1)
    assert ledger.live() == []


def test_failed_mac_set_leaves_vf_free(tmp_path):
    sysfs = fake_sysfs(tmp_path / "sys", nvfs=1)

    def fail(pf, index, mac):
        raise RuntimeError("RTNETLINK answers: Operation not permitted")

    a = VfAllocator("ens1f0", sysfs=sysfs, claims=tmp_path / "claims", set_mac=fail)
    with pytest.raises(RuntimeError):
        a.allocate("52:54:00:00:00:01")
    assert len(a.free()) == 1


def test_reclaimer_drops_leftover_claims(tmp_path):
    sysfs = fake_sysfs(tmp_path / "sys", nvfs=1)
    ledger = Ledger("sriovgc", tmp_path / "ledger")
    a = VfAllocator("ens1f0", sysfs=sysfs, claims=tmp_path / "claims", set_mac=IpRecorder(), ledger=ledger)
    a.allocate("52:54:00:00:00:01")
    [(kind, name, meta)] = ledger.live()
    assert kind == "sriov-vf"
    meta = {**meta, "pf": None}  # the fake PF cannot take `ip link`; the claim file is what matters here
    reclaimer_for(kind).reclaim(name, meta)
    assert len(a.free()) == 1


def test_unknown_pf_and_pf_without_vfs(tmp_path):
    sysfs = fake_sysfs(tmp_path / "sys", nvfs=0)
    with pytest.raises(ConfigError, match="not an SR-IOV physical function"):
        VfAllocator("eth0", sysfs=sysfs, claims=tmp_path / "c").allocate("52:54:00:00:00:01")
    with pytest.raises(ConfigError, match="no VFs enabled"):
        VfAllocator("ens1f0", sysfs=sysfs, claims=tmp_path / "c").allocate("52:54:00:00:00:01")


def test_no_sysfs_net(tmp_path):
    assert list_physical_functions(tmp_path) == []
