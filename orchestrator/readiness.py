"""Readiness: poll until the workload gives a correct application response; mark port_open and ready.

The probe never blocks longer than its poll interval: a connection attempt is non-blocking and is
checked every POLL_INTERVAL (a slow SYN-ACK from a booting guest is not abandoned; an attempt is
only retried after CONNECT_TIMEOUT), and console phases are stamped by the platform's own reader
thread, so neither the probe nor the console quantizes the other's timestamps.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from typing import Callable

from .errors import LaunchError, NotReadyError
from .platforms.base import Instance
from .timeline import now
from .workloads.base import Workload, WrongAnswer

POLL_INTERVAL = 0.001  # the resolution of port_open and ready (recorded in provenance)
CONNECT_TIMEOUT = 0.5  # one attempt is retried after this (a guest whose NIC is not up yet never answers)
ALIVE_INTERVAL = 0.05  # how often liveness is checked (it may cost a libvirt call)
PROBE_TIMEOUT = 3.0  # the application's answer to the probe

# A fresh unconnected TCP socket on the client side (inside the lab's client namespace).
SocketFactory = Callable[[], socket.socket]


def plain_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


class _Attempt:
    """One non-blocking connection attempt."""

    def __init__(self, make: SocketFactory, address: str, port: int):
        self.sock = make()
        self.sock.setblocking(False)
        self.started = now()
        self.error = self.sock.connect_ex((address, port))
        if self.error in (errno.EINPROGRESS, errno.EAGAIN):
            self.error = 0
            self.pending = True
        else:
            self.pending = False  # connected at once (0) or refused at once

    def poll(self, wait: float) -> int | None:
        """None while in progress; 0 once connected; an errno when it failed."""
        if not self.pending:
            return self.error
        _, writable, _ = select.select([], [self.sock], [], wait)
        if not writable:
            return None
        self.pending = False
        self.error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return self.error

    def close(self) -> None:
        self.sock.close()


def wait_ready(instance: Instance, workload: Workload, make_socket: SocketFactory, timeout: float,
               poll: float = POLL_INTERVAL) -> None:
    tl = instance.timeline
    deadline = now() + timeout
    last_error = "no answer"
    attempt: _Attempt | None = None
    next_alive = 0.0
    try:
        while True:
            t = now()
            if t >= next_alive:
                if not instance.alive():
                    raise LaunchError(f"{instance.name} stopped before it became ready: {instance.exit_reason()}")
                next_alive = t + ALIVE_INTERVAL
            if attempt is None:
                attempt = _Attempt(make_socket, instance.address, workload.port)
            state = attempt.poll(poll)
            if state is None:
                if now() - attempt.started > CONNECT_TIMEOUT:
                    attempt.close()
                    attempt, last_error = None, "connection attempt timed out"
            elif state != 0:
                attempt.close()
                attempt, last_error = None, errno.errorcode.get(state, str(state))
                time.sleep(poll)
            else:
                tl.mark("port_open")
                sock, attempt = attempt.sock, None
                sock.setblocking(True)
                sock.settimeout(PROBE_TIMEOUT)
                try:
                    if workload.probe(lambda: sock):  # noqa: B023 -- called before the loop goes on
                        tl.mark("ready")
                        return
                    last_error = "port open but the probe's answer was wrong"
                except WrongAnswer as exc:
                    last_error = f"port open but the probe's answer was wrong: {exc}"
                except OSError as exc:
                    last_error = exc.strerror or str(exc) or type(exc).__name__
                finally:
                    sock.close()
                time.sleep(poll)
            if now() > deadline:
                port_state = "open" if tl.has("port_open") else "closed"
                raise NotReadyError(f"{instance.name}: {workload.name} at {instance.address}:{workload.port} gave no "
                                    f"correct answer to its readiness probe within {timeout:g} s (port {port_state}; "
                                    f"last: {last_error})")
    finally:
        if attempt is not None:
            attempt.close()


def in_netns(executor) -> SocketFactory:
    """Sockets made inside a NetnsExecutor's namespace (the lab's client side)."""
    return lambda: executor.call(plain_socket)
