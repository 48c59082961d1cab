"""Shared fixtures: an isolated TESTBED_HOME per session and checks that nothing is left behind."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest
from rich.console import Console

from orchestrator import cli as cli_mod



@pytest.fixture(scope="session", autouse=True)
def testbed_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("testbed-home")
    os.environ["TESTBED_HOME"] = str(home)
    # Images are expensive to build and content-addressed: share them across sessions.
    os.environ.setdefault("TESTBED_CACHE", "/var/cache/testbed-tests")
    yield home




@pytest.fixture
def private_home(tmp_path, monkeypatch):
    """A TESTBED_HOME of the test's own, with runs/ made, for tests of what lives under it."""
    h = tmp_path / "home"
    (h / "runs").mkdir(parents=True)
    monkeypatch.setenv("TESTBED_HOME", str(h))
    return h


@pytest.fixture
def tb(monkeypatch, capsys):
    """Run the CLI in this process (importing scipy per subprocess is slow): (returncode, stdout, stderr)."""
    def invoke(*args: str, columns: int = 160) -> SimpleNamespace:
        monkeypatch.setattr(cli_mod, "console", Console(width=columns, color_system=None, force_terminal=False))
        monkeypatch.setattr(sys, "argv", ["testbed", *args])
        code = 0
        try:
            cli_mod.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    return invoke
