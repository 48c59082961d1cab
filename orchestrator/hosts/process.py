"""A supervised child process with its log, recorded in the ledger so gc can reclaim it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from ..ledger import Ledger, process_start_time, reclaimer


class Supervised:
    """Popen in its own session (so its whole process group can be signalled), logged to a file."""

    def __init__(self, argv: list[str], log_path: Path, ledger: Ledger, label: str, env: dict | None = None):
        self.log_path = log_path
        self.ledger = ledger
        self.label = label
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)
        ledger.acquire("process", f"{label}:{self.proc.pid}", pid=self.proc.pid,
                       start=process_start_time(self.proc.pid))

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
        """SIGTERM the process group, SIGKILL after `grace` seconds; always reaps."""
        if self._log.closed:
            return
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        _signal_group(self.proc.pid, signal.SIGKILL)  # stragglers left in the group
        self._log.close()
        self.ledger.release("process", f"{self.label}:{self.proc.pid}")


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@reclaimer("process")
def _reclaim_process(name: str, meta: dict) -> None:
    pid, start = meta.get("pid"), meta.get("start")
    if pid and process_start_time(pid) == start:
        _signal_group(pid, signal.SIGKILL)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.1)
