"""SR-IOV discovery, selectors, configuration sequences, preflight/doctor, provenance and guest
support, on a sysfs tree the tests build (orchestrator/net/sriov/fake.py; no SR-IOV NIC here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.config.lab import load_lab
from orchestrator.errors import ConfigError, LaunchError, ResourceBusyError
from orchestrator.hosts.local import LocalHost
from orchestrator.net.sriov import (HostSriov, VfSelector, VfSettings, guest_vf_problem, host_sriov,
                                    hostdev_network_start_error, hostdev_start_error, list_physical_functions,
                                    sriov_preflight, sriov_problems)
from orchestrator.net.sriov.config import apply_vf_settings, bind_driver, read_vf_settings, set_num_vfs
from orchestrator.net.sriov.fake import ROOT_PORT, FakePf, FakeSystem, build_fake_host
from orchestrator.net.sriov.guest import linux_driver_for, vf_modules_in
from orchestrator.net.sriov.preflight import remote_host_sriov
from orchestrator.net.sriov.provenance import pci_name
from orchestrator.config.vf_selectors import parse_ranges, selected
from orchestrator.provision import host_checks as hc

TWO_PFS = [FakePf(), FakePf("ens1f1", "0000:3b:00.1", num_vfs=2, vf_slot=6, numa_node=1)]


def snapshot(fake: FakeSystem) -> HostSriov:
    return host_sriov(fake.sysfs, fake.proc, fake.modules)


class ViaCommands:
    """A Host that is not LocalHost: checks take the remote path (python3 over "SSH"), run here."""

    name = "via-commands"

    def __init__(self):
        self._local = LocalHost()

    def run(self, argv, **kw):
        return self._local.run(argv, **kw)


# --- discovery -------------------------------------------------------------------------------
def test_discovery_reads_pfs_vfs_ids_numa_groups_link(tmp_path):
    fake = build_fake_host(tmp_path, TWO_PFS)
    host = snapshot(fake)
    assert [p.name for p in host.pfs] == ["ens1f0", "ens1f1"]
    pf = host.pfs[0]
    assert (pf.pci_address, pf.driver, pf.total_vfs, pf.num_vfs, pf.pci_id) == ("0000:3b:00.0", "ice", 8, 4, "8086:1592")
    assert (pf.numa_node, pf.drivers_autoprobe, pf.link, pf.speed_mbps) == (0, True, "up", 100000)
    assert [(v.index, v.pci_address, v.netdev, v.driver) for v in pf.vfs] == [
        (i, f"0000:3b:02.{i}", f"ens1f0v{i}", "iavf") for i in range(4)]
    vf = pf.vfs[1]
    assert (vf.pci_id, vf.numa_node, vf.pf, vf.pf_pci, vf.group_peers) == ("8086:1889", 0, "ens1f0", "0000:3b:00.0", [])
    assert vf.iommu_group is not None and vf.iommu_group != pf.iommu_group
    assert vf.modalias.startswith("pci:v00008086d00001889")
    assert host.pfs[1].vfs[0].pci_address == "0000:3b:06.0" and host.pfs[1].vfs[0].numa_node == 1
    assert (host.iommu_groups, host.iommu_args, host.vfio_pci, host.kernel) == (
        9, ["intel_iommu=on", "iommu=pt"], "module", "6.1.0-fake-amd64")
    assert HostSriov.from_json(host.to_json()) == host


def test_group_peers_and_isolation(tmp_path):
    fake = build_fake_host(tmp_path, [FakePf(shared_group=True, num_vfs=2)])
    vf = snapshot(fake).pfs[0].vfs[0]
    assert [(p.pci_address, p.driver, p.bridge) for p in vf.group_peers] == [
        ("0000:3b:00.0", "ice", False), ("0000:3b:02.1", "iavf", False)]
    assert vf.isolation_problem() == ("VF 0000:3b:02.0 is not isolated: IOMMU group 10 also holds 0000:3b:00.0 (ice), "
                                      "0000:3b:02.1 (iavf), which must be bound to vfio-pci or be a bridge")
    # a bridge in the group does not count
    fake2 = build_fake_host(tmp_path / "b", [FakePf(num_vfs=1)])
    group = snapshot(fake2).pfs[0].vfs[0].iommu_group
    fake2.add_to_group(ROOT_PORT, group)
    vf = snapshot(fake2).pfs[0].vfs[0]
    assert [(p.pci_address, p.bridge) for p in vf.group_peers] == [(ROOT_PORT, True)]
    assert vf.isolation_problem() is None


def test_discovery_on_a_tree_with_only_class_net(tmp_path):
    """The shape older tests built: class/net/<pf>/device, no bus/pci/devices."""
    dev = tmp_path / "devices" / "0000:3b:00.0"
    (dev / "net" / "ens1f0").mkdir(parents=True)
    (dev / "sriov_totalvfs").write_text("64\n")
    (dev / "sriov_numvfs").write_text("0\n")
    (tmp_path / "class" / "net").mkdir(parents=True)
    (tmp_path / "class" / "net" / "ens1f0").symlink_to(dev / "net" / "ens1f0")
    (dev / "net" / "ens1f0" / "device").symlink_to(dev)
    [pf] = list_physical_functions(tmp_path)
    assert (pf.name, pf.total_vfs, pf.num_vfs, pf.vfs, pf.driver) == ("ens1f0", 64, 0, [], None)
    assert list_physical_functions(tmp_path / "nothing") == []


def test_remote_discovery_runs_the_same_code(tmp_path):
    fake = build_fake_host(tmp_path, TWO_PFS)
    remote = remote_host_sriov(ViaCommands(), str(fake.sysfs), str(fake.proc), str(fake.modules))
    assert remote == snapshot(fake)


# --- selectors -------------------------------------------------------------------------------
def test_ranges():
    assert parse_ranges("0-3,6") == {0, 1, 2, 3, 6}
    assert parse_ranges("5") == {5}
    for bad in ("3-1", "a", "0-300", "1,,2"):
        with pytest.raises(ValueError):
            parse_ranges(bad)


def test_selectors_by_pf_range_ids_driver(tmp_path):
    fake = build_fake_host(tmp_path, TWO_PFS)
    pfs = snapshot(fake).pfs

    def pick(*items):
        return [vf.pci_address for _, vf in selected(pfs, [VfSelector.parse(i) for i in items])]

    assert pick({"pf": "ens1f0", "vfs": "1-2"}) == ["0000:3b:02.1", "0000:3b:02.2"]
    assert pick({"pf": "0000:3b:00.1"}) == ["0000:3b:06.0", "0000:3b:06.1"]
    assert pick({"pf": "ens1f0", "vfs": "3"}, {"pf": "ens1f1", "vfs": "0"}) == ["0000:3b:02.3", "0000:3b:06.0"]
    assert len(pick({"vendor": "8086", "device": "1889"})) == 6
    assert pick({"vendor": "15b3"}) == []
    assert len(pick({"driver": "iavf"})) == 6 and pick({"driver": "vfio-pci"}) == []
    assert len(selected(pfs, [])) == 6  # no selectors: every VF


@pytest.mark.parametrize("item, words", [
    ({"vfs": "0-3"}, "give pf too"),
    ({}, "at least one"),
    ({"pf": "bad name with spaces"}, "neither a network interface"),
    ({"vendor": 32902}, "4 hex digits"),
    ({"pf": "ens1f0", "colour": "red"}, "unknown selector field"),
    ({"driver": "../x"}, "not a kernel driver"),
])
def test_bad_selectors(item, words):
    with pytest.raises(ValueError, match=words):
        VfSelector.parse(item)


LAB = """\
hosts:
  - name: lab-a
    address: 192.0.2.10
    sriov: {ens1f0: 8}
    sriov_pool:
      - {pf: ens1f0, vfs: "0-3"}
      - {vendor: "15b3", device: "101e", driver: mlx5_core}
