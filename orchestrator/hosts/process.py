"""A supervised child process with its log, recorded in the ledger so gc can reclaim it.

The ledger entry is written (fsync'd) before the process exists and names a token that the
process carries in its environment; its pid is added afterwards without an fsync. So the
durable write happens before a launch's `requested` mark (`before_start`), not inside the
timed window, and gc still finds the process by its token if the pid line was lost.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

from ..ledger import Ledger, Reclaimer, process_start_time

TOKEN_ENV = "TESTBED_PROCESS_TOKEN"


class Supervised:
    """Popen in its own session (so its whole process group can be signalled), logged to a file."""

    def __init__(self, argv: list[str], log_path: Path, ledger: Ledger, label: str, env: dict | None = None,
                 before_start: Callable[[], object] | None = None):
        self.log_path = log_path
        self.ledger = ledger
        self.label = label
        token = secrets.token_hex(6)
        self.ledger_name = f"{label}:{token}"
        ledger.acquire("process", self.ledger_name, token=token)
        self._log = open(log_path, "wb")
        environ = {**(env if env is not None else os.environ), TOKEN_ENV: token}
        if before_start is not None:
            before_start()
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                         start_new_session=True, env=environ)
        except BaseException:
            self._log.close()
            ledger.release("process", self.ledger_name)
            raise
        ledger.note("process", self.ledger_name, pid=self.proc.pid, start=process_start_time(self.proc.pid))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def returncode(self) -> int | None:
        return self.proc.poll()

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL after `grace` seconds (at once for grace=0); always reaps."""
        if self._log.closed:
            return
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
            if not _wait_exit(self.proc, grace if grace > 0 else 10):
                _signal_group(self.proc.pid, signal.SIGKILL)
                _wait_exit(self.proc, 10)
        _signal_group(self.proc.pid, signal.SIGKILL)  # stragglers left in the group
        self._log.close()
        self.ledger.release("process", self.ledger_name)


def _wait_exit(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for exit, woken by the kernel (a pidfd) rather than Popen.wait's sleeping poll."""
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:  # already reaped, or no pidfd support
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return False
    finally:
        os.close(fd)
    proc.wait(timeout=1)
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ProcessReclaimer(Reclaimer, kind="process"):
    def reclaim(self, name: str, meta: dict) -> None:
        pid, start = meta.get("pid"), meta.get("start")
        if pid is None and meta.get("token"):
            pid = pid_with_token(meta["token"])
            start = process_start_time(pid) if pid else None
        if pid and process_start_time(pid) == start:
            _signal_group(pid, signal.SIGKILL)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.1)


def pid_with_token(token: str, proc: Path = Path("/proc")) -> int | None:
    """The process whose environment carries TOKEN_ENV=token (its pid never reached the ledger)."""
    needle = f"{TOKEN_ENV}={token}".encode()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except OSError:
            continue
    return None
