"""What the osv and rumprun platforms share: libvirt, the accelerator decision, disks, console.

Both boot a user-imported image (images/imported.py) as a transient libvirt domain
(virt/unikernel_domain.py on top of the linux-vm builder), with a virtio NIC on the run's lab
network (or an SR-IOV VF) and the serial console in a file that poll_console() reads. The
libvirt connection, the accelerator probe (kvm -> tcg fallback) and domain lifecycle are the
linux-vm platform's (virt/), reused as they are.

Disks are never given to QEMU as imported: each launch gets its own qcow2 overlay on the cached
file, so the cache keeps exactly the bytes its digest names (OSv's ZFS writes to its disk).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from ..errors import CommandTimeout, ConfigError, LaunchError, MissingToolError
from ..images.cache import Image, ImageCache
from ..images.imported import KINDS, find_imported, import_command, imported_images
from ..net import sriov
from ..provision.doctor import FAIL, PASS, WARN, Check, check
from ..virt.accel import PROBE_TIMEOUT, AccelChoice, choose_accel
from ..virt.connection import DEFAULT_URI, Connection
from ..virt.console import ConsoleFile
from ..virt.domain import BridgeNic, DomainSpec, SriovNic
from ..virt.lifecycle import (
    create_transient,
    destroy,
    domain_running,
    process_started_monotonic,
    qemu_pid,
)
from ..virt.unikernel_console import UnikernelConsole
from ..virt.unikernel_domain import Disk, UnikernelSpec, unikernel_xml
from ..workloads.base import Workload
from .base import Instance, Platform, PlatformOptions, Timeline, now

QEMU_IMG_TIMEOUT = 60.0


class UnikernelOptions(PlatformOptions):
    image: str | None = None  # name given at `testbed images import`; default: the workload's name
    cmdline: str | None = None  # the application's command line; default: per workload (see the platform)
    uri: str = DEFAULT_URI
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    vcpus: int = Field(1, ge=1, le=64)
    memory_mb: int = Field(256, ge=32)
    vcpu_pins: list[int] | None = None
    nic: Literal["virtio", "sriov"] = "virtio"
    sriov_pf: str | None = None
    machine: str = "pc"
    ready_timeout: float = 120.0
    connect_timeout: float = Field(30.0, gt=0)
    probe_timeout: float = Field(PROBE_TIMEOUT, gt=0)

    @model_validator(mode="after")
    def _sriov_needs_pf(self):
        if self.nic == "sriov" and not self.sriov_pf:
            raise ValueError("nic: sriov needs sriov_pf (the physical function's netdev name, e.g. ens1f0)")
        if self.cmdline is not None and not self.cmdline.strip():
            raise ValueError("cmdline: empty; leave it out for the workload's default")
        return self


def run_tool(argv: list[str], timeout: float = QEMU_IMG_TIMEOUT) -> None:
    if shutil.which(argv[0]) is None:
        raise MissingToolError(f"{argv[0]} is not installed; apt-get install qemu-utils")
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CommandTimeout(f"{argv[0]} {argv[1]} did not finish within {timeout:g} s") from exc
    if res.returncode != 0:
        raise LaunchError(f"{' '.join(argv[:2])} failed: {(res.stderr or res.stdout).strip()[:300]}")


def overlay(base: Path, base_format: str, dest: Path) -> Path:
    """A qcow2 file whose reads fall through to `base` and whose writes stay in `dest`."""
    dest.unlink(missing_ok=True)
    run_tool(["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", str(base.resolve()), str(dest)])
    return dest


def write_into_disk(disk: Path, offset: int, data: bytes, scratch: Path) -> None:
    """Write `data` at byte `offset` of a qcow2 disk's guest-visible contents (qemu-io, no mount)."""
    scratch.write_bytes(data)
    try:
        run_tool(["qemu-io", "-f", "qcow2", "-c", f"write -q -s {scratch} {offset} {len(data)}", str(disk)])
    finally:
        scratch.unlink(missing_ok=True)


