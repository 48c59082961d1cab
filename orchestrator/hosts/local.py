"""Commands on the machine testbed runs on."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

from .. import paths
from ..digest import sha256_file
from ..errors import CommandTimeout, LaunchError, MissingToolError, TestbedError
from .base import CommandResult
from .process import Supervised

ABORT_POLL = 0.25  # seconds between abort checks while a watched command runs


class CommandFailed(TestbedError):
    def __init__(self, result: CommandResult):
        self.result = result
        super().__init__(f"command failed ({result.returncode}): {' '.join(result.argv)}: {result.tail()}")


def netns_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """Prefix argv so it runs inside a named network namespace."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


class LocalHost:
    name = "localhost"
    is_local = True
    lab_address: str | None = None

    @property
    def home(self) -> str:
        return str(paths.home())

    def connection_meta(self) -> dict:
        return {}

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        check: bool = True,
        netns: str | None = None,
        input: str | None = None,
        env: dict[str, str] | None = None,
        abort: Callable[[], str | None] | None = None,
    ) -> CommandResult:
        full = netns_argv(netns, argv)
        if shutil.which(full[0]) is None and not os.path.exists(full[0]):
            raise MissingToolError(f"{full[0]} is not installed on {self.name}; run the set-up (./setup.sh) or "
                                   f"`testbed doctor`")
        start = time.monotonic()
        environ = {**os.environ, **env} if env else None
        if abort is None:
            try:
                proc = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout, env=environ,
                                      check=False)
            except subprocess.TimeoutExpired as exc:
                raise CommandTimeout(f"{' '.join(full)} did not finish within {timeout:g} s") from exc
            result = CommandResult(full, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
        else:
            result = _run_watched(full, input, environ, timeout, abort, start)
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def spawn(self, argv: Sequence[str], *, log_path: Path | str, ledger, label: str,
              before_start: Callable[[], object] | None = None) -> Supervised:
        try:
            return Supervised(list(argv), Path(log_path), ledger, label, before_start=before_start)
        except OSError as exc:
            raise LaunchError(f"could not start {argv[0]}: {exc}") from exc

    def which(self, tool: str) -> str | None:
        return shutil.which(tool)

    def put(self, local: Path, remote: str, *, timeout: float) -> None:
        if Path(local).resolve() != Path(remote).resolve():
            shutil.copyfile(local, remote)

    def get(self, remote: str, local: Path, *, timeout: float) -> None:
        shutil.copyfile(remote, local)

    def put_tree(self, local: Path, remote: str, *, timeout: float) -> None:
        if Path(local).resolve() != Path(remote).resolve():
            shutil.copytree(local, remote, symlinks=True, dirs_exist_ok=True)

    def file_sha256(self, path: str, *, timeout: float = 60) -> str | None:
        try:
            return sha256_file(path)
        except FileNotFoundError:
            return None

    def read_text(self, path: str, *, timeout: float = 10) -> str:
        return Path(path).read_text()


def _run_watched(full: list[str], input: str | None, env: dict | None, timeout: float,
                 abort: Callable[[], str | None], start: float) -> CommandResult:
    """Popen in its own process group; every ABORT_POLL s ask abort(); stop the group on a reason."""
    proc = subprocess.Popen(full, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    deadline = start + timeout
    reason: str | None = None
    pending_input = input
    try:
        while True:
            try:
                out, err = proc.communicate(pending_input, timeout=ABORT_POLL)
                break
            except subprocess.TimeoutExpired:
                pending_input = None  # communicate() keeps what it already sent and read
            if time.monotonic() > deadline:
                _kill_group(proc)
                proc.communicate()
                raise CommandTimeout(f"{' '.join(full)} did not finish within {timeout:g} s")
            reason = abort()
            if reason:
                _kill_group(proc)
                out, err = proc.communicate()
                break
    except BaseException:
        _kill_group(proc)
        proc.wait(timeout=10)
        raise
    return CommandResult(full, proc.returncode, out or "", err or "", time.monotonic() - start, aborted=reason)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
