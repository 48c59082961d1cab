"""A fake SR-IOV host for tests: a sysfs tree shaped like the kernel's, which records every write
and answers like the kernel (bind/unbind/driver_override/drivers_probe, sriov_numvfs 0 -> N,
sriov_drivers_autoprobe), and fake `ip`, `ethtool` and `modprobe` that keep VF state in a file.

All state lives under one root directory, guarded by an flock, so several processes (spawned
test workers, a reclaimer rebuilding the system from a ledger entry) share one fake host.

    fake = build_fake_host(tmp_path, [FakePf("ens1f0", num_vfs=4)])
    pool = VfPool.from_host(fake.sysfs, ledger=ledger, system=fake, state=tmp_path / "state")
    fake.writes()     # [(path relative to sys/, value), ...]
    fake.commands()   # [argv, ...]
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ...errors import LaunchError
from .system import LocalSystem

NETDEV_LESS = ("vfio-pci", "pci-stub")
PCI_BRIDGE_CLASS = "0x060400"
ETHERNET_CLASS = "0x020000"
ROOT_PORT = "0000:3a:00.0"


@dataclass
class FakePf:
    name: str = "ens1f0"
    pci: str = "0000:3b:00.0"
    total_vfs: int = 8
    num_vfs: int = 4
    vendor: str = "8086"
    device: str = "1592"  # E810-C
    driver: str = "ice"
    vf_device: str = "1889"  # E810 adaptive VF
    vf_driver: str = "iavf"
    numa_node: int = 0
    autoprobe: bool = True
    shared_group: bool = False  # VFs share the PF's IOMMU group (no ACS above the NIC)
    firmware: str = "4.20 0x8001778b 1.3346.0"
    vf_slot: int = 2  # VF i is at bus:slot+(i // 8).(i % 8)


class FakeSystem(LocalSystem):
    kind = "fake"

    def __init__(self, sysfs: Path, proc: Path, modules: Path, dev: Path):
        super().__init__(sysfs, proc, modules, dev)
        self.root = Path(sysfs).parent

    # --- shared state --------------------------------------------------------------------
    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        with open(self.root / "fake.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.root / "fake-state.json"
            state = json.loads(path.read_text())
            yield state
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, path)

    def _log(self, name: str, entry: Any) -> None:
        with open(self.root / name, "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def _lines(self, name: str) -> list[Any]:
        path = self.root / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def writes(self) -> list[tuple[str, str]]:
        return [tuple(w) for w in self._lines("writes.log")]

    def commands(self) -> list[list[str]]:
        return self._lines("commands.log")

    def clear_logs(self) -> None:
        for name in ("writes.log", "commands.log"):
            (self.root / name).unlink(missing_ok=True)

    def inject(self, match: list[str], *, error: str | None = None, interrupt: bool = False, kill: bool = False,
               times: int = 1) -> None:
        """Make the next `times` commands or writes whose words include all of `match` fail with
        `error`, raise KeyboardInterrupt, or SIGKILL the calling process."""
        with self._state() as st:
            st["faults"].append({"match": match, "error": error, "interrupt": interrupt, "kill": kill, "times": times})

    def _fault(self, words: list[str]) -> None:
        with self._state() as st:
            hit = next((f for f in st["faults"] if f["times"] > 0 and all(m in words for m in f["match"])), None)
            if hit is not None:
                hit["times"] -= 1
        if hit is None:
            return
        if hit["kill"]:
            os.kill(os.getpid(), signal.SIGKILL)
        if hit["interrupt"]:
            raise KeyboardInterrupt
        raise LaunchError(f"{' '.join(words)} failed: {hit['error']}")

    # --- sysfs writes, emulated ------------------------------------------------------------
    def write(self, path: Path, value: str) -> None:
        path = Path(path)
        if self.sysfs not in path.parents:
            raise ValueError(f"{path} is outside {self.sysfs}")
        rel = str(path.relative_to(self.sysfs))
        self._log("writes.log", [rel, value])
        self._fault(["write", rel, value.strip()])
        try:
            self._emulate(path, value.strip())
        except OSError as exc:
            raise LaunchError(f"cannot write {value!r} to {path}: {os.strerror(exc.errno or 0)}") from exc

    def _emulate(self, path: Path, value: str) -> None:
        name = path.name
        with self._state() as st:
            if name == "driver_override":
                path.write_text((value or "(null)") + "\n")
            elif name == "unbind":
                dev = self._dev(value)
                if not (dev / "driver").is_symlink():
                    raise OSError(errno.ENODEV, "not bound")
                self._unbind(st, value)
            elif name == "bind":
                driver = path.parent.name
                override = _override(self._dev(value))
                if (self._dev(value) / "driver").is_symlink():
                    raise OSError(errno.EBUSY, "bound")
                if override and override != driver:
                    raise OSError(errno.ENODEV, "override")
                self._bind(st, value, driver)
            elif name == "drivers_probe":
                self._probe(st, value)
            elif name == "sriov_numvfs":
                self._set_numvfs(st, path.parent.name, int(value))
            else:
                path.write_text(value + "\n")

    def _dev(self, pci: str) -> Path:
        dev = self.sysfs / "bus" / "pci" / "devices" / pci
        if not dev.exists():
            raise OSError(errno.ENODEV, pci)
        return dev.resolve()

    def _probe(self, st: dict, pci: str) -> None:
        dev = self._dev(pci)
        if (dev / "driver").is_symlink():
            return
        info = st["devices"][pci]
        override = _override(dev)
        pf = info.get("pf_pci")
        autoprobe = pf is None or (
            self.sysfs / "bus/pci/devices" / pf / "sriov_drivers_autoprobe").read_text().strip() == "1"
        driver = override or (info["native"] if autoprobe else None)
        if driver and (self.sysfs / "bus" / "pci" / "drivers" / driver).is_dir():
            self._bind(st, pci, driver)

    def _bind(self, st: dict, pci: str, driver: str) -> None:
        dev = self._dev(pci)
        drv = _driver_dir(self.sysfs, driver)
        (dev / "driver").symlink_to(drv)
        (drv / pci).symlink_to(dev)
        netdev = st["devices"][pci].get("netdev")
        if driver not in NETDEV_LESS and netdev:
            (dev / "net" / netdev).mkdir(parents=True)
            (dev / "net" / netdev / "operstate").write_text("down\n")
            (dev / "net" / netdev / "device").symlink_to(dev)
            (self.sysfs / "class" / "net" / netdev).symlink_to(dev / "net" / netdev)

    def _unbind(self, st: dict, pci: str) -> None:
        dev = self._dev(pci)
        driver = os.path.basename(os.readlink(dev / "driver"))
        (dev / "driver").unlink()
        (self.sysfs / "bus" / "pci" / "drivers" / driver / pci).unlink(missing_ok=True)
        netdev = st["devices"][pci].get("netdev")
        if netdev:
            shutil.rmtree(dev / "net", ignore_errors=True)
            (self.sysfs / "class" / "net" / netdev).unlink(missing_ok=True)

    def _set_numvfs(self, st: dict, pf_pci: str, count: int) -> None:
        dev = self._dev(pf_pci)
        current = int((dev / "sriov_numvfs").read_text())
        if count == current:
            return
        if current and count:
            raise OSError(errno.EBUSY, "VFs already enabled")
        if count > int((dev / "sriov_totalvfs").read_text()):
            raise OSError(errno.ERANGE, "too many VFs")
        pf = FakePf(**st["pfs"][pf_pci])
        if count == 0:
            for i in range(current):
                self._remove_vf(st, dev, i)
        else:
            for i in range(count):
                _add_vf(self, st, pf, dev, i)
        (dev / "sriov_numvfs").write_text(f"{count}\n")

    def _remove_vf(self, st: dict, pf_dev: Path, index: int) -> None:
        link = pf_dev / f"virtfn{index}"
        vf = link.resolve()
        pci = vf.name
        if (vf / "driver").is_symlink():
            self._unbind(st, pci)
        group = os.path.basename(os.readlink(vf / "iommu_group"))
        (self.sysfs / "kernel" / "iommu_groups" / group / "devices" / pci).unlink()
        if not os.listdir(self.sysfs / "kernel" / "iommu_groups" / group / "devices"):
            shutil.rmtree(self.sysfs / "kernel" / "iommu_groups" / group)
        (self.sysfs / "bus" / "pci" / "devices" / pci).unlink()
        link.unlink()
        shutil.rmtree(vf)
        st["devices"].pop(pci, None)
        st["vfs"].get(pf_dev.name, {}).pop(str(index), None)

    # --- commands, emulated ----------------------------------------------------------------
    def run(self, argv: list[str], *, timeout: float = 15.0, check: bool = True) -> str:
        self._log("commands.log", list(argv))
        self._fault(list(argv))
        tool, args = argv[0], list(argv[1:])
        with self._state() as st:
            if tool == "ip":
                return self._ip(st, args)
            if tool == "ethtool" and args[:1] == ["-i"]:
                info = st["ethtool"].get(args[1])
                if info is None:
                    return ""
                return "".join(f"{k}: {v}\n" for k, v in info.items())
            if tool == "modprobe" and args == ["vfio-pci"]:
                if not st["vfio_module"]:
                    raise LaunchError("modprobe vfio-pci failed: modprobe: FATAL: Module vfio-pci not found")
                _driver_dir(self.sysfs, "vfio-pci")
                return ""
        raise LaunchError(f"fake host: no emulation for {' '.join(argv)}")

    def _ip(self, st: dict, args: list[str]) -> str:
        as_json = args[:1] == ["-j"]
        if as_json:
            args = args[1:]
        if args[:1] == ["-d"]:
            args = args[1:]
        if args[:3] == ["link", "show", "dev"]:
            pf = self._pf_by_name(st, args[3])
            vfs = st["vfs"].get(pf, {})
            infos = []
            for i in sorted(vfs, key=int):
                v = vfs[i]
                info = {"vf": int(i), "address": v["mac"], "spoofchk": v["spoofchk"], "trust": v["trust"],
                        "link_state": "auto"}
                if v["vlan"]:
                    info["vlan_list"] = [{"vlan": v["vlan"]}]
                infos.append(info)
            return json.dumps([{"ifname": args[3], "vfinfo_list": infos}])
        if args[:3] == ["link", "set", "dev"] and args[4:5] == ["vf"]:
            vf = st["vfs"][self._pf_by_name(st, args[3])].get(args[5])
            if vf is None:
                raise LaunchError(f"ip {' '.join(args)} failed: RTNETLINK answers: Invalid argument")
            pairs = args[6:]
            for key, value in zip(pairs[::2], pairs[1::2]):
                if key == "mac":
                    vf["mac"] = value
                elif key == "vlan":
                    vf["vlan"] = int(value)
                elif key in ("spoofchk", "trust"):
                    vf[key] = value == "on"
                else:
                    raise LaunchError(f"ip: fake knows no vf setting {key}")
            return ""
        if args[:3] == ["addr", "show", "dev"]:
            netdev = args[3]
            if not (self.sysfs / "class" / "net" / netdev).exists():
                raise LaunchError(f'ip addr show dev {netdev} failed: Device "{netdev}" does not exist.')
            link: dict[str, Any] = {"ifname": netdev, "addr_info": st["addrs"].get(netdev, [])}
            if netdev in st["masters"]:
                link["master"] = st["masters"][netdev]
            return json.dumps([link])
        if args[:3] == ["route", "show", "dev"]:
            return json.dumps(st["routes"].get(args[3], []))
        raise LaunchError(f"fake ip: no emulation for ip {' '.join(args)}")

    def _pf_by_name(self, st: dict, name: str) -> str:
        for pci, pf in st["pfs"].items():
            if pf["name"] == name:
                return pci
        raise LaunchError(f'ip: Device "{name}" does not exist.')

    # --- what tests arrange -----------------------------------------------------------------
    def vf_state(self, pf_name: str, index: int) -> dict[str, Any]:
        with self._state() as st:
            return dict(st["vfs"][self._pf_by_name(st, pf_name)][str(index)])

    def set_address(self, netdev: str, cidr: str) -> None:
        local, prefix = cidr.split("/")
        with self._state() as st:
            st["addrs"].setdefault(netdev, []).append({"family": "inet", "local": local, "prefixlen": int(prefix),
                                                       "scope": "global"})

    def add_route(self, netdev: str, dst: str) -> None:
        with self._state() as st:
            st["routes"].setdefault(netdev, []).append({"dst": dst, "dev": netdev})

    def open_vfio(self, group: int, pid: int = 4242, comm: str = "qemu-system-x86") -> None:
        """A process testbed did not start holds /dev/vfio/GROUP open."""
        fd_dir = self.proc / str(pid) / "fd"
        fd_dir.mkdir(parents=True, exist_ok=True)
        (self.proc / str(pid) / "comm").write_text(comm + "\n")
        (fd_dir / "7").symlink_to(self.dev / "vfio" / str(group))

    def rebind_outside(self, pci: str, driver: str) -> None:
        """Another tool moves a device to `driver` behind testbed's back (no write is recorded)."""
        with self._state() as st:
            if (self._dev(pci) / "driver").is_symlink():
                self._unbind(st, pci)
            self._bind(st, pci, driver)

    def add_to_group(self, pci: str, group: int) -> None:
        """Put a device (e.g. the ROOT_PORT bridge, or another NIC) into IOMMU group `group` too."""
        with self._state():
            members = self.sysfs / "kernel" / "iommu_groups" / str(group) / "devices"
            (members / pci).symlink_to(self._dev(pci))

    def remove_device(self, pci: str) -> None:
        """A VF vanishes (the PF's VF count was changed by someone else)."""
        with self._state() as st:
            info = st["devices"][pci]
            self._remove_vf(st, self._dev(info["pf_pci"]), info["index"])


