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


