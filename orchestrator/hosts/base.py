"""The Host protocol: a machine commands run on (this one, or a lab host over SSH)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:
    from ..ledger import Ledger


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 3) -> str:
        """The last lines of stderr (or stdout), folded to one line for error messages."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return " | ".join(text[-lines:])


class Process(Protocol):
    """A long-running command started with Host.spawn (a server, a runtime, a VMM)."""

    pid: int

    def alive(self) -> bool: ...

    def returncode(self) -> int | None: ...

    def log_tail(self, lines: int = 3) -> str: ...

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace` s, reaped; releases its ledger entry. Idempotent."""
        ...


class Host(Protocol):
    name: str

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
        """Run argv (never through a shell) and wait at most `timeout` seconds."""
        ...

    def spawn(self, argv: Sequence[str], *, log_path: Path, ledger: "Ledger", label: str) -> Process:
        """Start argv in the background in its own session, output to log_path (on that host),
        entered in the ledger before it starts so `testbed gc` can reclaim it."""
        ...

    def which(self, tool: str) -> str | None: ...

    def put(self, local: Path, remote: str, *, timeout: float) -> None: ...

    def read_text(self, path: str, *, timeout: float = 10) -> str: ...
