"""native: the server as a plain host process inside its own lab network namespace
(on a lab host placed by a two-host suite: on the host's experiment interface)."""

from __future__ import annotations

from pathlib import Path

from ..hosts.base import Host, Process, lost_host_reason, on_host
from ..images.cache import Image, ImageCache
from ..tools import Tool
from ..workloads.base import Workload
from .base import Instance, Platform, PlatformOptions, Timeline, now


class NativeInstance(Instance):
    def __init__(self, name, attachment, timeline, workdir, proc: Process):
        super().__init__(name, attachment, timeline, workdir)
        self.proc = proc

    def alive(self) -> bool:
        return self.proc.alive()

    def exit_reason(self) -> str:
        return lost_host_reason(self.proc) or f"process exited with {self.proc.returncode()}: {self.proc.log_tail()}"

    def stop(self, *, fast: bool = False) -> None:
        self.proc.stop(grace=0 if fast else 5.0)


def package_versions(host: Host, packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of Debian packages on `host` ('missing' for one that is not installed)."""
    out = {}
    for pkg in packages:
        res = host.run(["dpkg-query", "-W", "-f=${Version}", pkg], timeout=20, check=False)
        out[pkg] = res.stdout.strip() if res.ok and res.stdout.strip() else "missing"
    return out


class NativeOptions(PlatformOptions):
    pass


class Native(Platform[NativeOptions], kind="native"):
    Options = NativeOptions
    tools = (Tool("taskset", "util-linux", ("taskset", "--version"), "native platform (CPU pinning)"),
             Tool("dpkg-query", "dpkg", (), "native platform (package versions)"))

    @classmethod
    def lab_host_tools(cls, options=None) -> tuple[Tool, ...]:
        return ()  # the host's own binaries: nothing is copied

    def attach(self, net):
        return net.host_interface(self.name)  # here a namespace of its own; on a lab host its own interface

    def host_stack_netns(self, attachment) -> str | None:
        return attachment.netns

    def image(self, workload: Workload, cache: ImageCache) -> Image:
        # Nothing to build: the host's own binaries. Their digest still goes into provenance.
        recipe = workload.image_recipe()
        binary = recipe.binaries[0]
        digest = self.host.file_sha256(binary)
        if digest is None:
            from ..errors import MissingToolError

            raise MissingToolError(f"platform {self.name}: {binary} does not exist on {self.host.name}; install "
                                   f"{', '.join(recipe.packages)} there (testbed provision)")
        return Image("host", workload.kind, "", digest, Path(binary).parent, {"binary": Path(binary).name},
                     True, 0.0, {"packages": package_versions(self.host, recipe.packages)})

    def launch(self, image: Image, workload: Workload, attachment, timeline: Timeline) -> Instance:
        workdir = self.launch_dir(f"{workload.name}-{attachment.address}")
        config_dir = workdir / "config"
        config_dir.mkdir()
        remote_config = on_host(self.host, config_dir)  # a lab host: the same layout under its testbed_home
        workload.write_config(config_dir, config_path=remote_config)
        if not self.host.is_local:
            self.host.put_tree(config_dir, remote_config, timeout=60)
        # In the instance's lab namespace; on a lab host, on its experiment link.
        argv = ["ip", "netns", "exec", attachment.netns] if attachment.netns else []
        if self.options.cpus:
            argv += ["taskset", "-c", ",".join(map(str, self.options.cpus))]
        argv += workload.argv(remote_config)
        proc = self.host.spawn(argv, log_path=on_host(self.host, workdir / "server.log"), ledger=self.ledger,
                               label=f"native-{workload.name}", before_start=lambda: timeline.mark("requested"))
        timeline.mark("process_started", now())
        return NativeInstance(f"native-{workload.name}", attachment, timeline, workdir, proc)
