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


def inside_home(path: Path | str) -> Path:
    """`path` resolved (symlinks and `..` followed), refused with a TestbedError unless it lies
    strictly inside TESTBED_HOME. Call it before every rmtree/mkdir of a scratch directory and
    use the path it returns, so no user-given name ever removes or writes outside testbed's home."""
    root = home().resolve()
    resolved = Path(path).resolve()
    if resolved == root or not resolved.is_relative_to(root):
        shown = f"{path} (resolves to {resolved})" if str(resolved) != str(path) else str(path)
        raise TestbedError(f"refusing to touch {shown}: it is outside testbed's home {root}; names in suites "
                           f"must be simple names (letters, digits, '.', '_', '-')")
    return resolved
