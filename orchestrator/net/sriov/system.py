"""The one door through which SR-IOV code changes the host: sysfs writes and external commands.

`LocalSystem` writes /sys and runs iproute2, ethtool and modprobe with timeouts; tests use
`fake.FakeSystem`, a tree they build that records every write and emulates the kernel's
answers. A system describes itself with spec() so a reclaimer in another process (`testbed gc`)
can rebuild the same one from a ledger entry.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

from ...errors import CommandTimeout, LaunchError, MissingToolError
from .discovery import MODULES, PROC, SYSFS

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 15.0
# spec()["kind"] -> "module:Class" that rebuilds a system from its spec.
SYSTEM_KINDS = {"local": "orchestrator.net.sriov.system:LocalSystem",
                "fake": "orchestrator.net.sriov.fake:FakeSystem"}


class LocalSystem:
    """This machine: /sys, /proc, /lib/modules and /dev roots, and the real tools."""

    kind = "local"

    def __init__(self, sysfs: Path = SYSFS, proc: Path = PROC, modules: Path = MODULES, dev: Path = Path("/dev")):
        self.sysfs, self.proc, self.modules, self.dev = Path(sysfs), Path(proc), Path(modules), Path(dev)

    def spec(self) -> dict[str, str]:
        return {"kind": self.kind, "sysfs": str(self.sysfs), "proc": str(self.proc), "modules": str(self.modules),
                "dev": str(self.dev)}

    def kernel_modules(self) -> Path:
        """MODULES/RELEASE of the running kernel (its modules.alias names a VF's driver)."""
        try:
            release = (self.proc / "sys" / "kernel" / "osrelease").read_text().strip()
        except OSError:
            release = os.uname().release
        return self.modules / release

    # --- sysfs ---------------------------------------------------------------------------
    def write(self, path: Path, value: str) -> None:
        """Write one sysfs attribute; the kernel's refusal becomes one line naming file and value."""
        path = Path(path)
        if self.sysfs not in path.parents:
            raise ValueError(f"{path} is outside {self.sysfs}")
        log.debug("sysfs: %s > %s", value, path)
        try:
            with open(path, "w") as fh:
                fh.write(value)
        except OSError as exc:
            raise LaunchError(f"cannot write {value!r} to {path}: {exc.strerror or exc}") from exc

    # --- commands ------------------------------------------------------------------------
    def run(self, argv: list[str], *, timeout: float = COMMAND_TIMEOUT, check: bool = True) -> str:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, "LC_ALL": "C"}, check=False)
        except FileNotFoundError as exc:
            raise MissingToolError(f"{argv[0]} is not installed (needed for SR-IOV)") from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(f"{' '.join(argv)} did not finish within {timeout:g} s") from exc
        if check and proc.returncode != 0:
            raise LaunchError(f"{' '.join(argv)} failed: {' | '.join(proc.stderr.strip().splitlines()[-2:])}")
        return proc.stdout

    def ip(self, *args: str) -> str:
        return self.run(["ip", *args])

    def ip_json(self, *args: str) -> Any:
        out = self.ip("-j", *args)
        try:
            return json.loads(out or "[]")
        except ValueError as exc:
            raise LaunchError(f"ip -j {' '.join(args)}: unreadable JSON ({exc})") from exc

    def ethtool_info(self, netdev: str) -> dict[str, str]:
        """`ethtool -i NETDEV` as a dict (driver, version, firmware-version, bus-info); {} if unavailable."""
        try:
            out = self.run(["ethtool", "-i", netdev], check=False)
        except (MissingToolError, CommandTimeout):
            return {}
        return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v.strip()}

    def modprobe(self, module: str) -> None:
        self.run(["modprobe", module], timeout=60)

    # --- who holds what ------------------------------------------------------------------
    def vfio_group_users(self, group: int) -> list[int]:
        """pids with /dev/vfio/GROUP open (a QEMU or DPDK process owns the device)."""
        target = str(self.dev / "vfio" / str(group))
        pids: list[int] = []
        try:
            entries = os.listdir(self.proc)
        except OSError:
            return pids
        for entry in entries:
            if not entry.isdigit():
                continue
            fd_dir = self.proc / entry / "fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:  # gone, or not ours to read
                continue
            for fd in fds:
                try:
                    if os.readlink(fd_dir / fd) == target:
                        pids.append(int(entry))
                        break
                except OSError:
                    continue
        return pids

    def process_name(self, pid: int) -> str:
        try:
            return (self.proc / str(pid) / "comm").read_text().strip()
        except OSError:
            return "?"


def system_from_spec(spec: dict[str, str]) -> LocalSystem:
    module, _, cls = SYSTEM_KINDS[spec.get("kind", "local")].partition(":")
    factory = getattr(importlib.import_module(module), cls)
    return factory(**{k: Path(v) for k, v in spec.items() if k != "kind"})
