#!/usr/bin/env python3
"""linux-vm cold start through libvirt beside a bare qemu-system-x86_64 run, timed independently.

Prints:
  * image build time: kernel + redis guest image into an empty cache (cold, includes
    `apt-get download` of the kernel) and again (cached);
  * the accelerator probe's time and verdict;
  * libvirt path: testbed's LinuxVm.launch of the redis guest until the first correct redis
    answer from the lab client namespace (Timeline startup_ms), N repetitions, with phases;
  * bare QEMU: `qemu-system-x86_64` with the same kernel, the same per-launch initramfs and a
    virtio-net NIC on a tap in the same lab bridge, timed from just before Popen until the same
    readiness point (the same redis probe from the same client namespace);
  * the ratio libvirt / bare (medians).

Usage (as root): .venv/bin/python benchmarks/vm_cold_start.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_OWN_HOME = "TESTBED_HOME" not in os.environ
os.environ.setdefault("TESTBED_HOME", tempfile.mkdtemp(prefix="testbed-vmbench-"))

from orchestrator.hosts.local import LocalHost  # noqa: E402
from orchestrator.images import linux  # noqa: E402
from orchestrator.images.cache import ImageCache  # noqa: E402
from orchestrator.ledger import Ledger  # noqa: E402
from orchestrator.net import netns as nn  # noqa: E402
from orchestrator.net.labnet import LabNet  # noqa: E402
from orchestrator.net.netns import NetnsExecutor  # noqa: E402
from orchestrator.timeline import Timeline  # noqa: E402
from orchestrator.platforms.linux_vm import LinuxVm, LinuxVmOptions  # noqa: E402
from orchestrator.readiness import in_netns, wait_ready  # noqa: E402
from orchestrator.virt import accel as accel_mod  # noqa: E402
from orchestrator.virt.connection import Connection  # noqa: E402
from orchestrator.virt.domain import kernel_cmdline  # noqa: E402
from orchestrator.workloads.redis import Redis  # noqa: E402

READY_TIMEOUT = 120.0


def build_times() -> tuple[float, float, float]:
    """(cold kernel+guest, cold guest with kernel cached, cached) seconds, in a throwaway cache."""
    with tempfile.TemporaryDirectory(prefix="testbed-vmbench-cache-") as tmp:
        cache = ImageCache(Path(tmp))
        t = time.monotonic()
        linux.guest_image("redis", Redis().image_recipe(), cache)
        cold = time.monotonic() - t
        shutil.rmtree(next(Path(tmp).glob("linux-guest-*")))
        t = time.monotonic()
        img = linux.guest_image("redis", Redis().image_recipe(), cache)
        guest_only = time.monotonic() - t
        t = time.monotonic()
        again = linux.guest_image("redis", Redis().image_recipe(), cache)
        cached = time.monotonic() - t
        assert not img.cache_hit and again.cache_hit
        return cold, guest_only, cached


def probe_time(ledger: Ledger) -> tuple[float, str, str]:
    conn = Connection()
    try:
        accel_mod._CHOICES.clear()
        linux.probe_image(ImageCache())  # built (cached) before the clock starts
        t = time.monotonic()
        choice = accel_mod.choose_accel(conn, ledger, ImageCache(), "auto")
        return time.monotonic() - t, choice.accel, choice.reason
    finally:
        conn.close()


def libvirt_runs(n: int, labnet: LabNet, ledger: Ledger, client: NetnsExecutor, workdir: Path) -> list[dict]:
    wl = Redis()
    platform = LinuxVm("vm", LinuxVmOptions(), LocalHost(), ledger, workdir / "libvirt")
    out = []
    try:
        platform.prepare()
        image = platform.image(wl, ImageCache())
        for _ in range(n):
            att = labnet.bridge_port()
            inst = platform.launch(image, wl, att, Timeline())
            try:
                wait_ready(inst, wl, in_netns(client), READY_TIMEOUT)
                out.append({"startup_ms": inst.timeline.startup_ms, **inst.timeline.since_requested_ms(),
                            **{f"guest.{k}": v for k, v in inst.timeline.guest.items()}})
            finally:
                inst.stop()
                labnet.release(att)
    finally:
        platform.close()
    return out


def bare_runs(n: int, labnet: LabNet, ledger: Ledger, client: NetnsExecutor, workdir: Path, accel: str) -> list[float]:
    wl = Redis()
    image = linux.guest_image(wl.kind, wl.image_recipe(), ImageCache())
    labnet._ensure_host_bridge()
    results = []
    for i in range(n):
        att = labnet.bridge_port()
        d = workdir / f"bare{i}"
        (d / "config").mkdir(parents=True, exist_ok=True)
        wl.write_config(d / "config", config_path=linux.CONFIG_PATH)
        initrd = linux.launch_initrd(image.file("initrd"), d / "initrd.img", d / "config",
                                     wl.guest_argv(linux.CONFIG_PATH))
        tap = f"{labnet.prefix}b{i}"
        ledger.acquire("link", tap)
        nn.ip("tuntap", "add", "dev", tap, "mode", "tap")
        nn.set_sysctl(f"net.ipv6.conf.{tap}.disable_ipv6", "1")
        nn.ip("link", "set", tap, "master", labnet.host_bridge, "up")
        argv = ["qemu-system-x86_64", "-machine", f"pc,accel={accel}", "-m", "512", "-smp", "1",
                "-nodefaults", "-nographic", "-no-user-config", "-no-reboot",
                "-serial", f"file:{d / 'console.log'}", "-kernel", str(image.file("kernel")), "-initrd", str(initrd),
                "-append", kernel_cmdline(att.address, att.prefixlen, att.gateway, att.mac),
                "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=n0,mac={att.mac}"]
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(d / "qemu.log", "w"), start_new_session=True)
        try:
            deadline = t0 + READY_TIMEOUT
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"bare qemu exited: {(d / 'qemu.log').read_text()[-300:]}")
                try:
                    if wl.probe(lambda: client.connect(str(att.address), wl.port, 1.0)):  # noqa: B023 -- called at once
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("bare qemu guest never answered")
                time.sleep(0.05)
            results.append((time.monotonic() - t0) * 1000.0)
        finally:
            proc.kill()
            proc.wait(timeout=30)
            nn.delete_link(tap)
            ledger.release("link", tap)
            labnet.release(att)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--subnet", default="10.78.0.0/24")
    args = ap.parse_args()

    cold, guest_only, cached = build_times()
    print(f"image build (redis guest): cold {cold:.1f} s incl. kernel download; guest only {guest_only:.1f} s; "
          f"cached {cached * 1000:.0f} ms")
    run_id = "b" + uuid.uuid4().hex[:5]
    ledger = Ledger(run_id)
    labnet = LabNet(run_id, args.subnet, ledger)
    workdir = Path(os.environ["TESTBED_HOME"]) / "runs" / run_id
    client = None
    try:
        labnet.create()
        client = NetnsExecutor(labnet.client_ns)
        seconds, accel, reason = probe_time(ledger)
        print(f"accelerator probe: {seconds:.1f} s -> {accel} ({reason})")
        qaccel = "kvm" if accel == "kvm" else "tcg"
        # Interleave so both paths see the same machine load.
        lv, bare = [], []
        for _ in range(args.runs):
            lv += libvirt_runs(1, labnet, ledger, client, workdir)
            bare += bare_runs(1, labnet, ledger, client, workdir, qaccel)
        lv_ms = [r["startup_ms"] for r in lv]
        print(f"\ncold start to first correct redis answer ({accel}, {args.runs} runs each):")
        print(f"  libvirt (testbed linux-vm): median {statistics.median(lv_ms):7.0f} ms  runs {[round(x) for x in lv_ms]}")
        print(f"  bare qemu-system-x86_64:    median {statistics.median(bare):7.0f} ms  runs {[round(x) for x in bare]}")
        print(f"  ratio libvirt / bare: {statistics.median(lv_ms) / statistics.median(bare):.2f}")
        print("\nlibvirt phases (median ms after requested):")
        keys = [k for k in lv[0] if k != "startup_ms"]
        for k in keys:
            vals = [r[k] for r in lv if r.get(k) is not None]
            if vals:
                print(f"  {k:24s} {statistics.median(vals):8.0f}")
    finally:
        if client is not None:
            client.close()
        labnet.destroy()
        ledger.close()
        if _OWN_HOME:
            shutil.rmtree(os.environ["TESTBED_HOME"], ignore_errors=True)


if __name__ == "__main__":
    main()
