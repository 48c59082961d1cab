"""What the osv and rumprun platforms share: imported images, disks, the unikernel console.

Both boot a user-imported image (images/imported.py) as a transient libvirt domain
(virt/unikernel_domain.py on top of the linux-vm builder), with a virtio NIC on the run's lab
network (or an SR-IOV VF) and the serial console in a file a watcher thread reads. The
libvirt connection, the accelerator probe (kvm -> tcg fallback), host checks and the instance's
life are libvirt_guest.py's, shared with linux-vm.

Disks are never given to QEMU as imported: each launch gets its own qcow2 overlay on the cached
file, so the cache keeps exactly the bytes its digest names (OSv's ZFS writes to its disk). The
overlays are made with qemu-img on the host the platform is placed on (a lab host: on its copy of
the imported image, in its own cache).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, ClassVar, Generic, Iterable, Sequence, TypeVar

from pydantic import Field, model_validator

from ..checks import FAIL, PASS, WARN, Check, DoctorCheck
from ..errors import ConfigError, LaunchError, MissingToolError, TestbedError
from ..images.cache import Image, ImageCache
from ..images.imported import KINDS, ImageMissingError, find_imported, import_command, imported_images
from ..tools import Tool
from ..virt.console import ConsoleFile, Event, RemoteConsole
from ..virt.domain import DomainSpec
from ..virt.site import GuestSite
from ..virt.unikernel_console import UnikernelConsole
from ..virt.unikernel_domain import Disk, UnikernelSpec, unikernel_xml
from ..workloads.base import Workload
from .base import Instance, Timeline
from .libvirt_guest import LIBVIRT_TOOLS, GuestInstance, GuestOptions, LibvirtGuestPlatform

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


def run_tool(site: GuestSite, argv: Sequence[str], timeout: float = QEMU_IMG_TIMEOUT) -> None:
    """A disk tool on the site's host; a failure is one line with its message."""
    try:
        res = site.run(argv, timeout=timeout)
    except MissingToolError:
        raise MissingToolError(f"{argv[0]} is not installed on {site.host.name}; apt-get install qemu-utils") from None
    if not res.ok:
        out = (res.stderr or res.stdout).strip()[:300]
        raise LaunchError(f"{' '.join(argv[:2])} failed on {site.host.name}: {out}")


def overlay(site: GuestSite, base: str, base_format: str, dest: Path) -> str:
    """A qcow2 file (at dest's place on the host) whose reads fall through to `base` and whose
    writes stay in it."""
    there = site.path(dest)
    site.remove(there)
    run_tool(site, ["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", base, there])
    return there


def write_into_disk(site: GuestSite, disk: str, offset: int, data: bytes, scratch: Path) -> None:
    """Write `data` at byte `offset` of a qcow2 disk's guest-visible contents (qemu-io, no mount)."""
    scratch.write_bytes(data)
    there = site.put(scratch)
    try:
        run_tool(site, ["qemu-io", "-f", "qcow2", "-c", f"write -q -s {there} {offset} {len(data)}", disk])
    finally:
        scratch.unlink(missing_ok=True)
        if not site.local:
            site.remove(there)


class UnikernelInstance(GuestInstance):
    def __init__(self, name, attachment, timeline, workdir, platform: "UnikernelPlatform",
                 console: ConsoleFile | RemoteConsole, parser: UnikernelConsole):
        super().__init__(name, attachment, timeline, workdir, platform, console)
        self.parser = parser
        self.console_marks: dict[str, float] = {}  # label -> ms after requested (host clock)

    def on_console(self, events: list[Event], t: float) -> None:
        tl = self.timeline
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
        if self.parser.finished:
            # QEMU keeps running after rumprun's `halted` / an OSv abort: the instance is over.
            self.finished(self.parser.finish_reason or "the guest finished")

    def guest_exit_reason(self, tail: str) -> str | None:
        reason = self._finished or self.parser.finish_reason
        return f"{reason}; console: {tail}" if reason else None



UO = TypeVar("UO", bound=UnikernelOptions)


