"""VF leases on a fake host: allocation, release on success/failure/Ctrl-C, exhaustion, two
processes never sharing a VF, reconciliation and `testbed gc` after a SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from orchestrator.errors import LaunchError, NotRunnableError, ResourceBusyError
from orchestrator.ledger import Ledger, collect_garbage, live_resources, reclaimer_for
from orchestrator.net.sriov import LEDGER_KIND, VfPool, VfSelector, host_sriov
from orchestrator.net.sriov.config import bind_driver
from orchestrator.net.sriov.fake import FakePf, FakeSystem, build_fake_host
from orchestrator.net.sriov.pool import VfLock, read_record, vf_states

PF0 = [VfSelector(pf="ens1f0")]


class Host:
    """A fake host plus the directories a run uses."""

    def __init__(self, root: Path, **build):
        self.root = root
        self.fake = build_fake_host(root / "host", **build)
        self.state = root / "state"
        self.ledgers = root / "ledger"

    def pool(self, run_id: str = "r1", selectors=PF0) -> VfPool:
        return VfPool.from_host(self.fake.sysfs, selectors, Ledger(run_id, self.ledgers), system=self.fake,
                                state=self.state)

    def vf(self, index: int, pf: int = 0):
        return host_sriov(self.fake.sysfs, self.fake.proc, self.fake.modules).pfs[pf].vfs[index]

    def settings(self, index: int) -> dict:
        return self.fake.vf_state("ens1f0", index)


PRISTINE = {"mac": "00:00:00:00:00:00", "vlan": 0, "spoofchk": True, "trust": False}


@pytest.fixture
def host(tmp_path) -> Host:
    return Host(tmp_path, pfs=[FakePf(num_vfs=3)], vfio_loaded=True)


def assert_pristine(host: Host, index: int) -> None:
    vf = host.vf(index)
    assert (vf.driver, vf.netdev, vf.driver_override) == ("iavf", f"ens1f0v{index}", None)
    assert host.settings(index) == PRISTINE
    assert read_record(host.state, vf.pci_address) is None


# --- allocation and release ------------------------------------------------------------------
def test_lease_configures_and_release_restores(host):
    pool = host.pool()
    lease = pool.lease(owner="tb-r1-redis-10", mac="52:54:00:00:00:01", vlan=100, spoofchk=False, trust=True,
                       driver="vfio-pci")
    assert (lease.vf.pci_address, lease.vf.index, lease.vf.pf) == ("0000:3b:02.0", 0, "ens1f0")
    assert host.settings(0) == {"mac": "52:54:00:00:00:01", "vlan": 100, "spoofchk": False, "trust": True}
    assert host.vf(0).driver == "vfio-pci"
    [(kind, name, meta)] = pool.ledger.live()
    assert (kind, name, meta["owner"], meta["original_driver"]) == (LEDGER_KIND, "0000:3b:02.0", "tb-r1-redis-10", "iavf")
    assert read_record(host.state, "0000:3b:02.0")["lease_id"] == lease.lease_id
    states = vf_states(host_sriov(host.fake.sysfs, host.fake.proc, host.fake.modules), host.state)
    assert [(s.holder, s.stale) for s in states] == [(f"tb-r1-redis-10 (run r1, pid {os.getpid()})", None),
                                                     (None, None), (None, None)]
    second = pool.lease(owner="tb-r1-redis-11", mac="52:54:00:00:00:02")
    assert second.vf.index == 1 and host.vf(1).driver == "iavf"  # driver=None: left for libvirt managed='yes'
    assert lease.release() == []
    assert_pristine(host, 0)
    assert lease.release() == []  # idempotent
    with second:
        pass
    assert_pristine(host, 1)
    assert pool.ledger.live() == []


def test_provenance(host):
    lease = host.pool().lease(owner="dom", mac="52:54:00:00:00:01", vlan=7)
    p = lease.provenance()
    assert p == {
        "sriov_pf": "ens1f0", "sriov_pf_pci": "0000:3b:00.0", "sriov_pf_driver": "ice",
        "sriov_pf_driver_version": "6.1.0-fake", "sriov_firmware": "4.20 0x8001778b 1.3346.0", "sriov_nic": "8086:1592",
        "sriov_nic_model": p["sriov_nic_model"], "sriov_pf_link": "up", "sriov_pf_speed_mbps": 100000,
        "sriov_vf_pci": "0000:3b:02.0", "sriov_vf_index": 0, "sriov_vf_id": "8086:1889", "sriov_vf_host_driver": "iavf",
        "sriov_vf_driver": "iavf",
        "sriov_numa_node": 0, "sriov_iommu_group": lease.vf.iommu_group, "sriov_mac": "52:54:00:00:00:01",
        "sriov_vlan": 7, "sriov_spoofchk": None, "sriov_trust": None}
    assert p["sriov_nic_model"] in ("8086:1592", "Intel Corporation Ethernet Controller E810-C for QSFP")
    lease.release()
    bound = host.pool().lease(owner="dom", driver="vfio-pci").provenance()
    assert (bound["sriov_vf_host_driver"], bound["sriov_vf_driver"]) == ("vfio-pci", "iavf")


def test_release_when_the_run_fails_or_is_interrupted(host):
    pool = host.pool()
    with pytest.raises(RuntimeError), pool.lease(owner="dom", mac="52:54:00:00:00:01", driver="vfio-pci"):
        raise RuntimeError("benchmark failed")
    assert_pristine(host, 0)
    with pytest.raises(KeyboardInterrupt), pool.lease(owner="dom", mac="52:54:00:00:00:01", driver="vfio-pci"):
        raise KeyboardInterrupt
    assert_pristine(host, 0)
    assert pool.ledger.live() == []


@pytest.mark.parametrize("fault", [
    dict(match=["ip", "set", "vlan"], error="RTNETLINK answers: Operation not supported"),
    dict(match=["write", "bus/pci/drivers_probe"], interrupt=True),  # Ctrl-C half-way through the vfio bind
    dict(match=["ethtool"], interrupt=True),  # Ctrl-C after everything was set
])
def test_setup_failure_or_ctrl_c_leaves_no_lease(host, fault):
    pool = host.pool()
    host.fake.inject(**fault)
    with pytest.raises((LaunchError, KeyboardInterrupt)):
        pool.lease(owner="dom", mac="52:54:00:00:00:01", vlan=5, driver="vfio-pci")
    assert_pristine(host, 0)
    assert pool.ledger.live() == []
    assert len(pool.free()) == 3
    assert pool.lease(owner="dom", mac="52:54:00:00:00:01").vf.index == 0  # and it can be leased again


def test_exhaustion_is_one_line(host):
    pool = host.pool()
    leases = [pool.lease(owner=f"dom{i}") for i in range(3)]
    with pytest.raises(ResourceBusyError) as err:
        pool.lease(owner="dom3")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == ("sriov: no free VF among the 3 matching pf=ens1f0: 3 leased "
                   f"(e.g. 0000:3b:02.0 by dom0 (run r1, pid {os.getpid()}))")
    for lease in leases:
        lease.release()


def test_a_lock_held_only_in_passing_is_waited_for(host):
    """Another process reconciling the last free VF holds its lock for a moment, with no lease record:
    lease() waits for it instead of calling the pool exhausted."""
    pool = host.pool()
    leases = [pool.lease(owner=f"dom{i}") for i in range(3)]
    leases[0].release()
    passing = VfLock(host.state, "0000:3b:02.0")
    assert passing.try_acquire()
    threading.Timer(0.05, passing.release).start()
    started = time.monotonic()
    lease = pool.lease(owner="waiter")
    assert lease.vf.index == 0 and time.monotonic() - started >= 0.04  # it waited for the passing holder
    for held in (lease, *leases[1:]):
        held.release()


def test_selectors_and_numa_preference(tmp_path):
    h = Host(tmp_path, pfs=[FakePf(num_vfs=2), FakePf("ens1f1", "0000:3b:00.1", num_vfs=2, vf_slot=6, numa_node=1)])
    pool = h.pool(selectors=[VfSelector.parse({"pf": "ens1f0", "vfs": "1"}), VfSelector.parse({"pf": "ens1f1"})])
    assert [vf.pci_address for _, vf in pool.candidates] == ["0000:3b:02.1", "0000:3b:06.0", "0000:3b:06.1"]
    assert pool.lease(owner="a", numa_node=1).vf.pci_address == "0000:3b:06.0"
    assert pool.lease(owner="b").vf.pci_address == "0000:3b:02.1"


def test_not_runnable_hosts(tmp_path):
    for build, words in ((dict(iommu=False), "no IOMMU"), (dict(pfs=[]), "no SR-IOV PF"),
                         (dict(pfs=[FakePf(num_vfs=0)]), "no VFs enabled")):
        h = Host(tmp_path / words.replace(" ", "-"), **build)
        with pytest.raises(NotRunnableError) as err:
            h.pool()
        assert str(err.value).startswith(f"sriov: {words}") and "(fix: " in str(err.value)
    h = Host(tmp_path / "sel")
    with pytest.raises(NotRunnableError, match="no SR-IOV PF named ens9"):
        h.pool(selectors=[VfSelector(pf="ens9")])
    with pytest.raises(TypeError, match="ledger"):
        VfPool.from_host(h.fake.sysfs, PF0, None, system=h.fake)


# --- VFs that must not be handed out ------------------------------------------------------------
def test_vfs_in_use_outside_testbed_are_skipped_with_the_reason(tmp_path):
    h = Host(tmp_path, pfs=[FakePf(num_vfs=5)], vfio_loaded=True)
    pool = h.pool()
    h.fake.set_address("ens1f0v0", "192.0.2.7/24")
    h.fake.rebind_outside("0000:3b:02.1", "vfio-pci")
    h.fake.open_vfio(h.vf(1).iommu_group, pid=4242, comm="qemu-system-x86")
    h.fake.remove_device("0000:3b:02.4")
    h.fake.add_route("ens1f0v2", "198.51.100.0/24")
    h.fake.write(h.fake.sysfs / "bus/pci/devices/0000:3b:02.3/driver_override", "uio_pci_generic")
    with pytest.raises(ResourceBusyError) as err:
        pool.lease(owner="dom")
    assert "5 unusable (e.g. 0000:3b:02.0: netdev ens1f0v0 has address 192.0.2.7/24 (the host uses it))" in str(err.value)
    assert pool.notes == [
        "VF 0000:3b:02.0 skipped: netdev ens1f0v0 has address 192.0.2.7/24 (the host uses it)",
        "VF 0000:3b:02.1 skipped: driver changed from iavf to vfio-pci since the pool started",
        "VF 0000:3b:02.2 skipped: netdev ens1f0v2 carries routes (198.51.100.0/24) (the host uses it)",
        "VF 0000:3b:02.3 skipped: driver_override is uio_pci_generic (another tool is rebinding it)",
        "VF 0000:3b:02.4 skipped: vanished since the pool started"]
    # a fresh pool sees VF 1 on vfio-pci from the start: now the open /dev/vfio is the reason
    fresh = h.pool("r2")
    with pytest.raises(ResourceBusyError):
        fresh.lease(owner="dom")
    assert (f"VF 0000:3b:02.1 skipped: opened through /dev/vfio/{h.vf(1).iommu_group} by pid 4242 (qemu-system-x86), "
            "which testbed did not lease it to") in fresh.notes


def test_no_vf_while_its_pf_is_assigned_whole(host):
    pool = host.pool()
    host.fake.rebind_outside("0000:3b:00.0", "vfio-pci")
    with pytest.raises(ResourceBusyError, match=r"its PF 0000:3b:00.0 is on vfio-pci \(assigned whole elsewhere\?\)"):
        pool.lease(owner="dom")


def test_vf_count_change_refused_while_leased(host):
    pool = host.pool()
    lease = pool.lease(owner="dom")
    with pytest.raises(ResourceBusyError, match="cannot change its VF count from 3 while VFs are leased"):
        pool.set_num_vfs("ens1f0", 8)
    lease.release()
    assert pool.set_num_vfs("ens1f0", 8) is True
    assert host_sriov(host.fake.sysfs, host.fake.proc, host.fake.modules).pfs[0].num_vfs == 8


def test_libvirt_managed_lease_restores_what_libvirt_reattached(tmp_path):
    """A VF kept on vfio-pci (autoprobe off) leased for managed='yes': libvirt's reattach reprobes the
    VF's own driver; release puts it back on vfio-pci."""
    h = Host(tmp_path, pfs=[FakePf(num_vfs=1)], vfio_loaded=True)
    bind_driver(h.fake, "0000:3b:02.0", "vfio-pci")
    pool = h.pool()
    lease = pool.lease(owner="dom", mac="52:54:00:00:00:01")  # driver=None: libvirt binds
    h.fake.rebind_outside("0000:3b:02.0", "iavf")  # what libvirt's reattach leaves at domain shutdown
    assert lease.release() == []
    assert h.vf(0).driver == "vfio-pci" and pool.ledger.live() == []
    # a driver neither testbed nor libvirt would set is left alone, and the VF is not handed out
    lease = pool.lease(owner="dom")
    h.fake.rebind_outside("0000:3b:02.0", "uio_pci_generic")
    [problem] = lease.release()
    assert problem == "VF 0000:3b:02.0 is bound to uio_pci_generic now, not to a driver testbed set; left as it is"
    message = "0000:3b:02.0: not restored after an earlier lease: VF 0000:3b:02.0 is bound"
    with pytest.raises(ResourceBusyError, match=message):
        pool.lease(owner="next")


