"""Shared driver for OCI runtimes (runc, runsc, crun, ...): a bundle per launch over a cached rootfs.

Every runtime command goes through the Host the platform is placed on. `runtime run` is the
runtime's foreground process (spawned and supervised like any server; on a lab host SshHost.spawn
redirects all three of its standard streams, so the session does not wait for the container);
stopping kills the container and deletes its state, which is recorded in the ledger before the
container exists. On a lab host the rootfs is the host's copy in its image cache (copied by
digest, checked with sha256 there) and each launch's bundle and config go to its testbed_home.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import ClassVar, Generic, TypeVar

from ..errors import HostError, LaunchError, TestbedError
from ..hosts.base import Host, Process, lost_host_reason, on_host
from ..hosts.ssh import host_for_entry
from ..hosts.transfer import stage_tree
from ..images.cache import Image, ImageCache
from ..images.oci import CONFIG_MOUNT, oci_config, rootfs_image, write_bundle
from ..ledger import Reclaimer
from ..net.netns import NETNS_DIR
from ..workloads.base import Workload
from .base import Instance, Platform, PlatformOptions, Timeline, now

log = logging.getLogger(__name__)

RUNTIME_TIMEOUT = 30
LEDGER_KIND = "container"


class OciInstance(Instance):
    def __init__(self, name, attachment, timeline, workdir, proc: Process, platform: "OciPlatform", cid: str):
        super().__init__(name, attachment, timeline, workdir)
        self.proc = proc
        self.platform = platform
        self.cid = cid

    def alive(self) -> bool:
        return self.proc.alive()

    def exit_reason(self) -> str:
        return lost_host_reason(self.proc) or \
            f"{self.platform.runtime} exited with {self.proc.returncode()}: {self.proc.log_tail()}"

    def stop(self, *, fast: bool = False) -> None:
        try:
            self.platform.delete_container(self.cid)  # SIGKILL: a container's state is scratch either way
        except HostError as exc:  # the lab host stopped answering: the entry stays for `testbed gc`
            log.warning("%s: cannot delete container %s (%s); `testbed gc` reclaims it once the host answers",
                        self.platform.host.name, self.cid, exc)
            self.proc.stop(grace=0)
            return
        self.proc.stop(grace=0 if fast else 5.0)
        self.platform.ledger.release(LEDGER_KIND, self.cid)


O = TypeVar("O", bound=PlatformOptions)


class OciPlatform(Platform[O], Generic[O]):
    binary: ClassVar[str]  # the runtime executable (a platform may take it from its options instead)
    state_root: ClassVar[str]

    @property
    def runtime(self) -> str:
        return self.binary

    def runtime_argv(self) -> list[str]:
        return [self.runtime]

    def global_flags(self) -> list[str]:
        return ["--root", self.state_root]

    def host_stack_netns(self, attachment) -> str | None:
        return attachment.netns  # the container's process uses the host kernel's stack in its namespace

    def image(self, workload: Workload, cache: ImageCache) -> Image:
        return rootfs_image(workload.kind, workload.image_recipe(), cache)

    def rootfs(self, image: Image) -> str:
        """The image's rootfs on the host the platform is placed on (a lab host: its cached copy)."""
        if self.host.is_local:
            return str(image.file("rootfs"))
        root = stage_tree(self.host, image.path, image.path.name, image.digest, self.ledger)  # type: ignore[arg-type]
        return str(PurePosixPath(root) / image.files["rootfs"])

    def mounts(self) -> list[dict]:
        """Mounts a launch adds to the bundle after testbed's own (subclasses: e.g. a host tmpfs)."""
        return []

    def launch(self, image: Image, workload: Workload, attachment, timeline: Timeline) -> Instance:
        cid = f"{attachment.netns}-{workload.name}"
        workdir = self.launch_dir(cid)
        config_dir = workdir / "config"
        config_dir.mkdir()
        workload.write_config(config_dir, config_path=CONFIG_MOUNT)
        there = Path(on_host(self.host, workdir))  # the launch's directory on the host (here: workdir itself)
        spec = oci_config(rootfs=self.rootfs(image), args=workload.argv(CONFIG_MOUNT), hostname=workload.kind,
                          netns_path=str(NETNS_DIR / attachment.netns), config_dir=there / "config",
                          cpus=self.options.cpus, mounts=self.mounts())
        write_bundle(workdir / "bundle", spec)
        if not self.host.is_local:
            self.host.put_tree(workdir, str(there), timeout=RUNTIME_TIMEOUT)
        argv = [*self.runtime_argv(), *self.global_flags(), "run", "--bundle", str(there / "bundle"), cid]
        if self.options.cpus:  # inherited by the container: holds even where a runtime cannot use cgroups
            argv = ["taskset", "-c", ",".join(map(str, self.options.cpus)), *argv]
        self.ledger.acquire(LEDGER_KIND, cid, binary=self.runtime, flags=self.global_flags(),
                            **self.host.connection_meta())
        try:
            proc = self.host.spawn(argv, log_path=str(there / "runtime.log"), ledger=self.ledger,
                                   label=f"{self.runtime}-{cid}", before_start=lambda: timeline.mark("requested"))
        except LaunchError:
            self.ledger.release(LEDGER_KIND, cid)
            raise
        timeline.mark("process_started", now())
        return OciInstance(cid, attachment, timeline, workdir, proc, self, cid)

    def delete_container(self, cid: str) -> None:
        delete_container(self.host, self.runtime, self.global_flags(), cid)

    def versions(self) -> dict[str, str]:
        try:
            out = self.host.run([self.runtime, *self.global_flags(), "--version"], timeout=RUNTIME_TIMEOUT,
                                check=False).stdout
        except TestbedError:
            return {self.runtime: "missing"}
        first = out.split("\n")[0].split()
        # "runc version 1.1.5" / "runsc version release-20221219.0" / "crun version 1.8.1"
        return {self.runtime: " ".join(first[2:]) if len(first) > 2 and first[1] == "version" else out.strip()}


def delete_container(host: Host, binary: str, flags: list[str], cid: str) -> None:
    # `kill KILL` + `delete --force` kill the container's processes and remove its state; absent is fine.
    host.run([binary, *flags, "kill", cid, "KILL"], timeout=RUNTIME_TIMEOUT, check=False)
    force = "-force" if binary == "runsc" else "--force"  # Debian's runsc takes Go-style single-dash flags
    host.run([binary, *flags, "delete", force, cid], timeout=RUNTIME_TIMEOUT, check=False)


class ContainerReclaimer(Reclaimer, kind=LEDGER_KIND):
    def reclaim(self, name: str, meta: dict) -> None:
        # on a lab host: reconnected with the same host-key rules (known_hosts or the pinned key only)
        delete_container(host_for_entry(meta), meta["binary"], meta.get("flags", []), name)
