"""Commands on the machine testbed runs on."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Sequence

from ..errors import CommandTimeout, LaunchError, MissingToolError, TestbedError
from .base import CommandResult
from .process import Supervised


class CommandFailed(TestbedError):
    def __init__(self, result: CommandResult):
        self.result = result
        super().__init__(f"command failed ({result.returncode}): {' '.join(result.argv)}: {result.tail()}")


def netns_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """Prefix argv so it runs inside a named network namespace."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


class LocalHost:
    name = "localhost"

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        check: bool = True,
        netns: str | None = None,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        full = netns_argv(netns, argv)
        if shutil.which(full[0]) is None and not os.path.exists(full[0]):
            raise MissingToolError(f"{full[0]} is not installed on {self.name}; run the set-up (./setup.sh) or `testbed doctor`")
        start = time.monotonic()
        try:
            proc = subprocess.run(
                full,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, **env} if env else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(f"{' '.join(full)} did not finish within {timeout:g} s") from exc
        result = CommandResult(full, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def spawn(self, argv: Sequence[str], *, log_path: Path, ledger, label: str) -> Supervised:
        try:
            return Supervised(list(argv), log_path, ledger, label)
        except OSError as exc:
            raise LaunchError(f"could not start {argv[0]}: {exc}") from exc

    def which(self, tool: str) -> str | None:
        return shutil.which(tool)

    def put(self, local: Path, remote: str, *, timeout: float) -> None:
        shutil.copyfile(local, remote)

    def read_text(self, path: str, *, timeout: float = 10) -> str:
        return Path(path).read_text()