# --- across processes ------------------------------------------------------------------------
def _worker(root: str, run_id: str, rounds: int, result: "multiprocessing.Queue") -> None:
    h = Host.__new__(Host)
    h.root = Path(root)
    h.fake = FakeSystem(h.root / "host" / "sys", h.root / "host" / "proc", h.root / "host" / "lib" / "modules",
                        h.root / "host" / "dev")
    h.state, h.ledgers = h.root / "state", h.root / "ledger"
    pool = h.pool(run_id)
    got, busy, collisions = 0, 0, 0
    for i in range(rounds):
        held = []
        for _ in range(2):  # two workers x two leases > three VFs: some must find none free
            try:
                held.append(pool.lease(owner=f"{run_id}-{i}", mac="52:54:00:00:00:%02x" % (i % 256)))
            except ResourceBusyError:
                busy += 1
        for lease in held:
            marker = h.root / f"holding-{lease.pci_address}"
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.close(fd)
            except FileExistsError:
                collisions += 1
                continue
            got += 1
            time.sleep(0.002)
            marker.unlink()
        for lease in held:
            lease.release()
    result.put((run_id, got, busy, collisions))


def test_two_processes_never_get_the_same_vf(host):
    ctx = multiprocessing.get_context("spawn")
    result = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(host.root), f"p{n}", 25, result)) for n in range(2)]
    for p in procs:
        p.start()
    outcomes = [result.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(o[3] for o in outcomes) == 0, outcomes  # never two holders of one VF (without the flock: ~8)
    assert all(o[1] > 0 for o in outcomes) and sum(o[2] for o in outcomes) > 0, outcomes  # both held, they contended
    for i in range(3):
        assert_pristine(host, i)
    assert all(not live_resources(p) for p in host.ledgers.glob("*.jsonl"))


def _lease_then_hang(root: str, ready: str, mid_setup: bool) -> None:
    h = Host.__new__(Host)
    h.root = Path(root)
    h.fake = FakeSystem(h.root / "host" / "sys", h.root / "host" / "proc", h.root / "host" / "lib" / "modules",
                        h.root / "host" / "dev")
    h.state, h.ledgers = h.root / "state", h.root / "ledger"
    pool = h.pool("killed")
    if mid_setup:  # SIGKILL arrives between unbinding iavf and probing vfio-pci
        h.fake.inject(["write", "bus/pci/drivers_probe"], kill=True)
    pool.lease(owner="tb-killed-redis-10", mac="52:54:00:00:00:66", vlan=9, trust=True, driver="vfio-pci")
    Path(ready).write_text("leased")
    time.sleep(120)


def _killed_run(host: Host, mid_setup: bool) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = host.root / "ready"
    p = ctx.Process(target=_lease_then_hang, args=(str(host.root), str(ready), mid_setup))
    p.start()
    deadline = time.monotonic() + 60
    while not ready.exists() and p.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if p.is_alive():
        os.kill(p.pid, signal.SIGKILL)
    p.join(timeout=30)
    assert p.exitcode == -signal.SIGKILL


@pytest.mark.parametrize("mid_setup", [False, True], ids=["while-leased", "mid-setup"])
def test_reconciliation_after_sigkill(host, mid_setup):
    _killed_run(host, mid_setup)
    vf = host.vf(0)
    assert vf.driver == (None if mid_setup else "vfio-pci")  # left as the dead run had it
    [ledger_file] = host.ledgers.glob("killed.jsonl")
    assert [n for _, n, _ in live_resources(ledger_file)] == ["0000:3b:02.0"]  # written before the VF was touched
    [state, *_] = vf_states(host_sriov(host.fake.sysfs, host.fake.proc, host.fake.modules), host.state)
    assert state.holder is None and state.stale.startswith("tb-killed-redis-10 (run killed, pid ")
    pool = host.pool("r2")
    assert pool.notes[0].startswith("VF 0000:3b:02.0: reclaimed from run killed (tb-killed-redis-10, pid ")
    assert pool.notes[0].endswith("), which no longer holds it")
    assert_pristine(host, 0)
    assert live_resources(ledger_file) == []
    assert pool.lease(owner="again").vf.index == 0


def test_gc_reclaims_a_killed_runs_vf(host):
    _killed_run(host, mid_setup=False)
    done = collect_garbage(host.ledgers)
    assert done == ["killed: reclaimed sriov-vf 0000:3b:02.0"]
    assert_pristine(host, 0)
    assert host.pool("r3").notes == []


def test_gc_leaves_a_vf_another_run_took_over(host):
    _killed_run(host, mid_setup=False)
    [(_, name, meta)] = live_resources(next(host.ledgers.glob("killed.jsonl")))
    pool = host.pool("r2")  # reconciles, then leases it
    lease = pool.lease(owner="new", mac="52:54:00:00:00:77")
    reclaimer_for(LEDGER_KIND).reclaim(name, meta)  # a late `testbed gc` for the dead run
    assert host.settings(0)["mac"] == "52:54:00:00:00:77"
    lease.release()


def test_same_process_safety_net_releases_a_forgotten_lease(host):
    pool = host.pool()
    pool.lease(owner="forgotten", mac="52:54:00:00:00:01", driver="vfio-pci")
    assert pool.ledger.reclaim_live() == ["sriov-vf 0000:3b:02.0"]
    assert_pristine(host, 0)
    assert len(pool.free()) == 3


def test_unrestorable_vf_stays_recorded_for_gc(host):
    pool = host.pool()
    lease = pool.lease(owner="dom", mac="52:54:00:00:00:01")
    host.fake.inject(["ip", "set", "mac"], error="RTNETLINK answers: Device or resource busy")
    problems = lease.release()
    assert problems and "could not restore mac 00:00:00:00:00:00" in problems[0]
    assert read_record(host.state, "0000:3b:02.0") is not None and pool.ledger.live()
    assert pool.lease(owner="next").vf.index == 0  # the next holder reconciles it first
    assert "reclaimed from run r1 (dom, pid" in pool.notes[-1]
