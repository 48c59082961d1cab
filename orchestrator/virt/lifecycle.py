"""Transient domains owned by the ledger: entered before createXML, released after destroy.

Domains are started with VIR_DOMAIN_START_AUTODESTROY, so libvirtd itself destroys them
when testbed's connection closes (testbed killed with SIGKILL included); the `domain`
reclaimer is the second line of defence for `testbed gc`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from ..errors import LaunchError
from ..ledger import Ledger, Reclaimer
from .connection import LIBVIRT_ERRORS, Connection, one_line, require_libvirt

CREATE_TIMEOUT = 60.0
QEMU_RUN_DIR = Path("/var/run/libvirt/qemu")


def create_transient(conn: Connection, ledger: Ledger, name: str, xml: str, *, timeout: float = CREATE_TIMEOUT,
                     before_create: Callable[[], object] | None = None):
    """Record the domain in the ledger, run `before_create` (a launch marks `requested` there, so the
    ledger's fsync is outside the timed window), then create and start it."""
    lv = require_libvirt()
    ledger.acquire("domain", name, **conn.ledger_meta())
    if before_create is not None:
        before_create()
    try:
        return conn.call(conn.conn.createXML, xml, lv.VIR_DOMAIN_START_AUTODESTROY, what=f"create {name}",
                         timeout=timeout)
    except BaseException as exc:
        try:
            conn.destroy(name)
        finally:
            ledger.release("domain", name)
        if isinstance(exc, lv.libvirtError):
            raise LaunchError(f"libvirt could not start {name}: {one_line(exc)}") from exc
        raise


def destroy(conn: Connection, ledger: Ledger, name: str) -> None:
    conn.destroy(name)
    ledger.release("domain", name)


def domain_running(conn: Connection, name: str) -> bool:
    try:
        dom = conn.lookup(name)
        return dom is not None and bool(conn.call(dom.isActive, what=f"isActive {name}", timeout=10))
    except LIBVIRT_ERRORS:  # a domain libvirt cannot answer for is not running as far as a run can tell
        return False


def qemu_pid(name: str) -> int | None:
    """The QEMU pid libvirtd wrote for `name` (local hosts), if that process is alive."""
    try:
        pid = int((QEMU_RUN_DIR / f"{name}.pid").read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def process_started_monotonic(pid: int) -> float | None:
    """When `pid` started, on time.monotonic()'s clock (clock-tick resolution)."""
    try:
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    started_boottime = start_ticks / os.sysconf("SC_CLK_TCK")
    # /proc/PID/stat counts from boot (CLOCK_BOOTTIME); convert to CLOCK_MONOTONIC.
    offset = time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()
    return started_boottime - offset


class DomainReclaimer(Reclaimer, kind="domain"):
    def reclaim(self, name: str, meta: dict) -> None:
        uri = meta.get("uri", "qemu:///system")
        if meta.get("address"):  # a lab host's domain: its libvirtd over SSH, the same host-key rules
            from ..hosts.ssh import host_for_entry

            conn = Connection.to(host_for_entry(meta), uri)
        else:
            conn = Connection(uri, start=False)
        try:
            conn.destroy(name)
        finally:
            conn.close()
