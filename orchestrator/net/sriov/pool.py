"""Crash-safe VF leases: one run at a time per VF, across processes, restored on every path.

A lease is three things, made in this order:

1. an flock on `STATE/<pci>.lock`, held for the lease's life. The kernel drops it when the
   holder dies (SIGKILL included), so "lock held" is the truth about liveness; lock files are
   never deleted (deleting a lock file lets two processes lock two different inodes);
2. the ledger entry (kind `sriov-vf`), written before the VF is touched;
3. `STATE/<pci>.lease.json`, the record of what to restore (MAC/VLAN/spoof check/trust as the
   PF reported them, and the original driver), written atomically before the VF is touched.

Whoever next holds the lock and finds a record left behind (a later pool, or `testbed gc`
through the ledger reclaimer) restores the VF from it, then drops the record. At pool start the
selected VFs are reconciled with sysfs: a VF that vanished, changed driver, is opened through
/dev/vfio by a process testbed did not lease it to, or whose netdev the host uses, is skipped
with the reason recorded in `pool.notes`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import paths
from ...errors import LaunchError, NotRunnableError, ResourceBusyError, TestbedError
from ...ledger import Ledger, Reclaimer, process_start_time
from .config import (VFIO, VfSettings, apply_vf_settings, bind_driver, netdev_in_use, read_vf_settings,
                     restore_driver, set_num_vfs)
from .discovery import (SYSFS, HostSriov, PhysicalFunction, VirtualFunction, driver_of, host_sriov,
                        pci_device_dir, pci_exists, virtual_function)
from .guest import linux_driver_for, vf_modalias
from .preflight import sriov_problems
from .provenance import vf_provenance
from ...config.vf_selectors import VfSelector, selected
from .system import LocalSystem, system_from_spec

log = logging.getLogger(__name__)

LEDGER_KIND = "sriov-vf"
# A lock held with no lease record is a reconcile or a setup in progress elsewhere: worth a short wait.
TRANSIENT_WAIT = 1.0
# Leases held by this process, so the ledger's same-process safety net can release them properly.
_LIVE: dict[str, "VfLease"] = {}


def state_dir() -> Path:
    return paths.home() / "sriov"


# --- locks and records -------------------------------------------------------------------
class VfLock:
    """An exclusive, non-blocking flock on STATE/<pci>.lock."""

    def __init__(self, directory: Path, pci: str):
        self.path = directory / f"{pci}.lock"
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = None


def record_path(directory: Path, pci: str) -> Path:
    return directory / f"{pci}.lease.json"


def read_record(directory: Path, pci: str) -> dict | None:
    try:
        return json.loads(record_path(directory, pci).read_text())
    except (OSError, ValueError):  # absent; a torn record cannot exist (written by rename)
        return None


def write_record(directory: Path, record: dict) -> None:
    path = record_path(directory, record["pci"])
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(record, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _release_in_ledger_file(path: str | None, pci: str) -> None:
    """Mark a dead run's ledger entry released (the reconciling process is not its owner)."""
    if path and Path(path).exists():
        with open(path, "a") as fh:
            fh.write(json.dumps({"op": "release", "kind": LEDGER_KIND, "name": pci, "t": time.time()}) + "\n")