class UnikernelInstance(Instance):
    def __init__(self, name, attachment, timeline, workdir, platform: UnikernelPlatform, console: ConsoleFile,
                 parser: UnikernelConsole, vf: sriov.VirtualFunction | None = None):
        super().__init__(name, attachment, timeline, workdir)
        self.platform = platform
        self.console = console
        self.parser = parser
        self.vf = vf
        self.console_marks: dict[str, float] = {}  # label -> ms after requested (host clock)
        self._stopped = False
        self._finished_reason: str | None = None

    def poll_console(self) -> None:
        tl = self.timeline
        if not tl.has("vmm_started"):
            pid = qemu_pid(self.name)
            if pid is not None:
                tl.mark("vmm_started", process_started_monotonic(pid) or now())
        events = self.console.poll()
        if not events:
            return
        t = now()
        tl.mark("first_console", t)
        for ev in events:
            for ob in self.parser.feed_line(ev.text):
                if ob.label not in self.console_marks and "requested" in tl.marks:
                    self.console_marks[ob.label] = round((t - tl.marks["requested"]) * 1000.0, 3)
                for phase in ob.phases:
                    tl.mark(phase, t)
        tl.guest.update(self.parser.guest)
        self.provenance.update({f"console_{k}_ms": v for k, v in self.console_marks.items()})
        self.provenance.update(self.parser.facts)
        if self.parser.finished and not self._stopped:
            # QEMU keeps running after rumprun's `halted` / an OSv abort: stop the guest ourselves.
            self._finished_reason = self.parser.finish_reason
            self.stop()

    def alive(self) -> bool:
        if self._stopped:
            return False
        return domain_running(self.platform.conn, self.name)

    def exit_reason(self) -> str:
        self.console.poll()
        tail = self.console.parser.tail_line()
        if self._finished_reason or self.parser.finish_reason:
            return f"{self._finished_reason or self.parser.finish_reason}; console: {tail}"
        return f"domain {self.name} is gone; console: {tail}"

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
            for f in self.workdir.glob("*.qcow2"):
                f.unlink(missing_ok=True)


