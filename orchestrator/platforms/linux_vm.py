"""linux-vm: a Linux guest under QEMU, defined and run through libvirt.

Direct kernel boot of images/linux.guest_image (Debian cloud kernel + testbed's initramfs),
a virtio-net NIC on the run's lab network (LabNet.attach_vm: a tap on an address-less host
bridge), the serial console in a file that poll_console() reads to mark the boot phases.
KVM or TCG is decided by the accelerator probe in prepare(); see docs/linux-vm.md.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..errors import ConfigError, LaunchError
from ..images.cache import Image, ImageCache, sha256_file
from ..images.linux import CONFIG_PATH, guest_image, launch_initrd
from ..net import sriov
from ..virt.accel import PROBE_TIMEOUT, AccelChoice, choose_accel
from ..virt.connection import DEFAULT_URI, Connection, is_local
from ..virt.console import MARKER_PHASES, ConsoleFile
from ..virt.domain import BridgeNic, DomainSpec, SriovNic, domain_xml, kernel_cmdline
from ..virt.lifecycle import create_transient, destroy, domain_running, process_started_monotonic, qemu_pid
from ..workloads.base import Workload
from .base import Instance, Platform, PlatformOptions, Timeline, now


def hugepages_free_mib(meminfo: Path = Path("/proc/meminfo")) -> int:
    values = {}
    for line in meminfo.read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) if rest.split() else 0
    return values.get("HugePages_Free", 0) * values.get("Hugepagesize", 0) // 1024


class LinuxVmOptions(PlatformOptions):
    uri: str = DEFAULT_URI
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    vcpus: int = Field(1, ge=1, le=64)
    memory_mb: int = Field(512, ge=128)
    vcpu_pins: list[int] | None = None
    hugepages: bool = False
    nic: Literal["virtio", "sriov"] = "virtio"
    sriov_pf: str | None = None
    machine: str = "pc"
    kernel: Path | None = None
    initrd: Path | None = None
    ready_timeout: float = 120.0
    connect_timeout: float = Field(30.0, gt=0)
    probe_timeout: float = Field(PROBE_TIMEOUT, gt=0)

    @field_validator("kernel", "initrd")
    @classmethod
    def _exists(cls, v: Path | None, info) -> Path | None:
        if v is not None and not Path(v).is_file():
            raise ValueError(f"{info.field_name}: {v} does not exist or is not a file")
        return v

    @model_validator(mode="after")
    def _sriov_needs_pf(self):
        if self.nic == "sriov" and not self.sriov_pf:
            raise ValueError("nic: sriov needs sriov_pf (the physical function's netdev name, e.g. ens1f0)")
        return self


class LinuxVmInstance(Instance):
    def __init__(self, name, attachment, timeline, workdir, platform: "LinuxVm", console: ConsoleFile,
                 vf: sriov.VirtualFunction | None = None):
        super().__init__(name, attachment, timeline, workdir)
        self.platform = platform
        self.console = console
        self.vf = vf
        self._stopped = False
        self._pid: int | None = None

    def poll_console(self) -> None:
        tl = self.timeline
        if not tl.has("vmm_started"):
            self._pid = qemu_pid(self.name)
            if self._pid is not None:
                tl.mark("vmm_started", process_started_monotonic(self._pid) or now())
        events = self.console.poll()
        t = now()
        for ev in events:
            if not tl.has("first_console"):
                tl.mark("first_console", t)
            if ev.kind == "marker" and ev.name in MARKER_PHASES:
                tl.mark(MARKER_PHASES[ev.name], t)
        if events:
            tl.guest.update(self.console.parser.guest_figures())

    def alive(self) -> bool:
        if self._stopped:
            return False
        return domain_running(self.platform.conn, self.name)

    def exit_reason(self) -> str:
        self.console.poll()
        p = self.console.parser
        if "workload-exit" in p.markers:
            return f"guest workload exited with {p.markers['workload-exit'].get('code')}: {p.tail_line()}"
        return f"domain {self.name} is gone; console: {p.tail_line()}"

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            destroy(self.platform.conn, self.platform.ledger, self.name)
        finally:
            if self.vf is not None:
                self.platform.vf_allocator().release(self.vf)
                self.vf = None
            (self.workdir / "initrd.img").unlink(missing_ok=True)  # a per-launch copy of the cached image


class LinuxVm(Platform):
    kind = "linux-vm"
    Options = LinuxVmOptions
    attachment = "vm"
    tools = ("virsh", "qemu-system-x86_64", "dpkg-deb", "apt-get", "depmod")

    def __init__(self, name, options, host, ledger, workdir):
        super().__init__(name, options, host, ledger, workdir)
        o: LinuxVmOptions = self.options  # type: ignore[assignment]
        for field in ("kernel", "initrd"):
            p = getattr(o, field)
            if p is not None and not Path(p).is_file():
                raise ConfigError(f"platform {name}: {field}: {p} does not exist")
        self._conn: Connection | None = None
        self.accel: AccelChoice | None = None
        self._vfs: sriov.VfAllocator | None = None
        self._facts: dict = {}

    # --- run-level -----------------------------------------------------------------------
    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = Connection(self.options.uri, timeout=self.options.connect_timeout)
        return self._conn

    def prepare(self) -> None:
        if self.accel is not None:
            return
        o: LinuxVmOptions = self.options  # type: ignore[assignment]
        self._validate_against_host(o)
        self.accel = choose_accel(self.conn, self.ledger, ImageCache(), o.accel, timeout=o.probe_timeout,
                                  machine=o.machine)

    def _validate_against_host(self, o: LinuxVmOptions) -> None:
        import xml.etree.ElementTree as ET

        mem_mib, cpus = self.conn.host_info()
        if o.memory_mb > mem_mib:
            raise ConfigError(f"platform {self.name}: memory_mb {o.memory_mb} exceeds the host's {mem_mib} MiB")
        for pin in (o.vcpu_pins or []) + (o.cpus or []):
            if not 0 <= pin < cpus:
                raise ConfigError(f"platform {self.name}: CPU {pin} does not exist (host has CPUs 0-{cpus - 1})")
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

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def vf_allocator(self) -> sriov.VfAllocator:
        if self._vfs is None:
            self._vfs = sriov.VfAllocator(self.options.sriov_pf, ledger=self.ledger)
        return self._vfs

    def versions(self) -> dict[str, str]:
        try:
            return self.conn.versions()
        except Exception as exc:
            return {"libvirt": f"unavailable ({exc})"}

    def provenance(self) -> dict:
        o: LinuxVmOptions = self.options  # type: ignore[assignment]
        facts = {"nic": o.nic, "machine": o.machine, "vcpus": o.vcpus, "memory_mb": o.memory_mb,
                 "hugepages": o.hugepages, "vcpu_pins": o.vcpu_pins, "libvirt_uri": o.uri, **self._facts}
        if self.accel is not None:
            facts.update(self.accel.provenance())
        return facts

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
        self.prepare()
        octet = str(attachment.address).rsplit(".", 1)[1]
        name = f"tb-{self.ledger.run_id}-{workload.name}-{octet}"
        workdir = self.workdir / name
        shutil.rmtree(workdir, ignore_errors=True)
        config_dir = workdir / "config"
        config_dir.mkdir(parents=True)
        workload.write_config(config_dir, config_path=CONFIG_PATH)
        kernel = Path(o.kernel) if o.kernel else image.file("kernel")
        base_initrd = Path(o.initrd) if o.initrd else image.file("initrd")
        initrd = launch_initrd(base_initrd, workdir / "initrd.img", config_dir, workload.guest_argv(CONFIG_PATH))
        console_path = workdir / "console.log"
        vf = None
        if o.nic == "sriov":
            vf = self.vf_allocator().allocate(attachment.mac, owner=name)
            nic = SriovNic(vf.pci_address, attachment.mac)
        else:
            if not attachment.bridge:
                raise LaunchError(f"{name}: attachment has no host bridge; use LabNet.attach_vm()")
            nic = BridgeNic(attachment.bridge, attachment.mac, tap=f"tb{self.ledger.run_id}t{octet}"[:15])
        spec = DomainSpec(
            name=name, kernel=str(kernel), initrd=str(initrd), console_log=str(console_path),
            cmdline=kernel_cmdline(attachment.address, attachment.prefixlen, attachment.gateway, attachment.mac),
            domain_type=self.accel.domain_type, machine=o.machine, vcpus=o.vcpus, memory_mib=o.memory_mb,
            vcpu_pins=o.vcpu_pins, emulator_pins=o.cpus, cpuset=None if o.vcpu_pins else o.cpus, hugepages=o.hugepages, nics=[nic],
            metadata={"run": self.ledger.run_id, "workload": workload.name, "platform": self.name},
        )
        xml = domain_xml(spec)
        (workdir / "domain.xml").write_text(xml)
        console = ConsoleFile(console_path)
        timeline.mark("requested")
        try:
            create_transient(self.conn, self.ledger, name, xml)
        except BaseException:
            if vf is not None:
                self.vf_allocator().release(vf)
            raise
        timeline.mark("process_started")
        inst = LinuxVmInstance(name, attachment, timeline, workdir, self, console, vf)
        inst.provenance = {"domain": name, "kernel_cmdline": spec.cmdline}
        inst.poll_console()
        return inst
