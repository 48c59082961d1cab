"""The Host protocol: a machine commands run on (this one, or a lab host over SSH)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from .. import paths
from ..errors import TestbedError

if TYPE_CHECKING:
    from ..ledger import Ledger


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    aborted: str | None = None  # why the command was stopped early (the abort callback's reason)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 3) -> str:
        """The last lines of stderr (or stdout), folded to one line for error messages."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return " | ".join(text[-lines:])


def lost_host_reason(proc: "Process") -> str | None:
    """Why a process can no longer be told apart from a dead one: its lab host stopped answering
    (SshHost's processes record that; a local process never does)."""
    lost = getattr(proc, "unreachable", None)
    return f"no word from it: its lab host stopped answering ({lost})" if lost else None


class Process(Protocol):
    """A long-running command started with Host.spawn (a server, a runtime, a VMM)."""

    @property
    def pid(self) -> int: ...

    def alive(self) -> bool: ...

    def returncode(self) -> int | None: ...

    def log_tail(self, lines: int = 3) -> str: ...

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace` s, reaped; releases its ledger entry. Idempotent."""
        ...


class Host(Protocol):
    name: str
    is_local: bool  # True for this machine (files and sockets are reachable directly)
    lab_address: str | None  # the host's address on the experiment link (lab hosts), else None

    @property
    def home(self) -> str:
        """Where testbed keeps its image cache and per-run files on this host (TESTBED_HOME here)."""
        ...

    def connection_meta(self) -> dict:
        """What a ledger entry needs to reach this host again from `testbed gc` ({} for this machine;
        names and paths only, never secrets)."""
        ...

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
        """Run argv (never through a shell) and wait at most `timeout` seconds. `abort`, when given,
        is polled while the command runs: a reason stops it (result.aborted says why)."""
        ...

    def spawn(self, argv: Sequence[str], *, log_path: Path | str, ledger: "Ledger", label: str,
              before_start: Callable[[], object] | None = None) -> Process:
        """Start argv in the background in its own session, output to log_path (on that host),
        entered in the ledger before it starts so `testbed gc` can reclaim it. `before_start` runs
        after that bookkeeping, right before the process is started (a launch marks `requested` there)."""
        ...

    def which(self, tool: str) -> str | None: ...

    def put(self, local: Path, remote: str, *, timeout: float) -> None: ...

    def get(self, remote: str, local: Path, *, timeout: float) -> None:
        """Copy a file from this host to the controller."""
        ...

    def put_tree(self, local: Path, remote: str, *, timeout: float) -> None:
        """Make the directory tree `local` exist at `remote` on this host (files copied only when their
        content differs, checksummed)."""
        ...

    def file_sha256(self, path: str, *, timeout: float = 60) -> str | None:
        """sha256 of a file on this host, None when it does not exist."""
        ...

    def read_text(self, path: str, *, timeout: float = 10) -> str: ...


def on_host(host: Host, local: Path | str) -> str:
    """Where a file testbed keeps under this machine's TESTBED_HOME lives on `host`: the same path
    relative to the host's own home (so per-run files keep their layout on a lab host)."""
    if host.is_local:
        return str(local)
    try:
        rel = Path(local).resolve().relative_to(paths.home().resolve())
    except ValueError:
        raise TestbedError(f"{local} is not under TESTBED_HOME {paths.home()}; it has no place on "
                           f"{host.name}") from None
    return str(PurePosixPath(host.home) / rel)
