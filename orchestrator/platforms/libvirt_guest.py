"""What every QEMU guest run through libvirt shares: linux-vm, osv and rumprun.

Options (accelerator, sizing, pinning, NIC), the libvirt connection, the host checks and the
accelerator decision in prepare(), the NIC and common domain fields of a launch, and the
instance's life: QEMU start from its pid, liveness from the domain state, the exit reason from
the console tail, stop() releasing the domain, the VF and the launch's own files. Subclasses add
what differs: where the image comes from, how the guest boots, what its console says.

Everything host-side goes through the platform's GuestSite (virt/site.py): on a lab host the
libvirtd is that host's (over SSH), images and launch files are copied there, the console is
followed from there and the accelerator probe runs there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar, Generic, Literal, TypeVar

from pydantic import Field, model_validator

from ..enums import NicKind
from ..errors import ConfigError, HostError, LaunchError, NotRunnableError, TestbedError
from ..images.cache import ImageCache
from ..net.labnet import Attachment, LabNetwork, random_mac
from ..net.sriov import SYSFS, VfLease, VfPool, VfSelector, guest_vf_problem, hostdev_start_error
from ..tools import TRANSFER_TOOLS, Tool
from ..virt.accel import PROBE_TIMEOUT, AccelChoice, choose_accel
from ..virt.connection import DEFAULT_URI, Connection, is_local
from ..virt.console import ConsoleFile, ConsoleWatcher, Event, RemoteConsole
from ..virt.domain import BridgeNic, DirectNic, DomainSpec, SriovNic
from ..virt.lifecycle import create_transient, destroy, domain_running
from ..virt.site import GuestSite
from ..workloads.base import Workload
from .base import Instance, Platform, PlatformOptions, Timeline

log = logging.getLogger(__name__)

# Tools of every libvirt guest platform (each adds its own).
LIBVIRT_TOOLS = (
    Tool("virsh", "libvirt-clients", ("virsh", "--version"), "libvirt guests"),
    Tool("qemu-system-x86_64", "qemu-system-x86", ("qemu-system-x86_64", "--version"), "QEMU guests"),
)
# ... and on a lab host: what carries the libvirt connection over SSH, and what copies and checks files.
LAB_HOST_TOOLS = (Tool("virt-ssh-helper", "libvirt-daemon", (), "libvirt guests on a lab host"), *TRANSFER_TOOLS)


class GuestOptions(PlatformOptions):
    memory_mb: int = Field(256, ge=32)  # default and floor differ per guest: subclasses override it
    uri: str = DEFAULT_URI
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    vcpus: int = Field(1, ge=1, le=64)
    vcpu_pins: list[int] | None = None
    nic: Literal["virtio", "sriov"] = "virtio"
    sriov_pf: str | None = None
    machine: str = "pc"
    ready_timeout: float = Field(120.0, gt=0, le=3600)
    connect_timeout: float = Field(30.0, gt=0)
    probe_timeout: float = Field(PROBE_TIMEOUT, gt=0)

    @model_validator(mode="after")
    def _sriov_needs_pf(self):
        if self.nic == "sriov" and not self.sriov_pf:
            raise ValueError("nic: sriov needs sriov_pf (the physical function's netdev name, e.g. ens1f0)")
        return self


class GuestInstance(Instance):
    """A running domain whose console a watcher thread reads from the moment it is created."""

    def __init__(self, name, attachment, timeline, workdir, platform: "LibvirtGuestPlatform",
                 console: ConsoleFile | RemoteConsole):
        super().__init__(name, attachment, timeline, workdir)
        self.platform = platform
        self.console = console
        self._stopped = False
        self._finished: str | None = None  # the console says the guest will do nothing more
        self.launch_files: list[str] = []  # per-launch copies on the host (the cache itself stays)
        self.watcher = ConsoleWatcher(console, self.on_console, tick=self._vmm_started, name=name)

    def start_watching(self) -> None:
        self.watcher.start()

    def _vmm_started(self) -> None:
        """Marks vmm_started (QEMU's own start time, from /proc) once libvirt has written its pid."""
        if not self.timeline.has("vmm_started"):
            started = self.platform.site.qemu_started(self.name)
            if started is not None:
                self.timeline.mark("vmm_started", started)

    def on_console(self, events: list[Event], t: float) -> None:
        """Stamp the phases these console lines stand for (on the watcher's thread)."""
        self.timeline.mark("first_console", t)

    def finished(self, reason: str) -> None:
        """The console says the guest is done (QEMU may still run): no longer alive; teardown stops it."""
        if self._finished is None:
            self._finished = reason

    def alive(self) -> bool:
        if self.watcher.failed:  # without a console reader no phase or finish would be seen: stop here
            self.finished(self.watcher.failed)
        if self._stopped or self._finished:
            return False
        return domain_running(self.platform.conn, self.name)

    def exit_reason(self) -> str:
        self.watcher.poll()
        tail = self.console.parser.tail_line()
        unreachable = getattr(self.console, "error", None)
        where = f" (console unavailable: {unreachable})" if unreachable else ""
        return self.guest_exit_reason(tail) or f"domain {self.name} is gone{where}; console: {tail}"

    def guest_exit_reason(self, tail: str) -> str | None:
        """Why the guest ended, if its console says so."""
        return None

    def stop(self, *, fast: bool = False) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            destroy(self.platform.conn, self.platform.ledger, self.name)  # a guest's stop is always immediate
        except (HostError, LaunchError) as exc:
            if self.platform.host.is_local:
                raise
            # The lab host stopped answering: its libvirtd destroys the domain when the connection
            # closes (AUTODESTROY); the entry stays for `testbed gc` to make sure.
            log.warning("%s: cannot destroy %s (%s); `testbed gc` reclaims it once the host answers",
                        self.platform.host.name, self.name, exc)
        finally:
            self.watcher.stop()
            self.platform.site.remove(*self.launch_files)


GO = TypeVar("GO", bound=GuestOptions)


class LibvirtGuestPlatform(Platform[GO], Generic[GO]):
    Options: ClassVar[type[PlatformOptions]] = GuestOptions
    # Option values recorded in provenance(), in this order (then libvirt_uri).
    provenance_options: ClassVar[tuple[str, ...]] = ("nic", "machine", "vcpus", "memory_mb", "vcpu_pins")

    def __init__(self, name, options, host, ledger, workdir):
        super().__init__(name, options, host, ledger, workdir)
        self._site: GuestSite | None = None
        self.accel: AccelChoice | None = None
        self._pool: VfPool | None = None
        self._facts: dict = {}  # run-level facts learnt on the way (e.g. the guest kernel)

    # --- run-level -----------------------------------------------------------------------
    @property
    def site(self) -> GuestSite:
        """The host this platform is placed on, with its libvirtd (connected on first use)."""
        if self._site is None:
            self._site = GuestSite(self.host, self.options.uri, timeout=self.options.connect_timeout,
                                   ledger=self.ledger)
        return self._site

    @property
    def conn(self) -> Connection:
        return self.site.conn

    def preflight(self) -> list[str]:
        if not is_local(self.options.uri):
            return [f"uri: {self.options.uri} names another host's libvirtd; to run guests on a lab host, place the "
                    f"server there (placement.server_host) and keep uri: {DEFAULT_URI} (testbed copies the images "
                    f"and reaches that libvirtd over SSH with the lab file's host keys)"]
        return []

    def prepare(self) -> None:
        if self.accel is not None:
            return
        o = self.options
        self._validate_against_host(o)
        # The probe decides KVM or TCG once per run and URI; every guest platform shares its verdict.
        self.accel = choose_accel(self.site, self.ledger, ImageCache(), o.accel, timeout=o.probe_timeout,
                                  machine=o.machine)

    def _validate_against_host(self, o: GuestOptions) -> None:
        mem_mib, cpus = self.conn.host_info()
        if o.memory_mb > mem_mib:
            raise ConfigError(f"platform {self.name}: memory_mb {o.memory_mb} exceeds the host's {mem_mib} MiB")
        for pin in (o.vcpu_pins or []) + (o.cpus or []):
            if not 0 <= pin < cpus:
                raise ConfigError(f"platform {self.name}: CPU {pin} does not exist (host has CPUs 0-{cpus - 1})")

    def close(self) -> None:
        if self._site is not None:
            self._site.close()
            self._site = None

    def vf_pool(self) -> VfPool:
        """The VFs of sriov_pf this platform may lease (NotRunnableError, with the reasons, where SR-IOV
        cannot be used: no IOMMU, no such PF, no VFs, a VF not isolated, no vfio-pci)."""
        if self._pool is None:
            self._pool = VfPool.from_host(SYSFS, [VfSelector(pf=str(self.options.sriov_pf))], ledger=self.ledger)
        return self._pool

    def not_runnable(self, workload: Workload) -> str | None:
        if self.options.nic != "sriov":
            return None
        if not self.host.is_local:
            return f"nic: sriov on a lab host ({self.host.name}) is not supported yet; use nic: virtio there"
        try:
            pool = self.vf_pool()
        except NotRunnableError as exc:
            return str(exc)
        if not pool.candidates:
            return f"sriov: {self.options.sriov_pf} has no VF this platform may use"
        problems = [self.vf_problem(vf) for _, vf in pool.candidates]
        return problems[0] if all(problems) else None

    def vf_problem(self, vf) -> str | None:
        """Why this platform's guest cannot drive `vf` (its NIC driver), or None."""
        return guest_vf_problem(self.kind, vf)

    @classmethod
    def lab_host_tools(cls, options=None) -> tuple[Tool, ...]:
        return LAB_HOST_TOOLS

    def versions(self) -> dict[str, str]:
        try:
            return self.conn.versions()
        except (TestbedError, OSError) as exc:
            return {"libvirt": f"unavailable ({exc})"}

    # --- the network -------------------------------------------------------------------------
    def attach(self, net: LabNetwork) -> Attachment:
        """virtio: a port on the lab's host bridge (libvirt makes the tap); sriov: a VF of the PF."""
        if self.options.nic != "sriov":
            return net.bridge_port()
        mac = random_mac()
        lease = self.vf_pool().lease(owner=f"{self.ledger.run_id}/{self.name}", mac=mac)  # the PF sets the MAC
        return net.adopt(NicKind.SRIOV, mac, device=lease, release=lambda: _released(lease), facts=lease.provenance())

    def provenance(self) -> dict:
        o = self.options
        facts = {k: getattr(o, k) for k in self.provenance_options}
        uri = o.uri if self.host.is_local else f"{self.host.name}:{o.uri}"  # a lab host's own libvirtd
        facts.update({"libvirt_uri": uri, **self._facts})
        if self.accel is not None:
            facts.update(self.accel.provenance())
        return facts

    # --- launches --------------------------------------------------------------------------
    def domain_name(self, workload: Workload, octet: str) -> str:
        return f"tb-{self.ledger.run_id}-{workload.name}-{octet}"

    def guest_dir(self, workload: Workload, attachment: Attachment) -> tuple[str, str, Path]:
        """(domain name, address octet, fresh work directory) of a launch; prepares the run first."""
        self.prepare()
        octet = str(attachment.address).rsplit(".", 1)[1]
        name = self.domain_name(workload, octet)
        workdir = self.launch_dir(name)
        self.site.make_dir(workdir, fresh=True)  # on a lab host: the same layout under its testbed_home
        return name, octet, workdir

    def nic(self, name: str, attachment: Attachment, octet: str) -> BridgeNic | SriovNic | DirectNic:
        """The guest's NIC for its attachment."""
        if attachment.nic == NicKind.SRIOV:  # libvirt (managed='yes') binds the VF to vfio-pci and back
            return SriovNic(attachment.device.pci_address, attachment.mac)
        if attachment.direct:  # a lab host's experiment interface: a macvtap libvirt makes and removes
            return DirectNic(attachment.direct, attachment.mac)
        if not attachment.bridge:
            raise LaunchError(f"{name}: attachment has no host bridge (the platform's attach() gives one)")
        return BridgeNic(attachment.bridge, attachment.mac, tap=f"tb{self.ledger.run_id}t{octet}"[:15])

    def domain_spec(self, name: str, workload: Workload, nic, console_path, **boot) -> DomainSpec:
        """The domain fields every guest sets the same way; `boot` adds kernel/initrd/cmdline and the rest."""
        o = self.options
        assert self.accel is not None, "prepare() decides the accelerator before any domain is built"
        return DomainSpec(
            name=name, console_log=self.site.path(console_path), domain_type=self.accel.domain_type, machine=o.machine,
            vcpus=o.vcpus, memory_mib=o.memory_mb, vcpu_pins=o.vcpu_pins, emulator_pins=o.cpus, nics=[nic],
            metadata={"run": self.ledger.run_id, "workload": workload.name, "platform": self.name}, **boot,
        )

    def create(self, name: str, xml: str, workdir: Path, timeline: Timeline,
               attachment: Attachment) -> ConsoleFile | RemoteConsole:
        """Define and start the transient domain; `requested` is marked just before libvirt is asked."""
        (workdir / "domain.xml").write_text(xml)
        console = self.site.console(self.site.path(workdir / "console.log"))
        console.start()  # a lab host's console is followed from before the domain exists
        try:
            create_transient(self.conn, self.ledger, name, xml, before_create=lambda: timeline.mark("requested"))
        except LaunchError as exc:
            if attachment.nic == NicKind.SRIOV:  # say what is wrong with the VF, not libvirt's paragraph
                mine = hostdev_start_error(exc, [attachment.device.pci_address])
                if mine is not None:
                    raise mine from exc
            raise
        return console

    def running(self, inst: GuestInstance, provenance: dict) -> GuestInstance:
        """The started instance, with its provenance, its console watched from now on."""
        inst.provenance = provenance
        inst.start_watching()
        return inst


def _released(lease: VfLease) -> None:
    for problem in lease.release():  # restoring MAC/VLAN/driver failed: the VF may need a look by hand
        log.warning("VF %s: %s", lease.pci_address, problem)
