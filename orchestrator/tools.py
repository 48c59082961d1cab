"""External tools, declared once by the class that needs them.

Each platform, workload and benchmark names its tools here (executable, Debian package, the
argv that prints its version). Doctor's tool table, preflight (checked on the host each class
is placed on) and provenance versions are all built from these declarations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .hosts.base import Host

VERSION = re.compile(r"v?(\d+\.\d+(?:[.\-~+][\w.~+-]*)?)")


@dataclass(frozen=True)
class Tool:
    name: str  # the executable looked up on PATH
    package: str  # the Debian package that provides it
    version_argv: tuple[str, ...] = ()  # prints its version; () = version not recorded
    purpose: str = ""  # filled in by the declaring class ("gvisor platform") when empty
    optional: bool = False  # doctor warns instead of failing when missing

    def for_(self, purpose: str) -> "Tool":
        return self if self.purpose else Tool(self.name, self.package, self.version_argv, purpose, self.optional)


@dataclass
class ToolSet:
    """Tools of several declarers, merged by name (first declaration wins, purposes joined)."""

    tools: dict[str, Tool] = field(default_factory=dict)
    purposes: dict[str, list[str]] = field(default_factory=dict)

    def add(self, tools: Iterable[Tool], purpose: str) -> None:
        for t in tools:
            self.tools.setdefault(t.name, t)
            ps = self.purposes.setdefault(t.name, [])
            if purpose not in ps:
                ps.append(purpose)

    def __iter__(self):
        return iter(self.tools.values())


def tool_version(host: "Host", argv: Iterable[str]) -> str | None:
    """First version-looking token the tool prints, or None when the tool is missing."""
    from .errors import TestbedError

    argv = list(argv)
    if not argv or host.which(argv[0]) is None:
        return None
    try:
        res = host.run(argv, timeout=15, check=False)
    except TestbedError:
        return None
    text = (res.stdout + "\n" + res.stderr).strip()
    m = VERSION.search(text)
    return m.group(1) if m else (text.splitlines()[0] if text else "unknown")


def version_line(host: "Host", argv: Iterable[str]) -> str:
    """The tool's own first output line (for provenance), 'missing' or 'unknown (...)'."""
    from .errors import TestbedError

    argv = list(argv)
    if host.which(argv[0]) is None:
        return "missing"
    try:
        out = host.run(argv, timeout=15, check=False)
    except TestbedError as exc:
        return f"unknown ({exc})"
    return (out.stdout.strip() or out.stderr.strip()).split("\n")[0]


# Tools of testbed itself, on every host it runs servers or clients on.
BASE_TOOLS = (
    Tool("ip", "iproute2", ("ip", "-V"), "lab network"),
    Tool("taskset", "util-linux", ("taskset", "--version"), "CPU placement"),
    Tool("ldd", "libc-bin", ("ldd", "--version"), "image builds"),
)

# What copying files to a lab host and checking them there takes (hosts/transfer.py).
TRANSFER_TOOLS = (
    Tool("tar", "tar", (), "copying images to a lab host"),
    Tool("sha256sum", "coreutils", (), "checking copies on a lab host"),
)
