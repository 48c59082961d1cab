"""Where testbed keeps state, caches and results (overridable with TESTBED_HOME for tests)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import TestbedError


def home() -> Path:
    return Path(os.environ.get("TESTBED_HOME", "/var/lib/testbed"))


def cache_dir() -> Path:
    return Path(os.environ.get("TESTBED_CACHE", str(home() / "cache")))


def ledger_dir() -> Path:
    return home() / "ledger"


def runs_dir() -> Path:
    """Per-run scratch: rendered configs, consoles, logs."""
    return home() / "runs"


def default_store() -> Path:
    return Path(os.environ.get("TESTBED_STORE", str(home() / "results.sqlite")))


def project_root() -> Path:
    """The source checkout (guests/, playbooks/, suites/ live here)."""
    return Path(__file__).resolve().parent.parent


def inside_home(path: Path | str, *, under: Path | str | None = None) -> Path:
    """`path` resolved (symlinks and `..` followed), refused with a TestbedError unless it lies
    strictly inside TESTBED_HOME (or inside `under`, itself inside TESTBED_HOME, e.g. a run's
    directory). Call it before every rmtree/mkdir of a scratch directory and use the path it
    returns, so no user-given name ever removes or writes outside testbed's home."""
    root = home().resolve()
    if under is not None:
        root = inside_home(under)
    resolved = Path(path).resolve()
    if resolved == root or not resolved.is_relative_to(root):
        shown = f"{path} (resolves to {resolved})" if str(resolved) != str(path) else str(path)
        where = f"testbed's home {root}" if under is None else f"{root}"
        raise TestbedError(f"refusing to touch {shown}: it is outside {where}; names in suites must be simple "
                           f"names (letters, digits, '.', '_', '-')")
    return resolved