class UnikernelPlatform(LibvirtGuestPlatform[UO], Generic[UO]):
    """Subclasses say how to boot: boot_spec() returns the domain and the console parser."""

    Options = UnikernelOptions
    tools = LIBVIRT_TOOLS + (Tool("qemu-img", "qemu-utils", ("qemu-img", "--version"), "unikernel disk overlays"),
                             Tool("qemu-io", "qemu-utils", (), "unikernel disk overlays"))
    image_kind: ClassVar[str]

    # --- images ----------------------------------------------------------------------------
    def image_names(self, workload: Workload) -> list[str]:
        """The import names a cell's image is looked up by: the `image` option, else the workload's
        entry name, then its kind (so `redis-tuned: {kind: redis}` finds an image imported as redis)."""
        if self.options.image:
            return [self.options.image]
        return list(dict.fromkeys([workload.name, workload.kind]))

    def image(self, workload: Workload, cache: ImageCache) -> Image:
        names = self.image_names(workload)
        for name in names[:-1]:
            try:
                return find_imported(self.image_kind, name, cache)
            except ImageMissingError:
                continue
        return find_imported(self.image_kind, names[-1], cache)

    def not_runnable(self, workload: Workload) -> str | None:
        try:
            self.image(workload, ImageCache())
        except ImageMissingError as exc:
            return str(exc)
        return super().not_runnable(workload)  # nic: sriov needs a VF this unikernel has a driver for

    # --- launches --------------------------------------------------------------------------
    def app_cmdline(self, workload: Workload) -> str:
        """The application's command line: the `cmdline` option, else the platform's default for the workload."""
        o = self.options
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
        name, octet, workdir = self.guest_dir(workload, attachment)
        overlays = [self.site.path(workdir / f"{role}.qcow2") for role in image.files]
        try:
            nic = self.nic(name, attachment, octet)
            base = self.domain_spec(name, workload, nic, workdir / "console.log", kernel="", initrd="", cmdline="")
            spec, parser, prov = self.boot_spec(image, workload, attachment, base, workdir)
            console = self.create(name, unikernel_xml(spec), workdir, timeline, attachment)
        except BaseException:
            self.site.remove(*overlays)
            raise
        timeline.mark("process_started")
        inst = UnikernelInstance(name, attachment, timeline, workdir, self, console, parser)
        inst.launch_files = [d.path for d in spec.disks]
        return self.running(inst, {"domain": name, "boot": spec.boot, **prov})

    def image_file(self, image: Image, role: str) -> str:
        """The image's `role` file on the host the platform is placed on."""
        return self.site.image_file(image, role)


def render_default_cmdline(kind: str, templates: dict[str, str], workload: Workload,
                           quote: Callable[[str], str]) -> str:
    """A platform's default application command line: the workload's template filled from its
    port and options, then its extra_args, each passed through the platform's quote()."""
    template = templates.get(workload.kind)
    if template is None:
        raise ConfigError(f"{kind}: no default command line for workload kind {workload.kind!r}; set the platform's "
                          f"cmdline option")
    return " ".join([template.format(port=workload.port, **workload.options.model_dump()),
                     *(quote(a) for a in workload.options.extra_args)])


def disk_for(site: GuestSite, image: Image, role: str, workdir: Path) -> Disk:
    """A per-launch overlay of the image's `role` file (on the site's host)."""
    from ..images.imported import layout

    fmt = layout(image).get("formats", {}).get(role, "raw")
    base = site.image_file(image, role)
    if site.local:  # qemu-img reads a relative backing file relative to the overlay
        base = str(Path(base).resolve())
    return Disk(overlay(site, base, fmt, workdir / f"{role}.qcow2"), "qcow2")


# --- doctor --------------------------------------------------------------------------------
class UnikernelImagesCheck(DoctorCheck, kind="unikernel-images"):
    """Whether osv / rumprun cells can run: an imported image, and the disk tools launches need."""

    order = 70
    local_only = True

    def run(self, host) -> Iterable[Check]:
        out: list[Check] = []
        missing = [t for t in ("qemu-img", "qemu-io") if host.which(t) is None]
        if missing:
            out.append(Check("unikernel disk tools", FAIL, f"{', '.join(missing)} missing: osv and rumprun cannot "
                             "launch (per-launch disk overlays)", "apt-get install qemu-utils"))
        for kind in KINDS:
            try:
                images = imported_images(kind)
            except (OSError, ValueError, TestbedError) as exc:
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