def restore_from_record(system: LocalSystem, record: dict) -> list[str]:
    """Put a VF back as the record says; returns what could not be restored (empty = done).
    A VF still opened through /dev/vfio (its guest is alive) is not touched."""
    pci = record["pci"]
    if not pci_exists(system.sysfs, pci):
        return []  # vanished (VF count changed, NIC removed): nothing left to restore
    vf = virtual_function(system.sysfs, record["pf"], record["pf_pci"], record["index"],
                          pci_device_dir(system.sysfs, pci).resolve())
    if vf.driver == VFIO and vf.iommu_group is not None:
        users = system.vfio_group_users(vf.iommu_group)
        if users:
            return [f"VF {pci} is still open through /dev/vfio/{vf.iommu_group} by pid {users[0]} "
                    f"({system.process_name(users[0])}); stop it first"]
    problems = []
    if record.get("driver") is not None or vf.driver != record.get("original_driver"):
        # what testbed or libvirt (managed='yes') leaves: vfio-pci, unbound half-way through a bind,
        # or the VF's own driver (libvirt's reattach reprobes it)
        native = linux_driver_for(vf_modalias(vf), system.kernel_modules())
        expected = {record.get("original_driver"), record.get("driver"), VFIO, None, native}
        if vf.driver in expected:
            try:
                restore_driver(system, pci, record.get("original_driver"))
            except TestbedError as exc:
                problems.append(str(exc))
        else:
            problems.append(f"VF {pci} is bound to {vf.driver} now, not to a driver testbed set; left as it is")
    restore = VfSettings(**record.get("restore", {}))
    if restore.ip_args():
        try:
            apply_vf_settings(system, record["pf"], record["index"], restore)
        except TestbedError as exc:
            problems.append(f"VF {pci}: could not restore {' '.join(restore.ip_args())}: {exc}")
    return problems


