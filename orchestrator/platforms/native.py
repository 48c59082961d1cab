"""native: the server as a plain host process inside its own lab network namespace."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..images.cache import Image, ImageCache, sha256_file
from ..images.rootfs import package_versions
from ..workloads.base import Workload
from .base import Instance, Platform, Timeline, now
from ..hosts.base import Process
from ..hosts.local import LocalHost


class NativeInstance(Instance):
    def __init__(self, name, attachment, timeline, workdir, proc: Process):
        super().__init__(name, attachment, timeline, workdir)
        self.proc = proc

    def alive(self) -> bool:
        return self.proc.alive()

    def exit_reason(self) -> str:
        return f"process exited with {self.proc.returncode()}: {self.proc.log_tail()}"

    def stop(self) -> None:
        self.proc.stop()


class Native(Platform):
    kind = "native"
    tools = ("ip", "taskset")

    def image(self, workload: Workload, cache: ImageCache) -> Image:
        # Nothing to build: the host's own binaries. Their digest still goes into provenance.
        binary = Path(workload.recipe.binaries[0])
        versions = package_versions(workload.recipe.packages)
        return Image("host", workload.name, "", sha256_file(binary), binary.parent, {"binary": binary.name},
                     True, 0.0, {"packages": versions})

    def launch(self, image: Image, workload: Workload, attachment, timeline: Timeline) -> Instance:
        workdir = self.workdir / f"{workload.name}-{attachment.address}"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        config_dir = workdir / "config"
        config_dir.mkdir()
        workload.write_config(config_dir, config_path=str(config_dir))
        if not isinstance(self.host, LocalHost):  # a lab host: ship the rendered config to the same path there
            self.host.run(["mkdir", "-p", str(config_dir)], timeout=30)
            for f in sorted(config_dir.rglob("*")):
                if f.is_dir():
                    self.host.run(["mkdir", "-p", str(f)], timeout=30)
                else:
                    self.host.put(f, str(f), timeout=60)
        # In the instance's lab namespace; on a lab host placed by a two-host suite, on its experiment link.
        argv = ["ip", "netns", "exec", attachment.netns] if attachment.netns else []
        if self.options.cpus:
            argv += ["taskset", "-c", ",".join(map(str, self.options.cpus))]
        argv += workload.argv(str(config_dir))
        timeline.mark("requested")
        proc = self.host.spawn(argv, log_path=workdir / "server.log", ledger=self.ledger, label=f"native-{workload.name}")
        timeline.mark("process_started", now())
        return NativeInstance(f"native-{workload.name}", attachment, timeline, workdir, proc)
