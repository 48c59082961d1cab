"""runc: the workload in an OCI container (the runtime Docker and Kubernetes use), in its lab namespace."""

from __future__ import annotations

from pydantic import Field

from ..tools import Tool
from .base import PlatformOptions
from .host_tmpfs import HostTmpfsMounts
from .oci_runtime import OciPlatform


class RuncOptions(PlatformOptions):
    host_tmpfs: bool = Field(False, description="bind-mount a directory of the host's tmpfs at /mnt/host-tmpfs")


class Runc(HostTmpfsMounts, OciPlatform[RuncOptions], kind="runc"):
    Options = RuncOptions
    binary = "runc"
    state_root = "/run/testbed-runc"
    tools = (Tool("runc", "runc", ("runc", "--version"), "runc platform"),)
