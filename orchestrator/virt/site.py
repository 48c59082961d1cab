"""Where guests run, seen from the controller: a host and its libvirtd.

A GuestSite gives the guest platforms (linux-vm, osv, rumprun, and the accelerator probe) what a
launch needs from the host it is placed on, the same way for this machine and for a lab host:

* the libvirt connection (`Connection.to`: a lab host's own libvirtd over SSH, virt/tunnel.py);
* images there: a lab host gets the controller's cache entries copied into its own cache by
  content digest and checked with sha256 (hosts/transfer.py); here they are used in place;
* per-launch files there: the same layout under the host's testbed_home as under TESTBED_HOME;
* commands there (qemu-img, qemu-io, cat) through the Host;
* the console: a file read here, or followed over SSH from a lab host (console.RemoteConsole);
* QEMU's start time, from the host's /proc, on this machine's monotonic clock.
"""

from __future__ import annotations

import os
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Sequence

from ..errors import HostError
from ..hosts.base import CommandResult, Host, on_host
from ..hosts.transfer import ship_file, stage_tree
from .connection import CALL_TIMEOUT, DEFAULT_URI, Connection
from .console import ConsoleFile, RemoteConsole
from .lifecycle import QEMU_RUN_DIR, process_started_monotonic, qemu_pid

if TYPE_CHECKING:
    from ..images.cache import Image
    from ..ledger import Ledger

PID_RETRY = 0.05  # seconds between looks for a lab host's QEMU pid (each is an SSH round trip)
# $1 domain name: QEMU's pid as libvirtd wrote it, then the host's uptime, the process's stat, CLK_TCK
QEMU_START = ('pid=$(cat "' + str(QEMU_RUN_DIR) + '/$1.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null && '
              'cat /proc/uptime "/proc/$pid/stat" && getconf CLK_TCK')


class GuestSite:
    def __init__(self, host: Host, uri: str = DEFAULT_URI, *, timeout: float = CALL_TIMEOUT,
                 ledger: "Ledger | None" = None):
        self.host = host
        self.ledger = ledger
        self.conn = Connection.to(host, uri, timeout=timeout, ledger=ledger)
        self._pid_looked: dict[str, float] = {}

    @property
    def local(self) -> bool:
        return self.host.is_local

    def close(self) -> None:
        self.conn.close()

    # --- files -----------------------------------------------------------------------------
    def stage(self, image: "Image") -> PurePosixPath | Path:
        """The image's cache entry on the host (a lab host: its checked copy)."""
        if self.local:
            return image.path
        assert self.ledger is not None, "a lab host's copies are entered in the run's ledger"
        return PurePosixPath(stage_tree(self.host, image.path, image.path.name, image.digest,  # type: ignore[arg-type]
                                        self.ledger))

    def image_file(self, image: "Image", role: str) -> str:
        return str(self.stage(image) / image.files[role])

    def path(self, local: Path) -> str:
        """Where a file of a launch directory lives on the host."""
        return on_host(self.host, local)

    def make_dir(self, local: Path, *, fresh: bool = False) -> str:
        """The directory on the host (here: `local` itself, which the caller made). fresh: emptied
        first (a launch directory reused by a later launch of the same name)."""
        there = self.path(local)
        if not self.local:
            self.host.run(["sh", "-c", ('rm -rf -- "$1"; ' if fresh else "") + 'mkdir -p -- "$1"', "sh", there],
                          timeout=30)
        return there

    def put(self, local: Path) -> str:
        """A launch file written here, at its place on the host (checksummed there)."""
        there = self.path(local)
        if not self.local:
            self.host.put(local, there, timeout=120)
        return there

    def ship(self, local: Path) -> str:
        """A file the suite names (a kernel override) on the host, kept by its sha256."""
        return ship_file(self.host, local)

    def run(self, argv: Sequence[str], *, timeout: float) -> CommandResult:
        return self.host.run(argv, timeout=timeout, check=False)

    def remove(self, *paths: str) -> None:
        """Per-launch files on the host; absent is fine, and so is an unreachable lab host."""
        if not paths:
            return
        if self.local:
            for p in paths:
                Path(p).unlink(missing_ok=True)
            return
        try:
            self.host.run(["rm", "-f", "--", *paths], timeout=30, check=False)
        except HostError:
            pass

    def concat(self, parts: Sequence[str], out: str) -> str:
        """`out` on the host: the parts one after the other (a launch's initramfs: cached + its own)."""
        self.host.run(["sh", "-c", 'out=$1; shift; cat -- "$@" > "$out"', "sh", out, *parts], timeout=120)
        return out

    # --- the guest -----------------------------------------------------------------------------
    def console(self, path: str) -> ConsoleFile | RemoteConsole:
        return ConsoleFile(Path(path)) if self.local else RemoteConsole(self.host, path)

    def has_kvm_device(self) -> bool:
        if self.local:
            return os.path.exists("/dev/kvm")
        return self.host.run(["test", "-c", "/dev/kvm"], timeout=15, check=False).ok

    def qemu_started(self, name: str) -> float | None:
        """When the domain's QEMU started, on this machine's monotonic clock (None: no QEMU yet).
        A lab host's figure is its process age subtracted from the middle of the round trip that
        read it: clock-tick resolution, plus half the round trip's asymmetry."""
        if self.local:
            pid = qemu_pid(name)
            if pid is None:
                return None
            return process_started_monotonic(pid) or time.monotonic()
        t = time.monotonic()
        if t - self._pid_looked.get(name, 0.0) < PID_RETRY:
            return None
        self._pid_looked[name] = t
        try:
            res = self.host.run(["sh", "-c", QEMU_START, "sh", name], timeout=10, check=False)
        except HostError:
            return None
        mid = (t + time.monotonic()) / 2
        return qemu_start_from(res.stdout, mid) if res.ok else None


def qemu_start_from(output: str, read_at: float) -> float | None:
    """QEMU's start on the local clock from QEMU_START's output read at `read_at` (local monotonic)."""
    lines = output.strip().splitlines()
    try:
        uptime = float(lines[0].split()[0])
        start_ticks = int(lines[1].rsplit(")", 1)[1].split()[19])
        ticks = int(lines[2])
    except (IndexError, ValueError):
        return None
    return read_at - (uptime - start_ticks / ticks)
