"""libvirt on a lab host, reached through SshHost: a local unix socket carried over SSH.

libvirt's own `qemu+ssh://` transport runs the `ssh` client, which ignores the `known_hosts=` URI
parameter and falls back to ~/.ssh/known_hosts, so testbed's host-key rules (known_hosts of the lab
file, a pinned fingerprint, never a new key unless asked) would not hold for libvirt. Instead,
each libvirt connection to the local socket is carried by one exec channel of the lab host's
SshHost (its transport: the lab file's key, known_hosts and pin) running `virt-ssh-helper URI`
there, which is what qemu+ssh runs on the far side too; libvirt then talks `qemu+unix://` to the
local socket. No TCP port is opened anywhere: the socket lives in a directory of its own
(mode 0700) and is itself mode 0600.

Domains are created with AUTODESTROY: when testbed dies (SIGKILL included) its SSH connection
closes, virt-ssh-helper sees end of input, and the host's libvirtd destroys testbed's domains.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ..errors import HostError, TestbedError
from ..ledger import Reclaimer

if TYPE_CHECKING:
    from ..hosts.ssh import SshHost
    from ..ledger import Ledger

log = logging.getLogger(__name__)

HELPER = "virt-ssh-helper"
DIR_PREFIX = "tb-virt-"
CHUNK = 1 << 16
CHANNEL_TIMEOUT = 60.0  # a write the far side does not take within this is a dead connection


class LibvirtTunnel:
    """A local unix socket whose connections reach `remote_uri` (qemu:///system) on `host`."""

    def __init__(self, host: "SshHost", remote_uri: str, *, ledger: "Ledger | None" = None):
        self.host = host
        self.remote_uri = remote_uri
        self.ledger = ledger
        # A short path (a unix socket's is at most 107 bytes), 0700: this user only.
        self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        if ledger is not None:  # a killed run's socket directory is removed by `testbed gc`
            ledger.acquire("tunnel-dir", str(self.dir))
        self.path = self.dir / "libvirt.sock"
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._server.listen(8)
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._pumps: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._channels: list = []
        self._thread = threading.Thread(target=self._accept, name=f"libvirt-tunnel-{host.name}", daemon=True)
        self._thread.start()

    @property
    def uri(self) -> str:
        """The URI libvirt dials: the same driver and path as remote_uri, over the local socket."""
        p = urlparse(self.remote_uri)
        return f"{p.scheme}+unix://{p.path or '/system'}?socket={self.path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                chan = self.host.exec_channel([HELPER, self.remote_uri], timeout=CHANNEL_TIMEOUT)
            except HostError as exc:  # libvirt sees the connection close and reports it
                log.warning("libvirt tunnel to %s: %s", self.host.name, exc)
                sock.close()
                continue
            with self._lock:
                self._channels.append(chan)
            t = threading.Thread(target=self._pump, args=(sock, chan), name=f"libvirt-pump-{self.host.name}",
                                 daemon=True)
            self._pumps.append(t)
            t.start()

    def _pump(self, sock: socket.socket, chan) -> None:
        sock.settimeout(CHANNEL_TIMEOUT)
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([sock, chan], [], [], 0.5)
                if chan.recv_stderr_ready():
                    log.debug("%s %s: %s", self.host.name, HELPER, chan.recv_stderr(CHUNK).decode(errors="replace"))
                if sock in readable:
                    data = sock.recv(CHUNK)
                    if not data:
                        break
                    chan.sendall(data)
                if chan in readable:
                    data = chan.recv(CHUNK)
                    if not data:
                        break
                    sock.sendall(data)
                elif chan.exit_status_ready() and not chan.recv_ready():
                    break
        except (OSError, EOFError) as exc:  # either side went away: the other learns it by the close
            log.debug("libvirt tunnel to %s closed: %s", self.host.name, exc)
        finally:
            chan.close()
            sock.close()
            with self._lock:
                if chan in self._channels:
                    self._channels.remove(chan)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            self._server.close()
        except OSError:
            pass
        with self._lock:
            channels = list(self._channels)
        for chan in channels:
            chan.close()
        self._thread.join(timeout=5)
        for t in self._pumps:
            t.join(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.ledger is not None:
            self.ledger.release("tunnel-dir", str(self.dir))


class TunnelDirReclaimer(Reclaimer, kind="tunnel-dir"):
    def reclaim(self, name: str, meta: dict) -> None:
        path = Path(name)
        if path.parent != Path(tempfile.gettempdir()) or not path.name.startswith(DIR_PREFIX) or path.is_symlink():
            raise TestbedError(f"refusing to remove {name}: not a tunnel directory testbed makes")
        shutil.rmtree(path, ignore_errors=True)
