#!/usr/bin/env python3
"""The bare floor of one cold start: start a server and probe it, with no testbed code at all.

Run as `python3 floor.py SPEC.json`; the probe's sockets are made in the lab's client namespace
(SPEC's client_netns) by a thread that entered it with setns(2), as testbed's probe does (not under
`ip netns exec`, whose private mount namespace would hide the cgroup mounts from runc). SPEC gives
either `argv` (started with Popen in its own session, like a platform's spawn) or
`domain_xml` (created with libvirt-python's createXML, like the libvirt platforms), the
instance's address and port, and the probe (redis PING/SET/GET). Prints the milliseconds from
just before the start to the first correct answer, then stops what it started. The clock starts
where testbed's `requested` mark is, and the probe is testbed's: a non-blocking connect polled
every millisecond, then the same bytes.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

CLONE_NEWNET = 0x40000000

POLL = 0.001
CONNECT_TIMEOUT = 0.5
REDIS_PROBE = [(b"*1\r\n$4\r\nPING\r\n", b"+PONG"),
               (b"*3\r\n$3\r\nSET\r\n$13\r\ntestbed:probe\r\n$2\r\nok\r\n", b"+OK"),
               (b"*2\r\n$3\r\nGET\r\n$13\r\ntestbed:probe\r\n", b"$2\r\nok\r\n")]


def answers(sock: socket.socket) -> bool:
    sock.setblocking(True)
    sock.settimeout(3.0)
    for request, expect in REDIS_PROBE:
        sock.sendall(request)
        data = b""
        while expect not in data and len(data) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            data += chunk
    return True


def in_netns(name: str) -> ThreadPoolExecutor:
    """A thread living in network namespace `name`: sockets it makes belong there."""
    libc = ctypes.CDLL(None, use_errno=True)

    def enter() -> None:
        fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {name}")
        finally:
            os.close(fd)

    return ThreadPoolExecutor(max_workers=1, initializer=enter)


def ready(address: str, port: int, deadline: float, alive, pool: ThreadPoolExecutor) -> float:
    """Monotonic time of the first correct answer."""
    while time.monotonic() < deadline:
        if not alive():
            raise SystemExit("the server exited before it answered")
        s = pool.submit(socket.socket).result()
        s.setblocking(False)
        started = time.monotonic()
        err = s.connect_ex((address, port))
        while err in (errno.EINPROGRESS, errno.EAGAIN):
            _, w, _ = select.select([], [s], [], POLL)
            if w:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            elif time.monotonic() - started > CONNECT_TIMEOUT:
                break
        try:
            if err == 0 and answers(s):
                return time.monotonic()
        except OSError:
            pass
        finally:
            s.close()
        time.sleep(POLL)
    raise SystemExit("no correct answer before the deadline")


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    deadline = time.monotonic() + spec.get("timeout", 120)
    pool = in_netns(spec["client_netns"])
    pool.submit(lambda: None).result()  # the thread is in the namespace before the clock starts
    if "domain_xml" in spec:
        import libvirt

        conn = libvirt.open(spec.get("uri", "qemu:///system"))
        xml = open(spec["domain_xml"]).read()
        t0 = time.monotonic()
        dom = conn.createXML(xml, libvirt.VIR_DOMAIN_START_AUTODESTROY)
        try:
            t1 = ready(spec["address"], spec["port"], deadline, dom.isActive, pool)
        finally:
            dom.destroy()
            conn.close()
    else:
        with open(spec.get("log", os.devnull), "wb") as log:
            t0 = time.monotonic()
            proc = subprocess.Popen(spec["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                t1 = ready(spec["address"], spec["port"], deadline, lambda: proc.poll() is None, pool)
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=30)
    print(f"{(t1 - t0) * 1000:.3f}")


if __name__ == "__main__":
    main()
