"""microvm: the Linux guest under QEMU's microvm machine, run directly (no libvirt).

`qemu-system-x86_64 -M microvm` has no PCI bus, no firmware and no legacy devices beyond what is
asked for: virtio devices sit on virtio-mmio, found through the ACPI tables QEMU generates, and
the kernel is booted directly. testbed boots the same Debian cloud kernel and initramfs as
linux-vm (images/linux.py, whose init loads virtio_mmio as well as virtio_pci: both are modules
in that kernel). The NIC is a tap testbed creates on the lab's host bridge
(LabNet.tap); the serial console goes to a file a watcher thread reads for the boot phases.

Under TCG the kernel has no HPET or PM timer to calibrate its TSC against (microvm has neither)
and calibrates against the PIT in a short window, which fails whenever QEMU's thread is
descheduled (seen: every boot hangs with a loaded host); without a TSC rate the local APIC timer
is never calibrated and the kernel's clock never ticks. TCG's TSC is the host's, so testbed gives
the guest the host's TSC rate (`tsc_early_khz=`, recorded in provenance) and keeps the PIT on
(Unikraft's `pit=off` recipe hangs this kernel). Under KVM the CPU is the host's (kvmclock).
The accelerator is the shared probe's verdict (virt/accel.py), recorded in every sample.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ..hosts.base import Process
from ..images.cache import Image, ImageCache
from ..images.linux import CONFIG_PATH, guest_image, launch_initrd
from ..net.labnet import Attachment, LabNetwork
from ..tools import Tool
from ..virt.accel import PROBE_TIMEOUT, AccelChoice, choose_accel
from ..virt.connection import DEFAULT_URI
from ..virt.console import MARKER_PHASES, ConsoleFile, ConsoleWatcher, Event
from ..virt.domain import kernel_cmdline
from ..virt.site import GuestSite
from ..workloads.base import Workload
from .base import Instance, Platform, PlatformOptions, Timeline, now

QEMU = "qemu-system-x86_64"
MACHINE_OPTION = re.compile(r"^[a-z0-9-]+=[A-Za-z0-9_.-]+$")
CPU_MHZ = re.compile(r"^cpu MHz\s*:\s*([0-9.]+)", re.M)


class MicrovmOptions(PlatformOptions):
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    vcpus: int = Field(1, ge=1, le=64)
    memory_mb: int = Field(512, ge=128, le=1 << 20)
    cpu: str | None = Field(None, pattern=r"^[A-Za-z0-9_,+.=-]+$",
                            description="QEMU -cpu; default host (KVM) or qemu64 (TCG)")
    machine_options: list[str] = Field(default_factory=list, description="added to -M microvm, e.g. [rtc=on]")
    ready_timeout: float = Field(120.0, gt=0, le=3600)
    probe_timeout: float = Field(PROBE_TIMEOUT, gt=0)

    @field_validator("machine_options")
    @classmethod
    def _machine(cls, values: list[str]) -> list[str]:
        for v in values:
            if not MACHINE_OPTION.match(v) or v.startswith("accel="):
                raise ValueError(f"{v!r}: a microvm machine option is key=value (accel is testbed's)")
        return values


class MicrovmInstance(Instance):
    def __init__(self, name: str, attachment: Attachment, timeline: Timeline, workdir: Path, proc: Process,
                 console: ConsoleFile):
        super().__init__(name, attachment, timeline, workdir)
        self.proc = proc
        self.console = console
        self.watcher = ConsoleWatcher(console, self.on_console, name=name)

    def on_console(self, events: list[Event], t: float) -> None:
        tl = self.timeline
        tl.mark("first_console", t)
        for ev in events:
            if ev.kind == "marker" and ev.name in MARKER_PHASES:
                tl.mark(MARKER_PHASES[ev.name], t)
        tl.guest.update(self.console.parser.guest_figures())

    def alive(self) -> bool:
        return self.proc.alive() and "workload-exit" not in self.console.parser.markers

    def exit_reason(self) -> str:
        self.watcher.poll()
        p = self.console.parser
        if "workload-exit" in p.markers:
            return f"guest workload exited with {p.markers['workload-exit'].get('code')}: {p.tail_line()}"
        return f"QEMU exited ({self.proc.returncode()}: {self.proc.log_tail()}); console: {p.tail_line()}"

    def stop(self, *, fast: bool = False) -> None:
        try:
            self.proc.stop(grace=0)  # nothing in the guest outlives it: no graceful shutdown to wait for
        finally:
            self.watcher.stop()
            (self.workdir / "initrd.img").unlink(missing_ok=True)


class Microvm(Platform[MicrovmOptions], kind="microvm"):
    Options = MicrovmOptions
    tools = (Tool(QEMU, "qemu-system-x86", (QEMU, "--version"), "microvm platform"),
             Tool("dpkg-deb", "dpkg", (), "Linux guest images"), Tool("depmod", "kmod", (), "Linux guest images"))

    def __init__(self, name, options, host, ledger, workdir):
        super().__init__(name, options, host, ledger, workdir)
        self.accel: AccelChoice | None = None
        self._facts: dict = {}

    def attach(self, net: LabNetwork) -> Attachment:
        return net.tap(self.name)  # QEMU opens the tap itself: nobody else makes one for it

    def not_runnable(self, workload: Workload) -> str | None:
        if not self.host.is_local:  # its tap and console are this machine's files
            return f"microvm on a lab host ({self.host.name}) is not supported yet; place it on localhost"
        return None

    def prepare(self) -> None:
        if self.accel is not None:
            return
        o = self.options
        if o.accel == "tcg":
            self.accel = AccelChoice("tcg", "accel: tcg requested", [])
        else:
            site = GuestSite(self.host, DEFAULT_URI, timeout=30, ledger=self.ledger)
            try:  # the probe every guest platform shares (and caches per run)
                self.accel = choose_accel(site, self.ledger, ImageCache(), o.accel, timeout=o.probe_timeout)
            finally:
                site.close()
        if self.accel.accel == "tcg":
            m = CPU_MHZ.search(self.host.read_text("/proc/cpuinfo"))
            if m:
                self._facts["guest_tsc_khz"] = round(float(m.group(1)) * 1000)

    def image(self, workload: Workload, cache: ImageCache) -> Image:
        image = guest_image(workload.kind, workload.image_recipe(), cache)  # the same image as linux-vm
        self._facts["guest_kernel"] = image.file("release").read_text().strip()
        return image

    def argv(self, image: Image, initrd: Path, attachment: Attachment, console: Path) -> list[str]:
        o = self.options
        assert self.accel is not None and attachment.tap
        kvm = self.accel.accel == "kvm"
        machine = ",".join(["microvm", f"accel={'kvm' if kvm else 'tcg'}", *o.machine_options])
        tsc = self._facts.get("guest_tsc_khz")
        cmdline = kernel_cmdline(attachment.address, attachment.prefixlen, attachment.gateway, attachment.mac,
                                 extra=[f"tsc_early_khz={tsc}"] if tsc and not kvm else None)
        argv = [QEMU, "-M", machine, "-cpu", o.cpu or ("host" if kvm else "qemu64"), "-m", str(o.memory_mb),
                "-smp", str(o.vcpus), "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
                "-serial", f"file:{console}", "-kernel", str(image.file("kernel")), "-initrd", str(initrd),
                "-append", cmdline,
                "-netdev", f"tap,id=n0,ifname={attachment.tap},script=no,downscript=no",
                "-device", f"virtio-net-device,netdev=n0,mac={attachment.mac}"]
        if o.cpus:
            argv = ["taskset", "-c", ",".join(map(str, o.cpus)), *argv]
        return argv

    def launch(self, image: Image, workload: Workload, attachment: Attachment, timeline: Timeline) -> Instance:
        self.prepare()
        name = f"microvm-{workload.name}-{str(attachment.address).rsplit('.', 1)[1]}"
        workdir = self.launch_dir(name)
        config_dir = workdir / "config"
        config_dir.mkdir()
        workload.write_config(config_dir, config_path=CONFIG_PATH)
        initrd = launch_initrd(image.file("initrd"), workdir / "initrd.img", config_dir,
                               workload.guest_argv(CONFIG_PATH))
        console = workdir / "console.log"
        argv = self.argv(image, initrd, attachment, console)
        proc = self.host.spawn(argv, log_path=workdir / "qemu.log", ledger=self.ledger, label=name,
                               before_start=lambda: timeline.mark("requested"))
        timeline.mark("process_started", now())  # the process is the VMM itself
        inst = MicrovmInstance(name, attachment, timeline, workdir, proc, ConsoleFile(console))
        inst.provenance = {"qemu_argv": " ".join(argv[argv.index(QEMU):])}
        inst.watcher.start()
        return inst

    def provenance(self) -> dict:
        o = self.options
        facts = {"machine": "microvm", "vcpus": o.vcpus, "memory_mb": o.memory_mb,
                 "machine_options": o.machine_options, **self._facts}
        if self.accel is not None:
            facts.update(self.accel.provenance())
        return facts
