"""linux-vm: a Linux guest under QEMU, defined and run through libvirt.

Direct kernel boot of images/linux.guest_image (Debian cloud kernel + testbed's initramfs),
a virtio-net NIC on the run's lab network (a tap libvirt puts on the lab's address-less host
bridge), the serial console in a file a watcher thread reads to stamp the boot phases.
KVM or TCG is decided by the accelerator probe in prepare(); see docs/linux-vm.md.
What every libvirt guest shares is in libvirt_guest.py; this adds the image and the boot.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator

from ..digest import sha256_file
from ..errors import ConfigError
from ..images.cache import Image, ImageCache
from ..images.linux import (
    CONFIG_PATH,
    GUEST_MODULES,
    guest_image,
    kernel_image,
    kernel_release,
    launch_archive,
    launch_initrd,
)
from ..net.sriov.guest import guest_vf_problem, sriov_guest_modules
from ..tools import Tool
from ..virt.connection import is_local
from ..virt.console import MARKER_PHASES, Event
from ..virt.domain import domain_xml, kernel_cmdline
from ..workloads.base import Workload
from .base import Instance, Timeline
from .libvirt_guest import LIBVIRT_TOOLS, GuestInstance, GuestOptions, LibvirtGuestPlatform

IMAGE_TOOLS = (
    Tool("dpkg-deb", "dpkg", (), "Linux guest images"),
    Tool("apt-get", "apt", (), "Linux guest images (the kernel package)"),
    Tool("depmod", "kmod", (), "Linux guest images"),
)


def hugepages_free_mib(meminfo: Path | str = Path("/proc/meminfo")) -> int:
    """Free hugepages in MiB, from /proc/meminfo (a path here, or the file's text from a lab host)."""
    text = meminfo.read_text() if isinstance(meminfo, Path) else meminfo
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) if rest.split() else 0
    return values.get("HugePages_Free", 0) * values.get("Hugepagesize", 0) // 1024


