"""`testbed doctor` checks for the linux-vm platform: libvirtd, /dev/kvm, the accelerator probe."""

from __future__ import annotations

import os
import time
from typing import Iterable

from ..checks import FAIL, PASS, WARN, Check, DoctorCheck
from ..errors import TestbedError
from ..hosts.base import Host
from ..images.cache import ImageCache
from ..ledger import Ledger
from .accel import choose_accel
from .connection import DEFAULT_URI, Connection, daemon_state, kvm_device_state, one_line, pid1_is_systemd


class LibvirtCheck(DoctorCheck, kind="libvirt"):
    order = 40
    local_only = True

    def run(self, host: Host) -> Iterable[Check]:
        return libvirt_checks(host)


def libvirt_checks(host: Host) -> Iterable[Check]:
    before = daemon_state()
    try:
        conn = Connection(DEFAULT_URI, timeout=20)
    except (TestbedError, OSError) as exc:
        yield Check("libvirtd", FAIL, f"{DEFAULT_URI} unreachable: {one_line(exc)}",
                    "systemctl start libvirtd" if pid1_is_systemd() else
                    "mkdir -p /var/log/libvirt /var/run/libvirt; virtlogd -d; libvirtd -d")
        return
    try:
        after = daemon_state()
        v = conn.versions()
        how = "running" if before["libvirtd"] else "was not running; testbed started it"
        yield Check("libvirtd", PASS, f"{DEFAULT_URI} reachable ({how}, pid {after['libvirtd']}; "
                    f"virtlogd pid {after['virtlogd']}); libvirt {v['libvirt']}, QEMU {v['qemu']}")
        problem = kvm_device_state()
        if os.path.exists("/dev/kvm"):
            if problem:
                yield Check("/dev/kvm access", WARN, problem + " (libvirtd re-probes QEMU on every start)",
                            "chgrp kvm /dev/kvm && chmod 0660 /dev/kvm (testbed does this when it connects)")
            else:
                yield Check("/dev/kvm access", PASS, "group kvm, 0660")
        ledger = Ledger(f"doctor-{os.getpid()}")
        try:
            start = time.monotonic()
            choice = choose_accel(conn, ledger, ImageCache(), "auto", confirm_tcg=True)
            seconds = time.monotonic() - start
        finally:
            ledger.close()
        probes = "; ".join(f"{p.domain_type}: {'ok' if p.ok else 'failed'} in {p.seconds:.1f} s" for p in choice.probes)
        how = f"cached verdict of {time.strftime('%Y-%m-%d %H:%M', time.localtime(choice.probed_at))} (--reprobe " \
              f"to probe again)" if choice.cached else f"probe {seconds:.1f} s"
        if choice.accel == "kvm":
            yield Check("accelerator", PASS, f"KVM usable ({choice.reason}); {how}")
        else:
            present = "present but unusable" if os.path.exists("/dev/kvm") else "absent"
            yield Check("accelerator", WARN,
                        f"KVM {present} ({choice.reason}); VMs will use TCG (emulation; slow, numbers are not "
                        f"comparable with KVM hosts). Probes: {probes}; {how}",
                        "on a lab host enable VT-x/AMD-V (and nested virt for a VM host); accel: tcg to skip the probe")
    finally:
        conn.close()
