"""Shared driver for OCI runtimes (runc, runsc): a bundle per launch over a cached rootfs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

from ..errors import LaunchError, MissingToolError
from ..hosts.local import LocalHost
from ..images.cache import Image, ImageCache
from ..images.oci import CONFIG_MOUNT, oci_config, rootfs_image, write_bundle
from ..ledger import reclaimer
from ..net.netns import NETNS_DIR
from ..workloads.base import Workload
from .base import Instance, Platform, PlatformOptions, Timeline, now
from ..hosts.base import Process

RUNTIME_TIMEOUT = 30


class OciInstance(Instance):
    def __init__(self, name, attachment, timeline, workdir, proc: Process, platform: "OciPlatform", cid: str):
        super().__init__(name, attachment, timeline, workdir)
        self.proc = proc
        self.platform = platform
        self.cid = cid

    def alive(self) -> bool:
        return self.proc.alive()

    def exit_reason(self) -> str:
        return f"{self.platform.kind} exited with {self.proc.returncode()}: {self.proc.log_tail()}"

    def stop(self) -> None:
        self.platform.delete_container(self.cid)
        self.proc.stop()
        self.platform.ledger.release(self.platform.binary, self.cid)


class OciPlatform(Platform):
    binary: ClassVar[str]
    state_root: ClassVar[str]

    def runtime_argv(self) -> list[str]:
        return [self.binary]

    def global_flags(self) -> list[str]:
        return ["--root", self.state_root]

    def image(self, workload: Workload, cache: ImageCache) -> Image:
        if shutil.which(self.binary) is None:
            raise MissingToolError(f"platform {self.name}: {self.binary} is not installed; run ./setup.sh "
                                   f"(Debian package {self.binary})")
        return rootfs_image(workload, cache)

    def launch(self, image: Image, workload: Workload, attachment, timeline: Timeline) -> Instance:
        cid = f"{attachment.netns}-{workload.name}"
        workdir = self.workdir / cid
        shutil.rmtree(workdir, ignore_errors=True)
        config_dir = workdir / "config"
        config_dir.mkdir(parents=True)
        workload.write_config(config_dir, config_path=CONFIG_MOUNT)
        spec = oci_config(rootfs=str(image.file("rootfs")), args=workload.argv(CONFIG_MOUNT), hostname=workload.name,
                          netns_path=str(NETNS_DIR / attachment.netns), config_dir=config_dir, cpus=self.options.cpus)
        bundle = write_bundle(workdir / "bundle", spec)
        argv = [*self.runtime_argv(), *self.global_flags(), "run", "--bundle", str(bundle), cid]
        self.ledger.acquire(self.binary, cid, root=self.state_root, flags=self.global_flags())
        timeline.mark("requested")
        try:
            proc = self.host.spawn(argv, log_path=workdir / "runtime.log", ledger=self.ledger, label=f"{self.binary}-{cid}")
        except LaunchError:
            self.ledger.release(self.binary, cid)
            raise
        timeline.mark("process_started", now())
        return OciInstance(cid, attachment, timeline, workdir, proc, self, cid)

    def delete_container(self, cid: str) -> None:
        delete_container(self.binary, self.global_flags(), cid)

    def versions(self) -> dict[str, str]:
        try:
            out = LocalHost().run([self.binary, *self.global_flags(), "--version"], timeout=RUNTIME_TIMEOUT,
                                  check=False).stdout
        except MissingToolError:
            return {self.binary: "missing"}
        return {self.binary: " ".join(out.split("\n")[0].split()[2:]) or out.strip()}


def delete_container(binary: str, flags: list[str], cid: str) -> None:
    # `delete --force` kills the container's processes and removes its state; absent is fine.
    subprocess.run([binary, *flags, "kill", cid, "KILL"], capture_output=True, timeout=RUNTIME_TIMEOUT)
    force = "--force" if binary == "runc" else "-force"
    subprocess.run([binary, *flags, "delete", force, cid], capture_output=True, timeout=RUNTIME_TIMEOUT)


@reclaimer("runc")
def _reclaim_runc(name: str, meta: dict) -> None:
    delete_container("runc", meta.get("flags", []), name)


@reclaimer("runsc")
def _reclaim_runsc(name: str, meta: dict) -> None:
    delete_container("runsc", meta.get("flags", []), name)


class RuncOptions(PlatformOptions):
    pass


class Runc(OciPlatform):
    kind = "runc"
    binary = "runc"
    state_root = "/run/testbed-runc"
    tools = ("runc",)
    Options = RuncOptions