def _override(dev: Path) -> str | None:
    value = (dev / "driver_override").read_text().strip()
    return None if value in ("", "(null)") else value


def _driver_dir(sysfs: Path, driver: str) -> Path:
    d = sysfs / "bus" / "pci" / "drivers" / driver
    if not d.is_dir():
        d.mkdir(parents=True)
        for f in ("bind", "unbind", "new_id"):
            (d / f).write_text("")
    return d


def _device(sysfs: Path, pci: str, vendor: str, device: str, cls: str, numa: int) -> Path:
    dev = sysfs / "devices" / "pci0000:00" / pci
    dev.mkdir(parents=True)
    for name, value in (("vendor", f"0x{vendor}"), ("device", f"0x{device}"), ("class", cls),
                        ("numa_node", str(numa)), ("driver_override", "(null)"),
                        ("modalias", f"pci:v0000{vendor.upper()}d0000{device.upper()}sv0000{vendor.upper()}"
                                     f"sd00000000bc{cls[2:4]}sc{cls[4:6]}i00")):
        (dev / name).write_text(value + "\n")
    (sysfs / "bus" / "pci" / "devices" / pci).symlink_to(dev)
    return dev


def _join_group(sysfs: Path, st: dict, dev: Path, group: int | None = None) -> int:
    if group is None:
        group = st["next_group"]
        st["next_group"] += 1
    members = sysfs / "kernel" / "iommu_groups" / str(group) / "devices"
    members.mkdir(parents=True, exist_ok=True)
    (members / dev.name).symlink_to(dev)
    (dev / "iommu_group").symlink_to(sysfs / "kernel" / "iommu_groups" / str(group))
    return group


