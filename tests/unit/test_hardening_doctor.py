"""`testbed doctor HOST` against a host whose SSH key is refused: one line, non-zero exit, and a
single connection attempt (it was one attempt per check: 22-26 s and a 200-line table).

The SSH server is paramiko's, in this process, on 127.0.0.1: only the key exchange happens.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import paramiko
import pytest

from orchestrator.hosts.ssh import HostKeyError, SshHost
from orchestrator.provision.doctor import run_checks

from helpers import run_cli


class KexOnlyServer:
    """Accepts TCP connections on 127.0.0.1 and offers `key`; counts connection attempts."""

    def __init__(self, key: paramiko.PKey):
        self.key = key
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        transport.add_server_key(self.key)
        try:
            transport.start_server(server=paramiko.ServerInterface())
            transport.accept(timeout=5)
        except (paramiko.SSHException, EOFError, OSError):
            pass
        finally:
            transport.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def server():
    s = KexOnlyServer(paramiko.ECDSAKey.generate())
    yield s
    s.close()


def lab_file(tmp_path: Path, port: int, known_hosts: Path) -> Path:
    p = tmp_path / "lab.yaml"
    p.write_text(f"hosts:\n  - name: lab-x\n    address: 127.0.0.1\n    port: {port}\n"
                 f"    known_hosts: {known_hosts}\n    connect_timeout: 5\n")
    return p


def test_changed_host_key_is_one_line_and_one_attempt(tmp_path, server):
    other = paramiko.ECDSAKey.generate()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{server.port} {other.get_name()} {other.get_base64()}\n")
    res = run_cli("doctor", "lab-x", "--lab", str(lab_file(tmp_path, server.port, known)), timeout=120)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    (line,) = res.stderr.splitlines()
    assert line.startswith("testbed: error: ssh lab-x") and "HOST KEY MISMATCH" in line
    assert res.stdout == ""  # no table
    assert server.connections == 1


def test_unknown_host_key_is_one_line_and_not_remembered(tmp_path, server):
    known = tmp_path / "known_hosts"
    res = run_cli("doctor", "lab-x", "--lab", str(lab_file(tmp_path, server.port, known)), timeout=120)
    assert res.returncode != 0
    (line,) = res.stderr.splitlines()
    assert "unknown host key" in line and "--trust-new-host-key" in line
    assert server.connections == 1 and not known.exists()


def test_run_checks_stops_at_the_first_connection_refusal(tmp_path, server):
    """Even without the CLI's up-front connect, the check loop does not retry a refused host per check."""
    host = SshHost("lab-x", "127.0.0.1", port=server.port, known_hosts=tmp_path / "none", connect_timeout=5)
    with pytest.raises(HostKeyError):
        run_checks(host)
    assert server.connections == 1
