"""What the osv and rumprun platforms share: imported images, disks, the unikernel console.

Both boot a user-imported image (images/imported.py) as a transient libvirt domain
(virt/unikernel_domain.py on top of the linux-vm builder), with a virtio NIC on the run's lab
network (or an SR-IOV VF) and the serial console in a file that poll_console() reads. The
libvirt connection, the accelerator probe (kvm -> tcg fallback), host checks and the instance's
life are libvirt_guest.py's, shared with linux-vm.

Disks are never given to QEMU as imported: each launch gets its own qcow2 overlay on the cached
file, so the cache keeps exactly the bytes its digest names (OSv's ZFS writes to its disk).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable, ClassVar

from pydantic import Field, model_validator

from ..errors import CommandTimeout, ConfigError, LaunchError, MissingToolError
from ..images.cache import Image, ImageCache
from ..images.imported import KINDS, find_imported, import_command, imported_images
from ..net import sriov
from ..provision.doctor import FAIL, PASS, WARN, Check, check
from ..virt.console import ConsoleFile
from ..virt.domain import DomainSpec
from ..virt.unikernel_console import UnikernelConsole
from ..virt.unikernel_domain import Disk, UnikernelSpec, unikernel_xml
from ..workloads.base import Workload
from .base import Instance, Timeline, now
from .libvirt_guest import GuestInstance, GuestOptions, LibvirtGuestPlatform

QEMU_IMG_TIMEOUT = 60.0


class UnikernelOptions(GuestOptions):
    image: str | None = None  # name given at `testbed images import`; default: the workload's name
    cmdline: str | None = None  # the application's command line; default: per workload (see the platform)
    memory_mb: int = Field(256, ge=32)

    @model_validator(mode="after")
    def _cmdline_not_blank(self):
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


class UnikernelInstance(GuestInstance):
    def __init__(self, name, attachment, timeline, workdir, platform: UnikernelPlatform, console: ConsoleFile,
                 parser: UnikernelConsole, vf: sriov.VirtualFunction | None = None):
        super().__init__(name, attachment, timeline, workdir, platform, console, vf)
        self.parser = parser
        self.console_marks: dict[str, float] = {}  # label -> ms after requested (host clock)
        self._finished_reason: str | None = None

    def poll_console(self) -> None:
        events = self.console_events()
        tl = self.timeline
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

    def guest_exit_reason(self, tail: str) -> str | None:
        if self._finished_reason or self.parser.finish_reason:
            return f"{self._finished_reason or self.parser.finish_reason}; console: {tail}"
        return None

    def remove_launch_files(self) -> None:
        for f in self.workdir.glob("*.qcow2"):
            f.unlink(missing_ok=True)


class UnikernelPlatform(LibvirtGuestPlatform):
    """Subclasses say how to boot: boot_spec() returns the domain and the console parser."""

    Options = UnikernelOptions
    tools = ("virsh", "qemu-system-x86_64", "qemu-img", "qemu-io")
    image_kind: ClassVar[str]

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

    def domain_name(self, workload: Workload, octet: str) -> str:
        return f"tb-{self.ledger.run_id}-{self.kind}-{workload.name}-{octet}"

    def launch(self, image: Image, workload: Workload, attachment, timeline: Timeline) -> Instance:
        name, octet, workdir = self.launch_dir(workload, attachment)
        vf = None
        try:
            nic, vf = self.nic(name, attachment, octet)
            base = self.domain_spec(name, workload, nic, workdir / "console.log", kernel="", initrd="", cmdline="")
            spec, parser, prov = self.boot_spec(image, workload, attachment, base, workdir)
            console = self.create(name, unikernel_xml(spec), workdir, timeline)
        except BaseException:
            if vf is not None:
                self.vf_allocator().release(vf)
            for f in workdir.glob("*.qcow2"):
                f.unlink(missing_ok=True)
            raise
        timeline.mark("process_started")
        inst = UnikernelInstance(name, attachment, timeline, workdir, self, console, parser, vf)
        return self.running(inst, {"domain": name, "boot": spec.boot, **prov})


def render_default_cmdline(kind: str, templates: dict[str, str], workload: Workload,
                           quote: Callable[[str], str]) -> str:
    """A platform's default application command line: the workload's template filled from its
    port and options, then its extra_args, each passed through the platform's quote()."""
    template = templates.get(workload.name)
    if template is None:
        raise ConfigError(f"{kind}: no default command line for workload {workload.name!r}; set the platform's "
                          f"cmdline option")
    return " ".join([template.format(port=workload.port, **workload.options.model_dump()),
                     *(quote(a) for a in workload.options.extra_args)])


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
