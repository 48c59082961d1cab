"""Lab-host doctor checks on a fake /sys, /proc and /dev (roots are parameters)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.hosts.local import LocalHost
from orchestrator.provision import host_checks as hc
from orchestrator.checks import DoctorCheck
from orchestrator.provision.doctor import declared_tools, run_checks


class ViaCommands:
    """A Host that is not LocalHost, so checks take their remote code path (commands, no Path access);
    the commands still run for real on this machine."""

    name = "via-commands"

    def __init__(self):
        self._local = LocalHost()

    def run(self, argv, **kw):
        return self._local.run(argv, **kw)

    def which(self, tool):
        return self._local.which(tool)

    def read_text(self, path, *, timeout=10):
        res = self._local.run(["cat", "--", path], timeout=timeout, check=False)
        if not res.ok:
            raise FileNotFoundError(2, res.stderr.strip(), path)
        return res.stdout


HOSTS = [LocalHost(), ViaCommands()]
IDS = ["local", "commands"]


def fake_sysfs(root: Path, pfs: dict[str, tuple[int, int]]) -> Path:
    """class/net/<pf>/device -> devices/<pci> with sriov_totalvfs / sriov_numvfs; plus a plain NIC."""
    drivers = root / "bus" / "pci" / "drivers" / "ice"
    drivers.mkdir(parents=True)
    (root / "class" / "net").mkdir(parents=True)
    for i, (pf, (total, num)) in enumerate(pfs.items()):
        dev = root / "devices" / f"0000:3b:00.{i}"
        (dev / "net" / pf).mkdir(parents=True)
        (dev / "sriov_totalvfs").write_text(f"{total}\n")
        (dev / "sriov_numvfs").write_text(f"{num}\n")
        (dev / "driver").symlink_to(drivers)
        (dev / "net" / pf / "device").symlink_to(dev)
        (root / "class" / "net" / pf).symlink_to(dev / "net" / pf)
    plain = root / "devices" / "0000:00:03.0"
    (plain / "net" / "eth0").mkdir(parents=True)
    (plain / "net" / "eth0" / "device").symlink_to(plain)
    (root / "class" / "net" / "eth0").symlink_to(plain / "net" / "eth0")
    return root


MEMINFO = """MemTotal:       16318412 kB
MemFree:         1000000 kB
HugePages_Total:     512
HugePages_Free:      500
HugePages_Rsvd:        0
Hugepagesize:       2048 kB
"""


def fake_proc(root: Path, cmdline: str, meminfo: str = MEMINFO) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cmdline").write_text(cmdline + "\n")
    (root / "meminfo").write_text(meminfo)
    return root


@pytest.mark.parametrize("host", HOSTS, ids=IDS)
def test_sriov_pfs_with_vfs(tmp_path: Path, host):
    sys_root = fake_sysfs(tmp_path / "sys", {"ens1f0": (64, 8), "ens1f1": (64, 0)})
    checks = hc.sriov_checks(host, str(sys_root))
    by = {c.name: c for c in checks}
    assert by["sr-iov ens1f0"].status == "pass" and by["sr-iov ens1f0"].detail == "ens1f0 (ice): 8/64 VFs configured"
    assert by["sr-iov ens1f1"].status == "warn" and "0/64" in by["sr-iov ens1f1"].detail
    assert "sriov: {ens1f1: N}" in by["sr-iov ens1f1"].fix
    assert "sr-iov eth0" not in by


@pytest.mark.parametrize("host", HOSTS, ids=IDS)
def test_no_sriov_nic(tmp_path: Path, host):
    sys_root = fake_sysfs(tmp_path / "sys", {})
    [c] = hc.sriov_checks(host, str(sys_root))
    assert c.status == "warn" and "no SR-IOV capable NIC" in c.detail


@pytest.mark.parametrize("host", HOSTS, ids=IDS)
def test_iommu(tmp_path: Path, host):
    sys_root = tmp_path / "sys"
    (sys_root / "kernel" / "iommu_groups").mkdir(parents=True)
    proc = fake_proc(tmp_path / "proc", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet")
    [c] = hc.iommu_checks(host, str(proc), str(sys_root))
    assert c.status == "warn" and c.detail.startswith("0 IOMMU groups; kernel arguments: none")
    assert "iommu: true" in c.fix
    for g in range(3):
        (sys_root / "kernel" / "iommu_groups" / str(g)).mkdir()
    fake_proc(proc, "BOOT_IMAGE=/vmlinuz intel_iommu=on iommu=pt quiet")
    [c] = hc.iommu_checks(host, str(proc), str(sys_root))
    assert c.status == "pass" and c.detail == "3 IOMMU groups; kernel arguments: intel_iommu=on iommu=pt"


@pytest.mark.parametrize("host", HOSTS, ids=IDS)
def test_hugepages_and_memory(tmp_path: Path, host):
    proc = fake_proc(tmp_path / "proc", "quiet")
    [c] = hc.hugepage_checks(host, str(proc))
    assert c.status == "pass" and c.detail == "512 total, 500 free, 2 MiB each"
    fake_proc(proc, "quiet", MEMINFO.replace("HugePages_Total:     512", "HugePages_Total:       0"))
    [c] = hc.hugepage_checks(host, str(proc))
    assert c.status == "warn" and "hugepages: N" in c.fix
    cores, mem = hc.cpu_memory_checks(host, str(proc))
    assert mem.status == "pass" and mem.detail == "15935 MiB"
    assert cores.detail.split()[0] == str(os.cpu_count())


@pytest.mark.parametrize("host", HOSTS, ids=IDS)
def test_governor(tmp_path: Path, host):
    sys_root = tmp_path / "sys"
    [c] = hc.governor_checks(host, str(sys_root))
    assert c.status == "warn" and "no cpufreq" in c.detail
    f = sys_root / "devices" / "system" / "cpu" / "cpu0" / "cpufreq" / "scaling_governor"
    f.parent.mkdir(parents=True)
    f.write_text("powersave\n")
    [c] = hc.governor_checks(host, str(sys_root))
    assert c.status == "warn" and c.detail.startswith("powersave")
    f.write_text("performance\n")
    [c] = hc.governor_checks(host, str(sys_root))
    assert c.status == "pass"


@pytest.mark.parametrize("host", HOSTS, ids=IDS)
def test_kvm_device(tmp_path: Path, host):
    [c] = hc.kvm_checks(host, str(tmp_path))
    assert c.status == "fail" and "kvm_intel" in c.fix
    (tmp_path / "kvm").write_text("")  # a regular file is not a character device
    [c] = hc.kvm_checks(host, str(tmp_path))
    assert c.status == "fail"
    [c] = hc.kvm_checks(host, "/dev") if Path("/dev/kvm").exists() else [hc.Check("kvm device", "pass", "VM probe")]
    assert c.status == "pass" and "VM probe" in c.detail


@pytest.mark.parametrize("host", HOSTS, ids=IDS)
def test_disk_on_missing_testbed_home(tmp_path: Path, host):
    [c] = hc.disk_checks(host, str(tmp_path / "not" / "yet" / "there"))
    assert c.status in ("pass", "warn", "fail") and "GiB free on" in c.detail
    [c] = hc.disk_checks(host, str(tmp_path), warn_gb=1e9, fail_gb=0)
    assert c.status == "warn"
    [c] = hc.disk_checks(host, str(tmp_path), warn_gb=1e9, fail_gb=1e8)
    assert c.status == "fail" and "TESTBED_HOME" in c.fix


def test_registered_and_tools():
    assert "lab-host" in DoctorCheck.registry.kinds()
    checks = {c.name: c for c in run_checks(LocalHost())}
    tools = declared_tools()
    for name in ("kvm device", "iommu", "sr-iov", "hugepages", "cpu governor", "disk", "cpu cores", "memory"):
        assert name in checks, name
    for tool in ("netperf", "netserver", "wrk", "qemu-system-x86_64", "virsh"):
        assert tool in tools.tools and f"tool {tool}" in checks
    assert "tool ansible-runner" in checks and "tool sshd" in checks
    assert not [c for c in checks.values() if "check failed to run" in c.detail]
