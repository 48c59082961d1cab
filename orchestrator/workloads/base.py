"""Workload: the application inside an instance, its config, port and readiness probe.

A workload kind registers itself by subclassing (`class Redis(Workload, kind="redis")`); a
suite entry makes an instance with its entry name and validated options, so two variants of
one kind (`redis-tuned: {kind: redis, io_threads: 4}`) are two named workloads.
"""

from __future__ import annotations

import socket
from abc import abstractmethod
from pathlib import Path
from typing import Callable, ClassVar

from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import BaseModel, ConfigDict

from ..images.recipe import ImageRecipe
from ..registry import Registered, Registry
from ..tools import Tool

_templates = Environment(loader=PackageLoader("orchestrator.workloads", "templates"), undefined=StrictUndefined,
                         keep_trailing_newline=True, autoescape=False)

# A factory for a fresh TCP connection to the instance, made inside the client namespace.
Connect = Callable[[], socket.socket]


class WorkloadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extra_args: list[str] = []  # appended to the server's command line (e.g. tuning flags)


class Workload(Registered):
    registry: ClassVar[Registry["Workload"]] = Registry("workload", "orchestrator.workloads")
    port: ClassVar[int]
    Options: ClassVar[type[WorkloadOptions]] = WorkloadOptions
    recipe: ClassVar[ImageRecipe]
    tools: ClassVar[tuple[Tool, ...]] = ()  # the server's own binary (its version goes into provenance)

    def __init__(self, name: str | None = None, options: WorkloadOptions | None = None):
        self.name = name or self.kind
        self.options = options if options is not None else self.Options()

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

    def add_needs(self, needs: dict[str, list]) -> None:
        """Take on what a benchmark driving this workload needs (nginx: more static files)."""

    def image_recipe(self) -> ImageRecipe:
        """What an image must hold to run this workload (a property for computed recipes)."""
        return self.recipe


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


__all__ = ["Connect", "ImageRecipe", "Workload", "WorkloadOptions", "WrongAnswer", "expect", "recv_until"]
