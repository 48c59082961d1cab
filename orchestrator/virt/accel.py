"""Which accelerator guests get: boot a tiny probe guest under KVM and watch for userspace.

/dev/kvm existing is not enough: under nested virtualisation without usable SVM/VMX the
guest hangs in firmware or early boot. So before the first VM of a run testbed boots
images/linux.probe_image (busybox /init that prints `TESTBED probe-userspace`) as domain
type `kvm` with a short timeout; no marker means TCG (domain type `qemu`), and the reason,
with the console evidence, goes into every VM sample's provenance and `testbed doctor`.

The verdict is cached on disk per (boot id, kernel, QEMU and libvirt versions, URI, machine):
nothing that decides it can change without one of those changing, so every run and doctor after
the first skip the probe (15 s where KVM hangs). Samples record `accel_cached`; `--reprobe`
(run, doctor) forces a new probe.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import paths
from ..errors import ConfigError, LaunchError, TestbedError
from ..images.cache import ImageCache
from ..images.linux import probe_image
from ..ledger import Ledger
from .domain import DomainSpec, domain_xml
from .lifecycle import create_transient, destroy, domain_running
from .site import GuestSite

PROBE_TIMEOUT = 15.0
TCG_PROBE_TIMEOUT = 60.0
PROBE_MARKER = "probe-userspace"


@dataclass
class ProbeResult:
    domain_type: str  # kvm | qemu
    ok: bool
    seconds: float
    console_bytes: int
    evidence: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class AccelChoice:
    accel: str  # kvm | tcg
    reason: str
    probes: list[ProbeResult]
    cached: bool = False  # the verdict came from the probe cache (see the module docstring)
    probed_at: float = field(default_factory=time.time)

    @property
    def domain_type(self) -> str:
        return "kvm" if self.accel == "kvm" else "qemu"

    def provenance(self) -> dict:
        return {"accel": self.accel, "accel_reason": self.reason, "accel_cached": self.cached}

    def as_dict(self) -> dict:
        return {"accel": self.accel, "reason": self.reason, "probes": [p.as_dict() for p in self.probes],
                "probed_at": self.probed_at}

    @classmethod
    def from_dict(cls, d: dict) -> "AccelChoice":
        return cls(d["accel"], d["reason"], [ProbeResult(**p) for p in d.get("probes", [])], True,
                   d.get("probed_at", 0.0))


def boot_probe(site: GuestSite, ledger: Ledger, cache: ImageCache, domain_type: str, timeout: float,
               workdir: Path | None = None, machine: str = "pc") -> ProbeResult:
    """Boot the probe guest on the site's host (a lab host: its own libvirtd, KVM and console)."""
    conn = site.conn
    image = probe_image(cache)
    workdir = workdir or paths.runs_dir() / "accel-probe"
    workdir.mkdir(parents=True, exist_ok=True)
    site.make_dir(workdir)
    name = f"tb-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    console_path = site.path(workdir / f"{name}.console")
    site.remove(console_path)
    spec = DomainSpec(name=name, kernel=site.image_file(image, "kernel"), initrd=site.image_file(image, "initrd"),
                      cmdline="console=ttyS0 panic=-1", console_log=console_path, domain_type=domain_type,
                      machine=machine, vcpus=1, memory_mib=256, metadata={"role": "accel-probe"})
    console = site.console(console_path)
    start = time.monotonic()
    try:
        create_transient(conn, ledger, name, domain_xml(spec))
    except LaunchError as exc:
        # QEMU refusing to start under KVM (e.g. nested virt without the MSRs it needs) is evidence too.
        seconds = time.monotonic() - start
        return ProbeResult(domain_type, False, round(seconds, 3), 0,
                           f"QEMU exited at start under {domain_type}: {qemu_errors(str(exc))}")
    ok = False
    try:
        deadline = start + timeout
        while time.monotonic() < deadline:
            console.poll()
            if PROBE_MARKER in console.parser.markers:
                ok = True
                break
            if not domain_running(conn, name):
                console.poll()
                ok = PROBE_MARKER in console.parser.markers
                break
            time.sleep(0.1)
        seconds = time.monotonic() - start
    finally:
        destroy(conn, ledger, name)
        console.poll()
        console.close()
        site.remove(console_path)
    p = console.parser
    if ok:
        evidence = f"userspace marker after {seconds:.1f} s under {domain_type}"
    else:
        evidence = (f"no userspace marker within {timeout:g} s under {domain_type}; console had {p.nbytes} bytes"
                    + (f", last: {p.tail[-1][:80]!r}" if p.tail else ""))
    return ProbeResult(domain_type, ok, round(seconds, 3), p.nbytes, evidence)


