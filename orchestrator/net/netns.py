"""Network namespaces and links, through iproute2, plus sockets opened inside a namespace."""

from __future__ import annotations

import ctypes
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

from ..errors import ResourceBusyError, TestbedError
from ..hosts.local import CommandFailed, LocalHost
from ..ledger import Reclaimer

NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000
IP_TIMEOUT = 15

_host = LocalHost()
T = TypeVar("T")


def ip(*args: str, netns: str | None = None, check: bool = True):
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    return _host.run(argv, timeout=IP_TIMEOUT, check=check)


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def link_exists(name: str, netns: str | None = None) -> bool:
    return ip("link", "show", "dev", name, netns=netns, check=False).ok


def add_netns(name: str) -> None:
    if netns_exists(name):
        raise ResourceBusyError(f"network namespace {name} already exists; run `testbed gc` to reclaim it")
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def delete_netns(name: str) -> None:
    if netns_exists(name):
        # Kill anything still running inside first, or the namespace outlives its name.
        pids = ip("netns", "pids", name, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        ip("netns", "del", name, check=False)


def delete_link(name: str, netns: str | None = None) -> None:
    if link_exists(name, netns):
        ip("link", "del", name, netns=netns, check=False)


class NetnsReclaimer(Reclaimer, kind="netns"):
    def reclaim(self, name: str, meta: dict) -> None:
        if meta.get("address"):  # made on a lab host (net/labhost.py): reconnect and delete it there
            from ..hosts.ssh import host_for_entry
            from .labhost import delete_namespace

            delete_namespace(host_for_entry(meta), name)
        else:
            delete_netns(name)


class LinkReclaimer(Reclaimer, kind="link"):
    def reclaim(self, name: str, meta: dict) -> None:
        delete_link(name, meta.get("netns"))


def set_sysctl(key: str, value: str, netns: str | None = None) -> None:
    argv = ["sysctl", "-q", "-w", f"{key}={value}"]
    _host.run(argv, timeout=IP_TIMEOUT, netns=netns, check=False)


_libc = ctypes.CDLL(None, use_errno=True)


def _enter(netns: str) -> None:
    fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsExecutor:
    """A worker thread living inside a network namespace.

    Network namespace membership is per thread, so sockets made by this thread belong to
    the namespace and keep belonging to it when handed back to other threads. Probes use
    it to reach lab addresses in-process, timed on the same monotonic clock as launches.
    """

    def __init__(self, netns: str):
        if not netns_exists(netns):
            raise TestbedError(f"network namespace {netns} does not exist")
        self.netns = netns
        self._pool = ThreadPoolExecutor(max_workers=1, initializer=_enter, initargs=(netns,),
                                        thread_name_prefix=f"netns-{netns}")

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def connect(self, address: str, port: int, timeout: float) -> socket.socket:
        return self.call(socket.create_connection, (address, port), timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def port_in_use(address: str, port: int, netns: str | None) -> bool:
    def probe() -> bool:
        s = socket.socket()
        try:
            s.settimeout(0.3)
            return s.connect_ex((address, port)) == 0
        finally:
            s.close()

    if netns is None:
        return probe()
    ex = NetnsExecutor(netns)
    try:
        return ex.call(probe)
    finally:
        ex.close()


__all__ = [
    "CommandFailed",
    "NetnsExecutor",
    "add_netns",
    "delete_link",
    "delete_netns",
    "ip",
    "link_exists",
    "netns_exists",
    "port_in_use",
    "set_sysctl",
]
