"""SR-IOV physical and virtual functions, read from sysfs.

Everything takes a `sysfs` root so tests can build a fake tree (this machine has no
SR-IOV NIC); on a lab host the root is /sys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..ledger import Reclaimer

SYSFS = Path("/sys")


@dataclass
class VirtualFunction:
    pf: str  # the PF's netdev name
    index: int
    pci_address: str  # e.g. 0000:3b:02.1
    netdev: str | None  # VF netdev name while bound to the host's VF driver
    driver: str | None  # e.g. iavf, mlx5_core, vfio-pci


@dataclass
class PhysicalFunction:
    name: str
    pci_address: str
    driver: str | None
    total_vfs: int
    num_vfs: int
    vfs: list[VirtualFunction] = field(default_factory=list)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _driver(device: Path) -> str | None:
    link = device / "driver"
    return link.resolve().name if link.exists() else None


def list_physical_functions(sysfs: Path = SYSFS) -> list[PhysicalFunction]:
    """Every network device that exposes sriov_totalvfs, with its VFs."""
    pfs = []
    net = sysfs / "class" / "net"
    if not net.exists():
        return pfs
    for iface in sorted(net.iterdir()):
        device = iface / "device"
        total = _read(device / "sriov_totalvfs")
        if total is None:
            continue
        pf = PhysicalFunction(iface.name, device.resolve().name, _driver(device), int(total),
                              int(_read(device / "sriov_numvfs") or 0))
        for virtfn in sorted(device.glob("virtfn*"), key=lambda p: int(p.name[6:])):
            vf_dev = virtfn.resolve()
            netdevs = sorted(p.name for p in (vf_dev / "net").iterdir()) if (vf_dev / "net").exists() else []
            pf.vfs.append(VirtualFunction(iface.name, int(virtfn.name[6:]), vf_dev.name,
                                          netdevs[0] if netdevs else None, _driver(vf_dev)))
        pfs.append(pf)
    return pfs


# --- VF allocation -----------------------------------------------------------------------
def _claims_dir() -> Path:
    from .. import paths

    return paths.home() / "sriov"


def _set_vf_mac(pf: str, index: int, mac: str) -> None:
    import subprocess

    from ..errors import LaunchError

    argv = ["ip", "link", "set", pf, "vf", str(index), "mac", mac]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired as exc:
        raise LaunchError(f"{' '.join(argv)} did not finish within 15 s") from exc
    if proc.returncode != 0:
        raise LaunchError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")


class VfAllocator:
    """Hands out free VFs of one PF: claims are files (created O_EXCL) under a state directory,
    so concurrent runs never share a VF. allocate() sets the VF's MAC with
    `ip link set PF vf N mac MAC`; release() clears it and drops the claim."""

    def __init__(self, pf: str, *, sysfs: Path = SYSFS, claims: Path | None = None, set_mac=None, ledger=None):
        self.pf_name = pf
        self.sysfs = sysfs
        self.claims = claims or _claims_dir()
        self.set_mac = set_mac or _set_vf_mac
        self.ledger = ledger

    def physical_function(self) -> PhysicalFunction:
        from ..errors import ConfigError

        pfs = {p.name: p for p in list_physical_functions(self.sysfs)}
        if self.pf_name not in pfs:
            raise ConfigError(f"sriov_pf: {self.pf_name} is not an SR-IOV physical function on this host "
                              f"(found: {', '.join(pfs) or 'none'})")
        pf = pfs[self.pf_name]
        if not pf.vfs:
            raise ConfigError(f"sriov_pf: {self.pf_name} has no VFs enabled (sriov_numvfs is {pf.num_vfs}; "
                              f"echo N > /sys/class/net/{self.pf_name}/device/sriov_numvfs)")
        return pf

    def _claim_path(self, vf: VirtualFunction) -> Path:
        return self.claims / f"{vf.pci_address}.claim"

    def claimed(self, vf: VirtualFunction) -> bool:
        return self._claim_path(vf).exists()

    def free(self) -> list[VirtualFunction]:
        return [vf for vf in self.physical_function().vfs if not self.claimed(vf)]

    def allocate(self, mac: str, owner: str = "") -> VirtualFunction:
        import os

        from ..errors import ResourceBusyError

        self.claims.mkdir(parents=True, exist_ok=True)
        for vf in self.physical_function().vfs:
            path = self._claim_path(vf)
            if path.exists():
                continue
            if self.ledger is not None:
                self.ledger.acquire("sriov-vf", vf.pci_address, claim=str(path), pf=vf.pf, index=vf.index)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:  # another run claimed it between the check and here
                if self.ledger is not None:
                    self.ledger.release("sriov-vf", vf.pci_address)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{owner} {mac}\n")
            try:
                self.set_mac(vf.pf, vf.index, mac)
            except BaseException:
                self.release(vf, reset_mac=False)
                raise
            return vf
        raise ResourceBusyError(f"sriov_pf: every VF of {self.pf_name} is in use")

    def release(self, vf: VirtualFunction, *, reset_mac: bool = True) -> None:
        try:
            if reset_mac:
                self.set_mac(vf.pf, vf.index, "00:00:00:00:00:00")
        except Exception:
            pass  # the PF may be gone; the claim still goes
        finally:
            self._claim_path(vf).unlink(missing_ok=True)
            if self.ledger is not None:
                self.ledger.release("sriov-vf", vf.pci_address)


def _reclaim_vf(name: str, meta: dict) -> None:
    claim = meta.get("claim")
    if meta.get("pf") is not None and meta.get("index") is not None:
        try:
            _set_vf_mac(meta["pf"], int(meta["index"]), "00:00:00:00:00:00")
        except Exception:
            pass
    if claim:
        Path(claim).unlink(missing_ok=True)


class VfReclaimer(Reclaimer, kind="sriov-vf"):
    def reclaim(self, name: str, meta: dict) -> None:
        _reclaim_vf(name, meta)
