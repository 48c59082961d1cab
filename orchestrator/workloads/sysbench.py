"""sysbench: testbed's own system-call micro-benchmark server (workloads/sysbench/tbsysbench.c).

The gVisor evaluation measures the cost of system calls *inside* the sandbox (gettimeofday,
open/close of a file). To measure that on every platform alike, the loop must run in the
instance, so the measuring program is a small TCP server: the `syscalls` benchmark sends it
requests over the lab network and it answers with the measured nanoseconds per call.

The program is compiled statically with gcc into the cache (orchestrator/images/compiled.py),
keyed by the source's sha256, compiler version and flags; the recipe names that binary, so it is
copied into root file systems at the same path and native runs it in place.
Readiness: `ping` answered with `pong`. `-H` names the directory where a platform with
`host_tmpfs: true` mounts a host tmpfs (the `host-tmpfs` location of openclose).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from ..images.oci import HOST_TMPFS_DESTINATION
from ..tools import Tool
from .base import Connect, ImageRecipe, Workload, WorkloadOptions, expect, recv_until

SOURCE = Path(__file__).with_name("sysbench") / "tbsysbench.c"


class SysbenchOptions(WorkloadOptions):
    pass


class Sysbench(Workload, kind="sysbench"):
    port = 7777
    Options = SysbenchOptions
    # The program is testbed's own; the compiler is what varies.
    tools = (Tool("gcc", "gcc", ("gcc", "--version"), "syscall micro-benchmark (compiled at first use)"),)

    @cached_property
    def binary(self) -> str:
        from ..images.compiled import compiled_binary

        return str(compiled_binary(SOURCE, "tbsysbench"))

    def image_recipe(self) -> ImageRecipe:  # computed: it names the compiled binary
        from ..images.compiled import BUILD_PACKAGES

        return ImageRecipe(packages=BUILD_PACKAGES, binaries=(self.binary,), directories=("/tmp", HOST_TMPFS_DESTINATION))

    def write_config(self, config_dir: Path, *, config_path: str) -> None:
        pass  # everything is on the command line

    def argv(self, config_path: str) -> list[str]:
        return [self.binary, "-p", str(self.port), "-H", HOST_TMPFS_DESTINATION]

    def probe(self, connect: Connect) -> bool:
        with connect() as s:
            s.sendall(b"ping\n")
            got = recv_until(s, b"\n")
            return expect(got == b"pong\n", "ping", got)