def _vf_pci(pf: FakePf, index: int) -> str:
    dom, bus, _ = pf.pci.split(":")
    return f"{dom}:{bus}:{pf.vf_slot + index // 8:02x}.{index % 8}"


def _add_vf(system: FakeSystem, st: dict, pf: FakePf, pf_dev: Path, index: int) -> None:
    sysfs = system.sysfs
    pci = _vf_pci(pf, index)
    dev = _device(sysfs, pci, pf.vendor, pf.vf_device, ETHERNET_CLASS, pf.numa_node)
    (dev / "physfn").symlink_to(pf_dev)
    (pf_dev / f"virtfn{index}").symlink_to(dev)
    if st["iommu"]:
        pf_group = int(os.path.basename(os.readlink(pf_dev / "iommu_group")))
        _join_group(sysfs, st, dev, pf_group if pf.shared_group else None)
    st["devices"][pci] = {"native": pf.vf_driver, "netdev": f"{pf.name}v{index}", "pf_pci": pf.pci, "index": index}
    st["vfs"].setdefault(pf.pci, {})[str(index)] = {"mac": "00:00:00:00:00:00", "vlan": 0, "spoofchk": True,
                                                     "trust": False}
    system._probe(st, pci)


def build_fake_host(root: Path, pfs: list[FakePf] | None = None, *, iommu: bool = True, vfio_loaded: bool = False,
                    vfio_module: bool = True, kernel: str = "6.1.0-fake-amd64",
                    cmdline: str = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on iommu=pt") -> FakeSystem:
    """A host with `pfs` (default: one E810 PF ens1f0 with 4 of 8 VFs on iavf) under `root`."""
    pfs = [FakePf()] if pfs is None else pfs
    sysfs, proc, modules, dev = root / "sys", root / "proc", root / "lib" / "modules", root / "dev"
    for d in (sysfs / "bus" / "pci" / "devices", sysfs / "class" / "net", sysfs / "kernel" / "iommu_groups",
              proc / "sys" / "kernel", modules / kernel, dev / "vfio"):
        d.mkdir(parents=True, exist_ok=True)
    (sysfs / "bus" / "pci" / "drivers_probe").write_text("")
    (proc / "cmdline").write_text(cmdline + "\n")
    (proc / "sys" / "kernel" / "osrelease").write_text(kernel + "\n")
    (modules / kernel / "modules.dep").write_text(
        "kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/vfio.ko\n" if vfio_module else "")
    (modules / kernel / "modules.alias").write_text("".join(
        f"alias pci:v0000{pf.vendor.upper()}d0000{pf.vf_device.upper()}sv*sd*bc*sc*i* {pf.vf_driver}\n" for pf in pfs))
    state: dict[str, Any] = {"devices": {}, "vfs": {}, "pfs": {}, "ethtool": {}, "addrs": {}, "routes": {},
                             "masters": {}, "faults": [], "next_group": 10, "iommu": iommu, "vfio_module": vfio_module}
    (root / "fake-state.json").write_text(json.dumps(state))
    system = FakeSystem(sysfs, proc, modules, dev)
    if vfio_loaded:
        _driver_dir(sysfs, "vfio-pci")
    with system._state() as st:
        # the root port above the NIC: a bridge in its own group (a test may add it to a VF's group too)
        port = _device(sysfs, ROOT_PORT, "8086", "2030", PCI_BRIDGE_CLASS, 0)
        st["devices"][ROOT_PORT] = {"native": "pcieport"}
        system._bind(st, ROOT_PORT, "pcieport")
        if iommu:
            _join_group(sysfs, st, port, 1)
        for pf in pfs:
            pf_dev = _device(sysfs, pf.pci, pf.vendor, pf.device, ETHERNET_CLASS, pf.numa_node)
            (pf_dev / "sriov_totalvfs").write_text(f"{pf.total_vfs}\n")
            (pf_dev / "sriov_numvfs").write_text("0\n")
            (pf_dev / "sriov_drivers_autoprobe").write_text("1\n" if pf.autoprobe else "0\n")
            st["pfs"][pf.pci] = pf.__dict__.copy()
            st["devices"][pf.pci] = {"native": pf.driver, "netdev": pf.name}
            st["ethtool"][pf.name] = {"driver": pf.driver, "version": "6.1.0-fake", "firmware-version": pf.firmware,
                                      "bus-info": pf.pci}
            if iommu:
                _join_group(sysfs, st, pf_dev)
            _driver_dir(sysfs, pf.vf_driver)  # the host's VF driver module is loaded
            system._bind(st, pf.pci, pf.driver)
            (pf_dev / "net" / pf.name / "operstate").write_text("up\n")
            (pf_dev / "net" / pf.name / "speed").write_text("100000\n")
            for i in range(pf.num_vfs):
                _add_vf(system, st, pf, pf_dev, i)
            (pf_dev / "sriov_numvfs").write_text(f"{pf.num_vfs}\n")
    return system