"""


def test_lab_file_sriov_pool(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(LAB)
    host = load_lab(path).host("lab-a")
    assert [str(s) for s in host.vf_selectors()] == ["pf=ens1f0 vfs=0-3", "vendor=15b3 device=101e driver=mlx5_core"]
    assert host.vf_selectors()[0].vfs == {0, 1, 2, 3}
    path.write_text(LAB.replace('vfs: "0-3"', 'vfs: "3-0"'))
    with pytest.raises(ConfigError) as err:
        load_lab(path)
    assert str(err.value) == f"{path}:6: hosts[0].sriov_pool[0].vfs: '3-0': a VF range goes low-high within 0-255"
    path.write_text(LAB.replace('{pf: ens1f0, vfs: "0-3"}', '{vfs: "0-3"}'))
    with pytest.raises(ConfigError, match=r":6: hosts\[0\]\.sriov_pool\[0\]: vfs are indices on one PF; give pf too$"):
        load_lab(path)


# --- configuration ---------------------------------------------------------------------------
def test_vf_settings_through_the_pf(tmp_path):
    fake = build_fake_host(tmp_path)
    before = read_vf_settings(fake, "ens1f0", 2)
    assert before == VfSettings(mac="00:00:00:00:00:00", vlan=0, spoofchk=True, trust=False)
    wanted = VfSettings(mac="52:54:00:AA:00:02", vlan=42, spoofchk=False, trust=True)
    apply_vf_settings(fake, "ens1f0", 2, wanted)
    assert fake.commands()[-1] == ["ip", "link", "set", "dev", "ens1f0", "vf", "2", "mac", "52:54:00:aa:00:02",
                                   "vlan", "42", "spoofchk", "off", "trust", "on"]
    assert read_vf_settings(fake, "ens1f0", 2) == wanted
    assert before.restoring(VfSettings(mac="52:54:00:aa:00:02")) == VfSettings(mac="00:00:00:00:00:00")
    with pytest.raises(ValueError):
        VfSettings(mac="52:54:00")
    with pytest.raises(ValueError):
        VfSettings(vlan=5000)


def test_read_settings_of_old_iproute2_output(tmp_path):
    class OldIp(FakeSystem):
        def ip_json(self, *args):
            return [{"ifname": "ens1f0", "vfinfo_list": [{"vf": 0, "mac": "52:54:00:00:00:09", "vlan": 7,
                                                          "spoofchk": False}]}]

    fake = build_fake_host(tmp_path)
    old = OldIp(fake.sysfs, fake.proc, fake.modules, fake.dev)
    assert read_vf_settings(old, "ens1f0", 0) == VfSettings(mac="52:54:00:00:00:09", vlan=7, spoofchk=False)
    with pytest.raises(LaunchError, match="lists no vf 5"):
        read_vf_settings(old, "ens1f0", 5)


def test_num_vfs_goes_through_zero_and_autoprobe_first(tmp_path):
    fake = build_fake_host(tmp_path, [FakePf(num_vfs=2)])
    fake.clear_logs()
    assert set_num_vfs(fake, "0000:3b:00.0", 4, autoprobe=False) is True
    assert fake.writes() == [("bus/pci/devices/0000:3b:00.0/sriov_drivers_autoprobe", "0"),
                             ("bus/pci/devices/0000:3b:00.0/sriov_numvfs", "0"),
                             ("bus/pci/devices/0000:3b:00.0/sriov_numvfs", "4")]
    pf = snapshot(fake).pfs[0]
    assert pf.num_vfs == 4 and pf.drivers_autoprobe is False
    assert [v.driver for v in pf.vfs] == [None] * 4  # autoprobe off: no host driver grabbed them
    assert set_num_vfs(fake, "0000:3b:00.0", 4) is False
    with pytest.raises(ResourceBusyError, match="while VFs are leased"):
        set_num_vfs(fake, "0000:3b:00.0", 1, busy=lambda: ["0000:3b:02.0 by dom1"])
    with pytest.raises(ValueError, match="outside 0-8"):
        set_num_vfs(fake, "0000:3b:00.0", 9)
    with pytest.raises(LaunchError, match="Device or resource busy"):  # the kernel's own 0 -> N rule
        fake.write(fake.sysfs / "bus/pci/devices/0000:3b:00.0/sriov_numvfs", "2")


def test_bind_to_vfio_and_back_with_driver_override(tmp_path):
    fake = build_fake_host(tmp_path, vfio_loaded=True)
    fake.clear_logs()
    bind_driver(fake, "0000:3b:02.1", "vfio-pci")
    assert fake.writes() == [("bus/pci/devices/0000:3b:02.1/driver_override", "vfio-pci"),
                             ("bus/pci/devices/0000:3b:02.1/driver/unbind", "0000:3b:02.1"),
                             ("bus/pci/drivers_probe", "0000:3b:02.1"),
                             ("bus/pci/devices/0000:3b:02.1/driver_override", "\n")]
    vf = snapshot(fake).pfs[0].vfs[1]
    assert (vf.driver, vf.netdev, vf.driver_override) == ("vfio-pci", None, None)
    bind_driver(fake, "0000:3b:02.1", "iavf")
    vf = snapshot(fake).pfs[0].vfs[1]
    assert (vf.driver, vf.netdev) == ("iavf", "ens1f0v1")
    fake.clear_logs()
    bind_driver(fake, "0000:3b:02.1", "iavf")  # already there: nothing written
    assert fake.writes() == []


def test_vfio_bind_loads_the_module_or_says_why_not(tmp_path):
    fake = build_fake_host(tmp_path)
    bind_driver(fake, "0000:3b:02.0", "vfio-pci")
    assert ["modprobe", "vfio-pci"] in fake.commands()
    nomod = build_fake_host(tmp_path / "n", vfio_module=False)
    with pytest.raises(LaunchError, match="Module vfio-pci not found"):
        bind_driver(nomod, "0000:3b:02.0", "vfio-pci")
    assert snapshot(nomod).pfs[0].vfs[0].driver == "iavf"


def test_vfio_bind_refused_when_the_group_is_shared(tmp_path):
    fake = build_fake_host(tmp_path, [FakePf(shared_group=True, num_vfs=2)], vfio_loaded=True)
    fake.clear_logs()
    with pytest.raises(LaunchError) as err:
        bind_driver(fake, "0000:3b:02.0", "vfio-pci")
    assert str(err.value) == ("VF 0000:3b:02.0: cannot bind to vfio-pci: its IOMMU group also holds 0000:3b:00.0 (ice), "
                              "0000:3b:02.1 (iavf), which must be bound to vfio-pci or be a bridge")
    assert fake.writes() == []


# --- preflight and doctor --------------------------------------------------------------------
def test_preflight_clean_host_has_no_reasons(tmp_path):
    fake = build_fake_host(tmp_path)
    assert sriov_problems(snapshot(fake)) == []
    assert sriov_preflight(fake.sysfs, proc=str(fake.proc), modules=str(fake.modules)) == []


@pytest.mark.parametrize("build, key, words, fix", [
    (dict(iommu=False, cmdline="quiet"), "iommu", "no IOMMU: the kernel command line has no intel_iommu=on",
     "`iommu: true`"),
    (dict(iommu=False), "iommu", "but /sys/kernel/iommu_groups is empty", "firmware setup"),
    (dict(pfs=[]), "pf", "no SR-IOV PF: no PCI device here has sriov_totalvfs", "SR-IOV NIC"),
    (dict(pfs=[FakePf(num_vfs=0)]), "vfs", "no VFs enabled (ens1f0 has 0 of 8)", "`sriov: {ens1f0: N}`"),
    (dict(pfs=[FakePf(shared_group=True, num_vfs=2)]), "isolation", "VF 0000:3b:02.0 is not isolated", "ACS"),
    (dict(vfio_module=False), "vfio-pci", "vfio-pci is missing", "CONFIG_VFIO_PCI"),
])
def test_preflight_reasons_one_fix_each(tmp_path, build, key, words, fix):
    fake = build_fake_host(tmp_path, **build)
    problems = sriov_problems(snapshot(fake))
    assert [p.key for p in problems] == [key]
    assert words in problems[0].what and fix in problems[0].fix
    [line] = sriov_preflight(fake.sysfs, proc=str(fake.proc), modules=str(fake.modules))
    assert "\n" not in line and "(fix: " in line


def test_preflight_names_selector_mismatches(tmp_path):
    host = snapshot(build_fake_host(tmp_path))
    [p] = sriov_problems(host, [VfSelector.parse({"pf": "ens9"})])
    assert p.what == "no SR-IOV PF named ens9 (PFs here: ens1f0)"
    [p] = sriov_problems(host, [VfSelector.parse({"vendor": "15b3"})])
    assert p.what == "no VF matches vendor=15b3 (here: ens1f0 VFs 0-3 (8086:1889, iavf))"


@pytest.mark.parametrize("host", [LocalHost(), ViaCommands()], ids=["local", "remote"])
def test_doctor_checks(tmp_path, host):
    fake = build_fake_host(tmp_path, [FakePf(), FakePf("ens1f1", "0000:3b:00.1", num_vfs=0, vf_slot=6)])
    checks = {c.name: c for c in hc.sriov_checks(host, str(fake.sysfs), str(fake.proc), str(fake.modules))}
    assert checks["sr-iov ens1f0"].status == "pass" and checks["sr-iov ens1f0"].detail == "ens1f0 (ice): 4/8 VFs configured"
    assert checks["sr-iov ens1f1"].status == "warn" and "sriov: {ens1f1: N}" in checks["sr-iov ens1f1"].fix
    assert checks["vfio-pci"].status == "pass" and "module" in checks["vfio-pci"].detail
    assert checks["sr-iov usable"].status == "pass" and checks["sr-iov usable"].detail == "4 VFs on ens1f0"
    shared = build_fake_host(tmp_path / "s", [FakePf(shared_group=True, num_vfs=2)], vfio_module=False)
    checks = {c.name: c for c in hc.sriov_checks(host, str(shared.sysfs), str(shared.proc), str(shared.modules))}
    assert checks["sr-iov ens1f0"].detail.endswith("2 not alone in their IOMMU group")
    assert checks["sr-iov isolation"].status == "warn" and "ACS" in checks["sr-iov isolation"].fix
    assert checks["sr-iov vfio-pci"].status == "warn" and "modprobe vfio-pci" in checks["sr-iov vfio-pci"].fix
    assert checks["sr-iov usable"].status == "warn" and "vfio-pci" not in checks


# --- provenance and the guest side -------------------------------------------------------------
def test_pci_ids_names(tmp_path):
    ids = tmp_path / "pci.ids"
    ids.write_text("# comment\n8086  Intel Corporation\n\t1592  Ethernet Controller E810-C for QSFP\n"
                   "\t\t8086 0002  subsystem line\n\t1889  Ethernet Adaptive Virtual Function\n"
                   "15b3  Mellanox Technologies\n\t101e  ConnectX Family mlx5Gen Virtual Function\n")
    assert pci_name("8086", "1592", (ids,)) == "Intel Corporation Ethernet Controller E810-C for QSFP"
    assert pci_name("15b3", "101e", (ids,)) == "Mellanox Technologies ConnectX Family mlx5Gen Virtual Function"
    assert pci_name("8086", "ffff", (ids,)) == "Intel Corporation"
    assert pci_name("abcd", "0001", (ids, tmp_path / "missing")) is None


ALIASES = ("alias pci:v00008086d000010EDsv*sd*bc*sc*i* ixgbevf\n"
           "alias pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_core\n"
           "alias pci:v00008086d00001889sv*sd*bc*sc*i* iavf\n")


def test_guest_driver_support(tmp_path):
    fake = build_fake_host(tmp_path)
    vf = snapshot(fake).pfs[0].vfs[0]  # an E810 VF, 8086:1889, on iavf
    full = tmp_path / "full" / "6.1.0-44-amd64"
    full.mkdir(parents=True)
    (full / "modules.alias").write_text(ALIASES)
    cloud = tmp_path / "cloud" / "6.1.0-44-cloud-amd64"
    cloud.mkdir(parents=True)
    (cloud / "modules.alias").write_text(ALIASES.replace("iavf", "nothing").replace("1889", "0000"))
    assert guest_vf_problem("linux-vm", vf, guest_modules=full) is None
    assert guest_vf_problem("linux-vm", vf, guest_modules=cloud) == (
        "the guest kernel 6.1.0-44-cloud-amd64 has no driver for VF 0000:3b:02.0 (8086:1889, iavf); "
        "Debian's linux-image-amd64 kernel has iavf, ixgbevf, mlx5_core")
    assert guest_vf_problem("osv", vf).startswith("osv has no driver for VF 0000:3b:02.0 (8086:1889, iavf)")
    assert "vioif" in guest_vf_problem("rumprun", vf)
    assert linux_driver_for("pci:v000015B3d0000101Esv000015B3sd00000000bc02sc00i00", full) == "mlx5_core"
    # a VF on vfio-pci is named by the host kernel's alias for its ids
    vf.driver = "vfio-pci"
    problem = guest_vf_problem("osv", vf, host_modules=full)
    assert problem.startswith("osv has no driver for VF 0000:3b:02.0 (8086:1889, iavf)")


def test_vf_modules_of_a_kernel(tmp_path):
    (tmp_path / "modules.dep").write_text(
        "kernel/drivers/net/ethernet/intel/ixgbevf/ixgbevf.ko:\n"
        "kernel/drivers/net/ethernet/mellanox/mlx5/core/mlx5_core.ko: kernel/x/mlxfw.ko\n")
    assert vf_modules_in(tmp_path) == ("ixgbevf", "mlx5_core")


def test_libvirt_start_errors_become_one_line(tmp_path):
    fake = build_fake_host(tmp_path)
    err = hostdev_start_error("unsupported configuration: host doesn't support passthrough of host PCI devices",
                              ["0000:ff:1f.7"], fake.sysfs)
    assert str(err) == "VF 0000:ff:1f.7: PCI device does not exist on this host"
    err = hostdev_start_error("unsupported configuration: host doesn't support passthrough of host PCI devices",
                              ["0000:3b:02.0"], fake.sysfs)
    assert str(err).startswith("VF 0000:3b:02.0: this host cannot pass PCI devices to guests (unsupported")
    assert hostdev_start_error("internal error: qemu unexpectedly closed the monitor", ["0000:3b:02.0"],
                               fake.sysfs) is None


def test_libvirt_hostdev_network_errors(tmp_path):
    fake = build_fake_host(tmp_path, [FakePf(), FakePf("ens1f1", "0000:3b:00.1", num_vfs=0, vf_slot=6)])
    msg = "internal error: No usable Vf's present on SRIOV PF X"
    assert str(hostdev_network_start_error(msg, "tb-net", "ens9", fake.sysfs)) == (
        "hostdev network tb-net: PF ens9 does not exist on this host")
    assert "PF ens1f1 has no VFs enabled (fix: set `sriov: {ens1f1: N}`" in str(
        hostdev_network_start_error(msg, "tb-net", "ens1f1", fake.sysfs))
    assert str(hostdev_network_start_error("boom", "tb-net", "ens1f0", fake.sysfs)) == (
        "hostdev network tb-net: libvirt could not start it: boom")


def test_fake_records_every_write_as_json(tmp_path):
    fake = build_fake_host(tmp_path)
    fake.clear_logs()
    fake.write(fake.sysfs / "bus/pci/devices/0000:3b:00.0/sriov_drivers_autoprobe", "0")
    assert json.loads((tmp_path / "writes.log").read_text()) == ["bus/pci/devices/0000:3b:00.0/sriov_drivers_autoprobe",
                                                                 "0"]
    with pytest.raises(ValueError, match="outside"):
        fake.write(tmp_path / "elsewhere", "x")
    assert not Path(tmp_path / "elsewhere").exists()