# --- leases --------------------------------------------------------------------------------
@dataclass
class VfLease:
    """One VF held by one owner. release() is idempotent; use it as a context manager."""

    vf: VirtualFunction
    pf: PhysicalFunction
    owner: str
    settings: VfSettings
    driver: str | None  # the driver testbed bound (None: left as found, e.g. for libvirt managed='yes')
    record: dict
    _pool: "VfPool" = field(repr=False)
    _lock: VfLock = field(repr=False)
    _facts: dict = field(default_factory=dict, repr=False)
    released: bool = False

    @property
    def pci_address(self) -> str:
        return self.vf.pci_address

    @property
    def lease_id(self) -> str:
        return self.record["lease_id"]

    def provenance(self) -> dict[str, Any]:
        """PF, VF PCI address, drivers, NIC model, firmware where readable, MAC/VLAN: for every sample."""
        return dict(self._facts)

    def release(self) -> list[str]:
        """Restore the VF and free it; returns what could not be restored (then the record and the
        ledger entry stay, so `testbed gc` tries again)."""
        if self.released:
            return []
        self.released = True
        _LIVE.pop(self.lease_id, None)
        try:
            problems = restore_from_record(self._pool.system, self.record)
            if problems:
                log.warning("VF %s: %s", self.pci_address, "; ".join(problems))
            else:
                record_path(self._pool.state_dir, self.pci_address).unlink(missing_ok=True)
                self._pool.ledger.release(LEDGER_KIND, self.pci_address)
            return problems
        finally:
            self._lock.release()

    def __enter__(self) -> "VfLease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class VfPool:
    """The VFs selectors pick on one host, leased one owner at a time."""

    def __init__(self, host: HostSriov, selectors: list[VfSelector], ledger: Ledger, *,
                 system: LocalSystem, state: Path | None = None, require_isolation: bool = True,
                 notes: list[str] | None = None):
        self.host = host
        self.selectors = list(selectors)
        self.ledger = ledger
        self.system = system
        self.state_dir = state or state_dir()
        self.require_isolation = require_isolation
        self.candidates = selected(host.pfs, self.selectors)
        self.notes: list[str] = notes if notes is not None else []  # VFs skipped or reclaimed, and why

    @classmethod
    def from_host(cls, sysfs: Path = SYSFS, selectors: list[VfSelector] | None = None, ledger: Ledger | None = None,
                  *, system: LocalSystem | None = None, state: Path | None = None,
                  require_iommu: bool = True) -> "VfPool":
        """Discover, check that SR-IOV can be used here (NotRunnableError with the reasons if not),
        and reconcile the selected VFs with what earlier runs left."""
        if ledger is None:
            raise TypeError("VfPool needs the run's ledger: leases are entered in it before a VF is touched")
        system = system or LocalSystem(sysfs)
        host = host_sriov(system.sysfs, system.proc, system.modules)
        pool = cls(host, selectors or [], ledger, system=system, state=state, require_isolation=require_iommu)
        problems = [p for p in sriov_problems(host, selectors or [])
                    if require_iommu or p.key not in ("iommu", "isolation", "vfio-pci")]
        if problems:
            raise NotRunnableError("sriov: " + "; ".join(p.line() for p in problems))
        if pool.reconcile():  # reclaims may have rebound drivers: look again
            pool = cls(host_sriov(system.sysfs, system.proc, system.modules), selectors or [], ledger,
                       system=system, state=state, require_isolation=require_iommu, notes=pool.notes)
        return pool

    # --- reconciliation ------------------------------------------------------------------
    def reconcile(self) -> list[str]:
        """Reclaim what dead holders left: records of selected VFs and of VFs that vanished."""
        pcis = {vf.pci_address for _, vf in self.candidates}
        if self.state_dir.is_dir():
            pcis |= {p.name.removesuffix(".lease.json") for p in self.state_dir.glob("*.lease.json")}
        for pci in sorted(pcis):
            lock = VfLock(self.state_dir, pci)
            if not lock.try_acquire():
                continue  # a live holder
            try:
                self._reclaim_stale(pci)
            finally:
                lock.release()
        return self.notes

    def _reclaim_stale(self, pci: str) -> tuple[bool, str | None]:
        """With pci's lock held: restore from a record an earlier holder left. Returns (reclaimed,
        why the VF must not be used when it could not be restored)."""
        rec = read_record(self.state_dir, pci)
        if rec is None:
            return False, None
        who = f"run {rec.get('run_id')} ({rec.get('owner')}, pid {rec.get('pid')}), which no longer holds it"
        problems = restore_from_record(self.system, rec)
        if problems:
            self.notes.append(f"VF {pci}: left by {who}; not reclaimed: {'; '.join(problems)}")
            return False, "not restored after an earlier lease: " + "; ".join(problems)
        gone = "; the VF has vanished" if not pci_exists(self.system.sysfs, pci) else ""
        record_path(self.state_dir, pci).unlink(missing_ok=True)
        _release_in_ledger_file(rec.get("ledger_path"), pci)
        self.notes.append(f"VF {pci}: reclaimed from {who}{gone}")
        return True, None

    def _refresh(self, pf: PhysicalFunction, vf: VirtualFunction) -> VirtualFunction:
        """The pool's view of `vf` after a reclaim changed it (its restored driver is the expected one)."""
        if not pci_exists(self.system.sysfs, vf.pci_address):
            return vf
        fresh = virtual_function(self.system.sysfs, pf.name, pf.pci_address, vf.index,
                                 pci_device_dir(self.system.sysfs, vf.pci_address).resolve())
        self.candidates = [(p, fresh if v.pci_address == vf.pci_address else v) for p, v in self.candidates]
        return fresh

    def unusable(self, vf: VirtualFunction) -> str | None:
        """Why `vf` (as the pool first saw it) must not be handed out now; None when it may."""
        pci = vf.pci_address
        if not pci_exists(self.system.sysfs, pci):
            return "vanished since the pool started"
        now = virtual_function(self.system.sysfs, vf.pf, vf.pf_pci, vf.index,
                               pci_device_dir(self.system.sysfs, pci).resolve())
        if now.driver != vf.driver:
            return f"driver changed from {vf.driver or 'none'} to {now.driver or 'none'} since the pool started"
        pf_driver = driver_of(pci_device_dir(self.system.sysfs, vf.pf_pci))
        if pf_driver in (None, VFIO):  # Nova's rule: no VF while its PF itself is assigned
            return f"its PF {vf.pf_pci} is on {pf_driver or 'no driver'} (assigned whole elsewhere?)"
        if now.driver_override:
            return f"driver_override is {now.driver_override} (another tool is rebinding it)"
        if now.driver == VFIO and now.iommu_group is not None:
            users = self.system.vfio_group_users(now.iommu_group)
            if users:
                return (f"opened through /dev/vfio/{now.iommu_group} by pid {users[0]} "
                        f"({self.system.process_name(users[0])}), which testbed did not lease it to")
        if now.driver not in (None, VFIO, "pci-stub") and now.netdev is None:
            return f"bound to {now.driver} but its netdev is in another network namespace (a container holds it?)"
        if now.netdev:
            reason = netdev_in_use(self.system, now.netdev)
            if reason:
                return reason + " (the host uses it)"
        if self.require_isolation:
            return now.isolation_problem()
        return None

    # --- leasing -------------------------------------------------------------------------
    def lease(self, owner: str, mac: str | None = None, vlan: int | None = None, spoofchk: bool | None = None,
              trust: bool | None = None, driver: str | None = None, numa_node: int | None = None) -> VfLease:
        """A free VF, configured: MAC/VLAN/spoof check/trust through its PF, bound to `driver`
        (None: as found; libvirt's managed='yes' binds vfio-pci itself). ResourceBusyError if none
        is free; a KeyboardInterrupt or failure during setup restores the VF and leaves no lease."""
        settings = VfSettings(mac=mac, vlan=vlan, spoofchk=spoofchk, trust=trust)
        order = sorted(self.candidates, key=lambda c: (numa_node is not None and c[1].numa_node != numa_node))
        busy: list[str] = []
        unusable: list[str] = []
        for pf, vf in order:
            lock = VfLock(self.state_dir, vf.pci_address)
            if not lock.try_acquire() and not self._wait_transient(lock, vf.pci_address):
                busy.append(self._holder(vf.pci_address))
                continue
            try:
                reclaimed, reason = self._reclaim_stale(vf.pci_address)
                if reclaimed:
                    vf = self._refresh(pf, vf)
                reason = reason or self.unusable(vf)
                if reason is None:
                    return self._take(pf, vf, lock, owner, settings, driver)
            except BaseException:
                lock.release()
                raise
            lock.release()
            unusable.append(f"{vf.pci_address}: {reason}")
            self.notes.append(f"VF {vf.pci_address} skipped: {reason}")
        raise ResourceBusyError(self._exhausted(busy, unusable))

    def _wait_transient(self, lock: VfLock, pci: str) -> bool:
        """Take `lock` if its holder is only passing through (no lease record); False for a real lease."""
        deadline = time.monotonic() + TRANSIENT_WAIT
        while time.monotonic() < deadline:
            if read_record(self.state_dir, pci) is not None:
                return False
            time.sleep(0.01)
            if lock.try_acquire():
                return True
        return False

    def _holder(self, pci: str) -> str:
        rec = read_record(self.state_dir, pci) or {}
        return f"{pci} by {rec.get('owner') or '?'} (run {rec.get('run_id') or '?'}, pid {rec.get('pid') or '?'})"

    def _exhausted(self, busy: list[str], unusable: list[str]) -> str:
        what = " or ".join(str(s) for s in self.selectors) or "any selector"
        parts = []
        if busy:
            parts.append(f"{len(busy)} leased (e.g. {busy[0]})")
        if unusable:
            parts.append(f"{len(unusable)} unusable (e.g. {unusable[0]})")
        return f"sriov: no free VF among the {len(self.candidates)} matching {what}: {', '.join(parts)}"

    def _take(self, pf: PhysicalFunction, vf: VirtualFunction, lock: VfLock, owner: str, settings: VfSettings,
              driver: str | None) -> VfLease:
        if settings.ip_args() and pf.name == pf.pci_address:
            raise LaunchError(f"VF {vf.pci_address}: its PF {pf.pci_address} has no netdev, so MAC/VLAN cannot be set")
        original = read_vf_settings(self.system, pf.name, vf.index) if settings.ip_args() else VfSettings()
        pid = os.getpid()
        record = {"lease_id": secrets.token_hex(6), "owner": owner, "pid": pid, "start": process_start_time(pid),
                  "run_id": self.ledger.run_id, "ledger_path": str(self.ledger.path), "pci": vf.pci_address,
                  "pf": pf.name, "pf_pci": pf.pci_address, "index": vf.index, "original_driver": vf.driver,
                  "driver": driver, "restore": original.restoring(settings).as_dict(),
                  "settings": settings.as_dict(), "state_dir": str(self.state_dir), "system": self.system.spec(),
                  "t": time.time()}
        self.ledger.acquire(LEDGER_KIND, vf.pci_address, **record)
        lease = VfLease(vf, pf, owner, settings, driver, record, self, lock)
        try:
            write_record(self.state_dir, record)
            apply_vf_settings(self.system, pf.name, vf.index, settings)
            if driver is not None:
                bind_driver(self.system, vf.pci_address, driver)
            lease._facts = vf_provenance(self.system, pf, vf, settings, driver or vf.driver)
        except BaseException:
            lease.release()
            raise
        _LIVE[lease.lease_id] = lease
        return lease

    # --- the rest of the API -------------------------------------------------------------
    def free(self) -> list[VirtualFunction]:
        """Selected VFs no live process holds (not checked for usability; looks without locking)."""
        return [vf for _, vf in self.candidates if lock_holder(self.state_dir / f"{vf.pci_address}.lock") is None]

    def leased_on(self, pf: PhysicalFunction) -> list[str]:
        return [self._holder(vf.pci_address) for vf in pf.vfs
                if lock_holder(self.state_dir / f"{vf.pci_address}.lock") is not None]

    def set_num_vfs(self, pf_name: str, count: int, *, autoprobe: bool | None = None) -> bool:
        """Run-time VF count change (0 -> N), refused while any VF of that PF is leased."""
        pf = next((p for p in self.host.pfs if pf_name in (p.name, p.pci_address)), None)
        if pf is None:
            raise LaunchError(f"sriov: {pf_name} is not an SR-IOV PF here")
        return set_num_vfs(self.system, pf.pci_address, count, autoprobe=autoprobe, busy=lambda: self.leased_on(pf))


