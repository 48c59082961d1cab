"""Shared fixtures: an isolated TESTBED_HOME per session and checks that nothing is left behind."""

from __future__ import annotations

import os

import pytest



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
