"""linux-vm: a Linux guest under QEMU, defined and run through libvirt.

Direct kernel boot of images/linux.guest_image (Debian cloud kernel + testbed's initramfs),
a virtio-net NIC on the run's lab network (LabNet.attach_vm: a tap on an address-less host
bridge), the serial console in a file that poll_console() reads to mark the boot phases.
KVM or TCG is decided by the accelerator probe in prepare(); see docs/linux-vm.md.
What every libvirt guest shares is in libvirt_guest.py; this adds the image and the boot.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ..errors import ConfigError
from ..images.cache import Image, ImageCache, sha256_file
from ..images.linux import CONFIG_PATH, guest_image, launch_initrd
from ..virt.connection import is_local
from ..virt.console import MARKER_PHASES
from ..virt.domain import domain_xml, kernel_cmdline
from ..workloads.base import Workload
from .base import Instance, Timeline, now
from .libvirt_guest import GuestInstance, GuestOptions, LibvirtGuestPlatform


def hugepages_free_mib(meminfo: Path = Path("/proc/meminfo")) -> int:
    values = {}
    for line in meminfo.read_text().splitlines():
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
    def _exists(cls, v: Path | None, info) -> Path | None:
        if v is not None and not Path(v).is_file():
            raise ValueError(f"{info.field_name}: {v} does not exist or is not a file")
        return v


class LinuxVmInstance(GuestInstance):
    def poll_console(self) -> None:
        events = self.console_events()
        tl = self.timeline
        t = now()
        for ev in events:
            if not tl.has("first_console"):
                tl.mark("first_console", t)
            if ev.kind == "marker" and ev.name in MARKER_PHASES:
                tl.mark(MARKER_PHASES[ev.name], t)
        if events:
            tl.guest.update(self.console.parser.guest_figures())

    def guest_exit_reason(self, tail: str) -> str | None:
        p = self.console.parser
        if "workload-exit" in p.markers:
            return f"guest workload exited with {p.markers['workload-exit'].get('code')}: {tail}"
        return None

    def remove_launch_files(self) -> None:
        (self.workdir / "initrd.img").unlink(missing_ok=True)  # a per-launch copy of the cached image


class LinuxVm(LibvirtGuestPlatform):
    kind = "linux-vm"
    Options = LinuxVmOptions
    tools = ("virsh", "qemu-system-x86_64", "dpkg-deb", "apt-get", "depmod")
    provenance_options = ("nic", "machine", "vcpus", "memory_mb", "hugepages", "vcpu_pins")

    def __init__(self, name, options, host, ledger, workdir):
        super().__init__(name, options, host, ledger, workdir)
        o: LinuxVmOptions = self.options  # type: ignore[assignment]
        for field in ("kernel", "initrd"):
            p = getattr(o, field)
            if p is not None and not Path(p).is_file():
                raise ConfigError(f"platform {name}: {field}: {p} does not exist")

    # --- run-level -----------------------------------------------------------------------
    def _validate_against_host(self, o: LinuxVmOptions) -> None:
        import xml.etree.ElementTree as ET

        super()._validate_against_host(o)
        if o.hugepages and is_local(o.uri):
            free_mib = hugepages_free_mib()
            if free_mib < o.memory_mb:
                raise ConfigError(f"platform {self.name}: hugepages: true needs {o.memory_mb} MiB of free hugepages, "
                                  f"the host has {free_mib} MiB (set hugepages for the host and run testbed provision)")
        caps = ET.fromstring(self.conn.call(self.conn.conn.getCapabilities, what="getCapabilities"))
        machines = set()
        for guest in caps.iter("guest"):
            arch = guest.find("arch")
            if arch is None or arch.get("name") != "x86_64":
                continue
            for m in arch.iter("machine"):
                machines.add(m.text)
                if m.get("canonical"):
                    machines.add(m.get("canonical"))
        if o.machine not in machines:
            known = ", ".join(sorted(x for x in machines if x and not x[-1].isdigit()) or sorted(machines)[:5])
            raise ConfigError(f"platform {self.name}: machine {o.machine!r} is not supported by QEMU on "
                              f"{o.uri} (try one of: {known})")

    # --- images and launches -------------------------------------------------------------
    def image(self, workload: Workload, cache: ImageCache) -> Image:
        image = guest_image(workload, cache)
        o: LinuxVmOptions = self.options  # type: ignore[assignment]
        self._facts["guest_kernel"] = image.file("release").read_text().strip()
        if o.kernel is not None:
            self._facts["kernel_override"] = f"{o.kernel} sha256:{sha256_file(o.kernel)[:16]}"
        if o.initrd is not None:
            self._facts["initrd_override"] = f"{o.initrd} sha256:{sha256_file(o.initrd)[:16]}"
        return image

    def launch(self, image: Image, workload: Workload, attachment, timeline: Timeline) -> Instance:
        o: LinuxVmOptions = self.options  # type: ignore[assignment]
        name, octet, workdir = self.launch_dir(workload, attachment)
        config_dir = workdir / "config"
        config_dir.mkdir()
        workload.write_config(config_dir, config_path=CONFIG_PATH)
        kernel = Path(o.kernel) if o.kernel else image.file("kernel")
        base_initrd = Path(o.initrd) if o.initrd else image.file("initrd")
        initrd = launch_initrd(base_initrd, workdir / "initrd.img", config_dir, workload.guest_argv(CONFIG_PATH))
        nic, vf = self.nic(name, attachment, octet)
        spec = self.domain_spec(
            name, workload, nic, workdir / "console.log", kernel=str(kernel), initrd=str(initrd),
            cmdline=kernel_cmdline(attachment.address, attachment.prefixlen, attachment.gateway, attachment.mac),
            cpuset=None if o.vcpu_pins else o.cpus, hugepages=o.hugepages,
        )
        xml = domain_xml(spec)
        try:
            console = self.create(name, xml, workdir, timeline)
        except BaseException:
            if vf is not None:
                self.vf_allocator().release(vf)
            raise
        timeline.mark("process_started")
        inst = LinuxVmInstance(name, attachment, timeline, workdir, self, console, vf)
        return self.running(inst, {"domain": name, "kernel_cmdline": spec.cmdline})
