"""Registration by subclassing, discovered without a hand-kept list (after mkosi).

A base class owns a Registry; a subclass that names a kind registers itself:

    class Platform(Registered[...]):  registry = Registry("platform", "orchestrator.platforms")
    class Microvm(Platform, kind="microvm"): ...

Lookups import the package's modules lazily: first the module named like the kind
(`linux-vm` -> linux_vm.py), and only when that is not enough every module of the package.
Classes without a kind (shared bases such as OciPlatform) are not registered.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, ClassVar, Generic, TypeVar

T = TypeVar("T")


class UnknownKind(KeyError):
    def __init__(self, noun: str, kind: str, known: list[str]):
        super().__init__(kind)
        self.noun, self.kind, self.known = noun, kind, known

    def __str__(self) -> str:
        return f"unknown {self.noun} {self.kind!r}; expected one of {', '.join(self.known)}"


class Registry(Generic[T]):
    def __init__(self, noun: str, package: str | None):
        self.noun = noun
        self.package = package
        self._classes: dict[str, type[T]] = {}
        self._discovered = False

    def add(self, kind: str, cls: type[T]) -> None:
        old = self._classes.get(kind)
        if old is not None and old.__qualname__ != cls.__qualname__:
            raise TypeError(f"{self.noun} kind {kind!r} is registered twice: {old.__module__}.{old.__qualname__} "
                            f"and {cls.__module__}.{cls.__qualname__}")
        self._classes[kind] = cls

    def discover(self) -> None:
        """Import every module of the package (once), so every subclass has registered."""
        if self._discovered:
            return
        if self.package is None:  # kinds that live anywhere (reclaimers, doctor checks)
            discover_all()
            self._discovered = True
            return
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        self._discovered = True

    def get(self, kind: str) -> type[T]:
        if kind not in self._classes and self.package is not None:
            module = f"{self.package}.{kind.replace('-', '_')}"
            if kind.replace("-", "_").isidentifier():
                try:
                    importlib.import_module(module)
                except ModuleNotFoundError as exc:
                    if exc.name != module:  # the module exists but needs something missing: a real error
                        raise
        if kind not in self._classes:
            self.discover()
        if kind not in self._classes:
            raise UnknownKind(self.noun, kind, self.kinds())
        return self._classes[kind]

    def kinds(self) -> list[str]:
        self.discover()
        return sorted(self._classes)

    def items(self) -> list[tuple[str, type[T]]]:
        self.discover()
        return sorted(self._classes.items())

    def __contains__(self, kind: str) -> bool:
        try:
            self.get(kind)
        except UnknownKind:
            return False
        return True


class Registered:
    """Mixin: `class X(Base, kind="name")` registers X in the nearest base's `registry`."""

    registry: ClassVar[Registry[Any]]
    kind: ClassVar[str] = ""

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if kind is not None:
            cls.kind = kind
            cls.registry.add(kind, cls)


# Never imported by discover_all: the CLI, the test fakes, and the result side (statistics, plots,
# reports), which defines no checks or reclaimers and costs seconds to import (scipy, matplotlib).
NOT_DISCOVERED = ("orchestrator.cli", "orchestrator.testing", "orchestrator.results")


def discover_all(exclude: tuple[str, ...] = NOT_DISCOVERED) -> None:
    """Import every orchestrator module (for gc's reclaimers and doctor's checks, which live
    beside the code whose resources they know)."""
    root = importlib.import_module("orchestrator")
    for info in pkgutil.walk_packages(root.__path__, "orchestrator."):
        if info.name.startswith(exclude) or info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        importlib.import_module(info.name)