class UnikernelPlatform(Platform):
    """Subclasses say how to boot: boot_spec() returns the domain and the console parser."""

    Options = UnikernelOptions
    attachment = "vm"
    tools = ("virsh", "qemu-system-x86_64", "qemu-img", "qemu-io")
    image_kind: ClassVar[str]

    def __init__(self, name, options, host, ledger, workdir):
        super().__init__(name, options, host, ledger, workdir)
        self._conn: Connection | None = None
        self.accel: AccelChoice | None = None
        self._vfs: sriov.VfAllocator | None = None

    # --- run-level -----------------------------------------------------------------------
    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = Connection(self.options.uri, timeout=self.options.connect_timeout)
        return self._conn

    def prepare(self) -> None:
        if self.accel is not None:
            return
        o: UnikernelOptions = self.options  # type: ignore[assignment]
        mem_mib, cpus = self.conn.host_info()
        if o.memory_mb > mem_mib:
            raise ConfigError(f"platform {self.name}: memory_mb {o.memory_mb} exceeds the host's {mem_mib} MiB")
        for pin in (o.vcpu_pins or []) + (o.cpus or []):
            if not 0 <= pin < cpus:
                raise ConfigError(f"platform {self.name}: CPU {pin} does not exist (host has CPUs 0-{cpus - 1})")
        # The linux-vm probe decides KVM or TCG once per run and URI; its verdict is shared.
        self.accel = choose_accel(self.conn, self.ledger, ImageCache(), o.accel, timeout=o.probe_timeout,
                                  machine=o.machine)

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
        o: UnikernelOptions = self.options  # type: ignore[assignment]
        facts = {"nic": o.nic, "machine": o.machine, "vcpus": o.vcpus, "memory_mb": o.memory_mb,
                 "vcpu_pins": o.vcpu_pins, "libvirt_uri": o.uri}
        if self.accel is not None:
            facts.update(self.accel.provenance())
        return facts

    # --- images ----------------------------------------------------------------------------
    def image_name(self, workload: Workload) -> str:
        return self.options.image or workload.name

    def image(self, workload: Workload, cache: ImageCache) -> Image:
        return find_imported(self.image_kind, self.image_name(workload), cache)

    # --- launches --------------------------------------------------------------------------
    def app_cmdline(self, workload: Workload) -> str:
        """The application's command line: the `cmdline` option, else the platform's default for the workload."""
        o: UnikernelOptions = self.options  # type: ignore[assignment]
        if o.cmdline:
            return " ".join(o.cmdline.split())
        return self.default_cmdline(workload)

    def default_cmdline(self, workload: Workload) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def boot_spec(self, image: Image, workload: Workload, attachment, base: DomainSpec,
                  workdir: Path) -> tuple[UnikernelSpec, UnikernelConsole, dict]:
        """(domain, console parser, per-instance provenance) for this launch."""
        raise NotImplementedError  # pragma: no cover

    def launch(self, image: Image, workload: Workload, attachment, timeline: Timeline) -> Instance:
        o: UnikernelOptions = self.options  # type: ignore[assignment]
        self.prepare()
        octet = str(attachment.address).rsplit(".", 1)[1]
        name = f"tb-{self.ledger.run_id}-{self.kind}-{workload.name}-{octet}"
        workdir = self.workdir / name
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        console_path = workdir / "console.log"
        vf = None
        try:
            if o.nic == "sriov":
                vf = self.vf_allocator().allocate(attachment.mac, owner=name)
                nic = SriovNic(vf.pci_address, attachment.mac)
            else:
                if not attachment.bridge:
                    raise LaunchError(f"{name}: attachment has no host bridge; use LabNet.attach_vm()")
                nic = BridgeNic(attachment.bridge, attachment.mac, tap=f"tb{self.ledger.run_id}t{octet}"[:15])
            base = DomainSpec(
                name=name, kernel="", initrd="", cmdline="", console_log=str(console_path),
                domain_type=self.accel.domain_type, machine=o.machine, vcpus=o.vcpus, memory_mib=o.memory_mb,
                vcpu_pins=o.vcpu_pins, emulator_pins=o.cpus, nics=[nic],
                metadata={"run": self.ledger.run_id, "workload": workload.name, "platform": self.name},
            )
            spec, parser, prov = self.boot_spec(image, workload, attachment, base, workdir)
            xml = unikernel_xml(spec)
            (workdir / "domain.xml").write_text(xml)
            console = ConsoleFile(console_path)
            timeline.mark("requested")
            create_transient(self.conn, self.ledger, name, xml)
        except BaseException:
            if vf is not None:
                self.vf_allocator().release(vf)
            for f in workdir.glob("*.qcow2"):
                f.unlink(missing_ok=True)
            raise
        timeline.mark("process_started")
        inst = UnikernelInstance(name, attachment, timeline, workdir, self, console, parser, vf)
        inst.provenance = {"domain": name, "boot": spec.boot, **prov}
        inst.poll_console()
        return inst


def disk_for(image: Image, role: str, workdir: Path) -> Disk:
    """A per-launch overlay of the image's `role` file."""
    from ..images.imported import layout

    fmt = layout(image).get("formats", {}).get(role, "raw")
    path = overlay(image.file(role), fmt, workdir / f"{role}.qcow2")
    return Disk(str(path), "qcow2")


# --- doctor --------------------------------------------------------------------------------
@check
def unikernel_images(host) -> list[Check]:
    """Whether osv / rumprun cells can run: an imported image, and the disk tools launches need."""
    if host.name != "localhost":
        return []
    out: list[Check] = []
    missing = [t for t in ("qemu-img", "qemu-io") if host.which(t) is None]
    if missing:
        out.append(Check("unikernel disk tools", FAIL, f"{', '.join(missing)} missing: osv and rumprun cannot "
                         "launch (per-launch disk overlays)", "apt-get install qemu-utils"))
    for kind in KINDS:
        try:
            images = imported_images(kind)
        except Exception as exc:
            out.append(Check(f"{kind} images", FAIL, f"image cache unreadable: {exc}"))
            continue
        if not images:
            out.append(Check(f"{kind} images", WARN, f"none imported: {kind} cells are not runnable",
                             f"{import_command(kind, 'redis')} (build: images/{kind}/README.md)"))
        else:
            names = ", ".join(dict.fromkeys(f"{i.name} ({i.digest[:12]})" for i in images))
            out.append(Check(f"{kind} images", PASS, f"imported: {names}; a cell uses the image named like its "
                             f"workload unless the platform sets image:"))
    return out
