"""runc: the workload in an OCI container (the runtime Docker and Kubernetes use), in its lab namespace."""

from __future__ import annotations

from ..tools import Tool
from .base import PlatformOptions
from .oci_runtime import OciPlatform


class RuncOptions(PlatformOptions):
    pass


class Runc(OciPlatform[RuncOptions], kind="runc"):
    Options = RuncOptions
    binary = "runc"
    state_root = "/run/testbed-runc"
    tools = (Tool("runc", "runc", ("runc", "--version"), "runc platform"),)