def qemu_errors(message: str) -> str:
    """The QEMU lines of a libvirt start error, without timestamps: 'failed to set MSR ...; Assertion ...'."""
    parts = re.findall(r"qemu-system-\w+: (?:error: )?(.+?)(?=\s*(?:\d{4}-\d\d-\d\dT\S+\s+)?qemu-system-\w+:|$)",
                       message)
    text = "; ".join(p.strip() for p in parts) or message
    return text[:200]


_CHOICES: dict[str, AccelChoice] = {}
_REPROBE = False


def set_reprobe(value: bool = True) -> None:
    """`--reprobe`: probe again instead of trusting the cached verdict (this process)."""
    global _REPROBE  # noqa: PLW0603 -- a process-wide switch set once by the CLI
    _REPROBE = value
    _CHOICES.clear()


def cache_path() -> Path:
    return paths.cache_dir() / "accel-probes.json"


def probe_cache_key(site: GuestSite, requested: str, machine: str) -> str:
    """What the verdict depends on: the host's boot and kernel, QEMU and libvirt, the URI and machine."""
    conn = site.conn
    try:
        if site.host.is_local:
            boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
            kernel = os.uname().release
        else:  # a lab host: its own boot and kernel (one command over the open connection)
            out = site.host.run(["sh", "-c", "cat /proc/sys/kernel/random/boot_id; uname -r"], timeout=20).stdout.split()
            boot, kernel = (out + ["", ""])[:2]
    except (OSError, TestbedError):
        boot = kernel = ""
    versions = conn.versions()
    return "|".join([conn.where, requested, machine, boot, kernel,
                     versions.get("qemu", "?"), versions.get("libvirt", "?")])


def _cached(key: str, need_tcg: bool) -> AccelChoice | None:
    try:
        entry = json.loads(cache_path().read_text()).get(key)
    except (OSError, ValueError):
        return None
    if not entry:
        return None
    choice = AccelChoice.from_dict(entry)
    if need_tcg and choice.accel == "tcg" and not any(p.domain_type == "qemu" for p in choice.probes):
        return None  # doctor wants TCG confirmed too; this entry never booted a TCG guest
    return choice


def _remember(key: str, choice: AccelChoice) -> None:
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError):
            entries = {}
        entries[key] = choice.as_dict()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        os.replace(tmp, path)


def choose_accel(site: GuestSite, ledger: Ledger, cache: ImageCache, requested: str = "auto", *,
                 timeout: float = PROBE_TIMEOUT, confirm_tcg: bool = False, machine: str = "pc") -> AccelChoice:
    """auto: KVM if the probe reaches userspace under KVM, else TCG. kvm: the probe must pass.
    tcg: no probe. The probe runs on the site's host (a lab host decides for itself); the verdict is
    remembered per host and URI for the process and cached on disk (cache_path())."""
    if requested not in ("auto", "kvm", "tcg"):
        raise ConfigError(f"accel: {requested!r} is not one of auto, kvm, tcg")
    conn = site.conn
    key = f"{conn.where}|{requested}"
    if key in _CHOICES and not confirm_tcg:
        return _CHOICES[key]
    if requested == "tcg":
        choice = AccelChoice("tcg", "accel: tcg requested", [])
        _CHOICES[key] = choice
        return choice
    disk_key = probe_cache_key(site, requested, machine)
    hit = None if _REPROBE else _cached(disk_key, confirm_tcg)
    if hit is not None:
        if requested == "kvm" and hit.accel != "kvm":
            raise LaunchError(f"accel: kvm requested but KVM is unusable on {conn.where}: {hit.reason} (cached "
                              f"verdict; --reprobe to probe again)")
        _CHOICES[key] = hit
        return hit
    else:
        probes: list[ProbeResult] = []
        if not site.has_kvm_device():
            reason = f"/dev/kvm does not exist on {site.host.name}"
        else:
            kvm = boot_probe(site, ledger, cache, "kvm", timeout, machine=machine)
            probes.append(kvm)
            reason = kvm.evidence
            if kvm.ok:
                choice = AccelChoice("kvm", reason, probes)
                _CHOICES[key] = choice
                _remember(disk_key, choice)
                return choice
        if requested == "kvm":
            _remember(disk_key, AccelChoice("tcg", reason, probes))
            raise LaunchError(f"accel: kvm requested but KVM is unusable on {conn.where}: {reason}")
        if confirm_tcg:
            tcg = boot_probe(site, ledger, cache, "qemu", TCG_PROBE_TIMEOUT, machine=machine)
            probes.append(tcg)
            if not tcg.ok:
                raise LaunchError(f"neither KVM nor TCG guests reach userspace on {conn.where}: {tcg.evidence}")
        choice = AccelChoice("tcg", reason, probes)
    _CHOICES[key] = choice
    _remember(disk_key, choice)
    return choice