# --- looking without taking ----------------------------------------------------------------
def lock_holder(path: Path, locks: Path = Path("/proc/locks")) -> int | None:
    """pid holding an flock on `path`, from /proc/locks (taking the lock to test it could make a
    concurrent lease see the VF busy)."""
    try:
        st = os.stat(path)
        text = locks.read_text()
    except OSError:
        return None
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode and fields[4].isdigit():
            return int(fields[4])
    return None


@dataclass
class VfState:
    pf: PhysicalFunction
    vf: VirtualFunction
    holder: str | None  # a live lease: "OWNER (run R, pid P)"
    stale: str | None  # a dead holder's record, reclaimed by the next pool or `testbed gc`


def vf_states(host: HostSriov, directory: Path | None = None) -> list[VfState]:
    directory = directory or state_dir()
    out = []
    for pf in host.pfs:
        for vf in pf.vfs:
            rec = read_record(directory, vf.pci_address) or {}
            pid = lock_holder(directory / f"{vf.pci_address}.lock")
            desc = f"{rec.get('owner', '?')} (run {rec.get('run_id', '?')}, pid {rec.get('pid', pid)})"
            out.append(VfState(pf, vf, holder=desc if pid is not None else None,
                               stale=desc if pid is None and rec else None))
    return out


# --- testbed gc ----------------------------------------------------------------------------
class VfReclaimer(Reclaimer, kind=LEDGER_KIND):
    def reclaim(self, name: str, meta: dict) -> None:
        _reclaim_vf(name, meta)


def _reclaim_vf(name: str, meta: dict) -> None:
    """Restore a VF a run left leased; a VF another live run took over since is left alone."""
    live = _LIVE.get(meta.get("lease_id", ""))
    if live is not None:  # this very process still holds it (teardown safety net)
        problems = live.release()
        if problems:
            raise LaunchError("; ".join(problems))
        return
    directory = Path(meta.get("state_dir") or state_dir())
    lock = VfLock(directory, name)
    if not lock.try_acquire():
        rec = read_record(directory, name)
        if rec is not None and rec.get("lease_id") == meta.get("lease_id"):
            raise ResourceBusyError(f"VF {name} is still held by pid {rec.get('pid')} ({rec.get('owner')})")
        return
    try:
        rec = read_record(directory, name)
        if rec is None or rec.get("lease_id") != meta.get("lease_id"):
            return  # never written, or reconciled and re-leased by a later run
        problems = restore_from_record(system_from_spec(rec["system"]), rec)
        if problems:
            raise LaunchError("; ".join(problems))
        record_path(directory, name).unlink(missing_ok=True)
    finally:
        lock.release()
