"""The generic oci platform's options: the runtime is a plain executable name, its flags are global flags."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.platforms.base import Platform
from orchestrator.platforms.oci import Oci, OciOptions


def test_registered_with_tools_from_its_options():
    assert Platform.registry.get("oci") is Oci
    [tool] = Oci.tools_for(OciOptions(runtime="crun"))
    assert (tool.name, tool.package, tool.version_argv) == ("crun", "crun", ("crun", "--version"))


@pytest.mark.parametrize("options, words", [
    ({}, "runtime"),
    ({"runtime": "../bin/sh"}, "should match pattern"),
    ({"runtime": "crun", "runtime_args": ["run"]}, "global flags"),
    ({"runtime": "crun", "runtime_args": ["--root=/tmp"]}, "--root is testbed's"),
])
def test_bad_options(options, words):
    with pytest.raises(ValidationError, match=words):
        OciOptions(**options)