class LinuxVmOptions(GuestOptions):
    memory_mb: int = Field(512, ge=128)
    hugepages: bool = False
    kernel: Path | None = None
    initrd: Path | None = None

    @field_validator("kernel", "initrd")
    @classmethod
    def _boot_file(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        """Relative to the suite file (not the working directory), and of the right kind."""
        if v is None:
            return v
        from ..images.boot_files import check_initrd, check_kernel

        base = (info.context or {}).get("base_dir")
        path = Path(v) if Path(v).is_absolute() or base is None else Path(base) / v
        path = path.resolve()
        if not path.is_file():
            raise ValueError(f"{v} does not exist or is not a file (paths are relative to the suite file)")
        try:
            (check_kernel if info.field_name == "kernel" else check_initrd)(path)
        except ConfigError as exc:  # as a validation error, so it is reported with the suite's file:line
            raise ValueError(str(exc)) from None
        return path


class LinuxVmInstance(GuestInstance):
    def on_console(self, events: list[Event], t: float) -> None:
        tl = self.timeline
        tl.mark("first_console", t)
        for ev in events:
            if ev.kind == "marker" and ev.name in MARKER_PHASES:
                tl.mark(MARKER_PHASES[ev.name], t)
        tl.guest.update(self.console.parser.guest_figures())

    def guest_exit_reason(self, tail: str) -> str | None:
        p = self.console.parser
        if "workload-exit" in p.markers:
            return f"guest workload exited with {p.markers['workload-exit'].get('code')}: {tail}"
        return None


class LinuxVm(LibvirtGuestPlatform[LinuxVmOptions], kind="linux-vm"):
    Options = LinuxVmOptions
    tools = LIBVIRT_TOOLS + IMAGE_TOOLS
    provenance_options = ("nic", "machine", "vcpus", "memory_mb", "hugepages", "vcpu_pins")

    # --- run-level -----------------------------------------------------------------------
    def _validate_against_host(self, o: LinuxVmOptions) -> None:  # type: ignore[override]
        import xml.etree.ElementTree as ET

        super()._validate_against_host(o)
        if o.hugepages and is_local(o.uri):
            free_mib = hugepages_free_mib(Path("/proc/meminfo") if self.host.is_local else
                                          self.host.read_text("/proc/meminfo"))
            if free_mib < o.memory_mb:
                raise ConfigError(f"platform {self.name}: hugepages: true needs {o.memory_mb} MiB of free hugepages, "
                                  f"the host has {free_mib} MiB (set hugepages for the host and run testbed provision)")
        caps = ET.fromstring(self.conn.call(self.conn.conn.getCapabilities, what="getCapabilities"))
        machines: set[str] = set()
        for guest in caps.iter("guest"):
            arch = guest.find("arch")
            if arch is None or arch.get("name") != "x86_64":
                continue
            for m in arch.iter("machine"):
                machines.add(m.text or "")
                machines.add(m.get("canonical") or "")
        if o.machine not in machines:
            known = ", ".join(sorted(x for x in machines if x and not x[-1].isdigit()) or sorted(machines)[:5])
            raise ConfigError(f"platform {self.name}: machine {o.machine!r} is not supported by QEMU on "
                              f"{o.uri} (try one of: {known})")

    # --- images and launches -------------------------------------------------------------
    def vf_problem(self, vf) -> str | None:
        kernel = kernel_image(ImageCache())
        return guest_vf_problem("linux-vm", vf, guest_modules=kernel.file("modules") / kernel_release(kernel))

    def image(self, workload: Workload, cache: ImageCache) -> Image:
        # sriov cells' initramfs also carries the VF drivers the guest kernel has (virtio cells stay lean)
        modules = sriov_guest_modules(kernel_image(cache)) if self.options.nic == "sriov" else GUEST_MODULES
        image = guest_image(workload.kind, workload.image_recipe(), cache, modules=modules)
        o = self.options
        self._facts["guest_kernel"] = image.file("release").read_text().strip()
        if o.kernel is not None:
            self._facts["kernel_override"] = f"{o.kernel} sha256:{sha256_file(o.kernel)[:16]}"
        if o.initrd is not None:
            self._facts["initrd_override"] = f"{o.initrd} sha256:{sha256_file(o.initrd)[:16]}"
        return image

    def launch(self, image: Image, workload: Workload, attachment, timeline: Timeline) -> Instance:
        o = self.options
        name, octet, workdir = self.guest_dir(workload, attachment)
        config_dir = workdir / "config"
        config_dir.mkdir()
        workload.write_config(config_dir, config_path=CONFIG_PATH)
        site = self.site
        kernel = site.ship(Path(o.kernel)) if o.kernel else site.image_file(image, "kernel")
        argv = workload.guest_argv(CONFIG_PATH)
        launch_files: list[str] = []
        if site.local:
            base_initrd = Path(o.initrd) if o.initrd else image.file("initrd")
            initrd = str(launch_initrd(base_initrd, workdir / "initrd.img", config_dir, argv))
        else:  # a lab host: its cached initramfs plus this launch's small archive, joined there
            base = site.ship(Path(o.initrd)) if o.initrd else site.image_file(image, "initrd")
            extra = site.put(launch_archive(workdir / "launch.cpio", config_dir, argv))
            launch_files.append(extra)
            initrd = site.concat([base, extra], site.path(workdir / "initrd.img"))
        launch_files.append(initrd)
        nic = self.nic(name, attachment, octet)
        spec = self.domain_spec(
            name, workload, nic, workdir / "console.log", kernel=kernel, initrd=initrd,
            cmdline=kernel_cmdline(attachment.address, attachment.prefixlen, attachment.gateway, attachment.mac),
            cpuset=None if o.vcpu_pins else o.cpus, hugepages=o.hugepages,
        )
        try:
            console = self.create(name, domain_xml(spec), workdir, timeline, attachment)
        except BaseException:
            site.remove(*launch_files)
            raise
        timeline.mark("process_started")
        inst = LinuxVmInstance(name, attachment, timeline, workdir, self, console)
        inst.launch_files = launch_files
        return self.running(inst, {"domain": name, "kernel_cmdline": spec.cmdline})
