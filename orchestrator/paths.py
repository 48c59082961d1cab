"""Where testbed keeps state, caches and results (overridable with TESTBED_HOME for tests)."""

from __future__ import annotations

import os
from pathlib import Path


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
