"""Workload: the application inside an instance, its config, port and readiness probe."""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import BaseModel, ConfigDict

_templates = Environment(loader=PackageLoader("orchestrator.workloads", "templates"), undefined=StrictUndefined,
                         keep_trailing_newline=True)

# A factory for a fresh TCP connection to the instance, made inside the client namespace.
Connect = Callable[[], socket.socket]


class WorkloadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extra_args: list[str] = []  # appended to the server's command line (e.g. tuning flags)


@dataclass(frozen=True)
class ImageRecipe:
    """What an image must contain for a workload: Debian packages, the binaries taken from them,
    and extra files or directories (absolute host paths). Libraries are resolved with ldd."""

    packages: tuple[str, ...]
    binaries: tuple[str, ...]
    files: tuple[str, ...] = ()
    directories: tuple[str, ...] = ()  # created empty in the image (writable scratch)
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    def merged(self, other: "ImageRecipe") -> "ImageRecipe":
        return ImageRecipe(
            tuple(dict.fromkeys(self.packages + other.packages)),
            tuple(dict.fromkeys(self.binaries + other.binaries)),
            tuple(dict.fromkeys(self.files + other.files)),
            tuple(dict.fromkeys(self.directories + other.directories)),
        )


class Workload(ABC):
    name: ClassVar[str]
    port: ClassVar[int]
    Options: ClassVar[type[WorkloadOptions]] = WorkloadOptions
    recipe: ClassVar[ImageRecipe]
    version_argv: ClassVar[list[str]]

    def __init__(self, options: WorkloadOptions | None = None):
        self.options = options or self.Options()

    def render(self, template: str, dest: Path, **values) -> None:
        dest.write_text(_templates.get_template(template).render(**values))

    @abstractmethod
    def write_config(self, config_dir: Path, *, config_path: str) -> None:
        """Write config files into config_dir (host side); they will be seen at config_path in the instance."""

    def argv(self, config_path: str) -> list[str]:
        """The server's command line inside the instance, with its config at config_path."""
        return [*self.server_argv(config_path), *self.options.extra_args]

    def server_argv(self, config_path: str) -> list[str]:
        """The workload's own command line, before the user's extra_args (override this, or argv)."""
        raise NotImplementedError(f"{type(self).__name__} defines neither server_argv nor argv")

    @abstractmethod
    def probe(self, connect: Connect) -> bool:
        """One application-level readiness check: True for a correct answer; a wrong one is False or
        WrongAnswer (which says what the server said, for the not-ready message)."""

    def guest_argv(self, config_path: str) -> list[str]:
        """Command line for a Linux guest's init (defaults to argv)."""
        return self.argv(config_path)


class WrongAnswer(Exception):
    """A server answered a readiness probe, but not as a ready server does; says what it said."""


def expect(ok: bool, request: str, got: bytes) -> bool:
    """True when ok; otherwise WrongAnswer naming the request and the start of the answer."""
    if not ok:
        raise WrongAnswer(f"{request} -> {got[:160]!r}")
    return True


def recv_until(sock: socket.socket, terminator: bytes, limit: int = 1 << 16) -> bytes:
    data = b""
    while terminator not in data and len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data
