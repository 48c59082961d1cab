#!/usr/bin/env python3
"""What the VF drivers cost a Linux guest that has no VF: initramfs size and module-load time.

Builds two minimal initramfs images from the cached Debian cloud kernel, one with GUEST_MODULES
(virtio) and one with sriov_guest_modules() (virtio + the VF drivers that kernel has), boots each
alternately under QEMU (TCG; pinned to one CPU) with no NIC at all, and prints the guest's own
uptime before and after `modprobe` of the list, the median of each and their ratio. This is why
only sriov cells carry the VF drivers.

Usage (as root):  TESTBED_CACHE=/var/cache/testbed-tests .venv/bin/python benchmarks/sriov_guest_modules.py [--boots 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.images.cache import ImageCache  # noqa: E402
from orchestrator.images.linux import (GUEST_MODULES, _install_busybox, kernel_image, kernel_release,  # noqa: E402
                                       module_closure, write_cpio)
from orchestrator.net.sriov.guest import sriov_guest_modules  # noqa: E402

INIT = """#!/bin/busybox sh
export PATH=/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
read a b < /proc/uptime; echo "BENCH before=$a"
for m in {modules}; do modprobe "$m" || echo "BENCH failed=$m"; done
read a b < /proc/uptime; echo "BENCH after=$a"
poweroff -f
"""
BOOT_TIMEOUT = 180


def build(dest: Path, kernel, modules: tuple[str, ...]) -> Path:
    root = dest / "root"
    release = kernel_release(kernel)
    src = kernel.file("modules") / release
    _install_busybox(root)
    for d in ("lib", "bin", "sbin"):  # merged /usr, as the guest rootfs has it (depmod -b wants lib/modules)
        (root / d).symlink_to(f"usr/{d}")
    for rel in module_closure(src, modules):
        (root / "usr/lib/modules" / release / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, root / "usr/lib/modules" / release / rel)
    for f in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (src / f).exists():
            shutil.copy2(src / f, root / "usr/lib/modules" / release / f)
    subprocess.run(["depmod", "-b", str(root), release], check=True, timeout=120)
    for d in ("proc", "sys", "dev"):
        (root / d).mkdir(exist_ok=True)
    (root / "init").write_text(INIT.format(modules=" ".join(modules)))
    os.chmod(root / "init", 0o755)
    write_cpio(dest / "initrd.cpio", root)
    shutil.rmtree(root)
    return dest / "initrd.cpio"


def boot(kernel_path: Path, initrd: Path) -> float:
    argv = ["taskset", "-c", "1", "qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-m", "512",
            "-nographic", "-no-reboot", "-nic", "none", "-kernel", str(kernel_path), "-initrd", str(initrd),
            "-append", "console=ttyS0 panic=-1 quiet"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=BOOT_TIMEOUT, check=False).stdout
    before = re.search(r"BENCH before=([\d.]+)", out)
    after = re.search(r"BENCH after=([\d.]+)", out)
    if not before or not after or "BENCH failed" in out:
        raise SystemExit(f"guest did not report module timings:\n{out[-2000:]}")
    return float(after.group(1)) - float(before.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boots", type=int, default=3)
    args = ap.parse_args()
    kernel = kernel_image(ImageCache())
    variants = {"virtio": GUEST_MODULES, "virtio+vf": sriov_guest_modules(kernel)}
    with tempfile.TemporaryDirectory(prefix="tbsr-bench-") as tmp:
        images = {}
        for name, mods in variants.items():
            (Path(tmp) / name).mkdir()
            images[name] = build(Path(tmp) / name, kernel, mods)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.boots):
            for name in variants:  # alternate, so drift hits both alike
                times[name].append(boot(kernel.file("kernel"), images[name]))
        print(f"kernel {kernel_release(kernel)}, QEMU TCG pinned to CPU 1, {args.boots} boots each, alternating")
        for name, mods in variants.items():
            size = images[name].stat().st_size / 1024 / 1024
            print(f"{name:10s} modules={','.join(mods)}  initramfs {size:.1f} MiB  modprobe s: "
                  f"{', '.join(f'{t:.3f}' for t in times[name])}  median {statistics.median(times[name]):.3f}")
        base, vf = (statistics.median(times[n]) for n in variants)
        size_ratio = images["virtio+vf"].stat().st_size / images["virtio"].stat().st_size
        print(f"ratio virtio+vf / virtio: module load {vf / base:.2f}x, initramfs {size_ratio:.2f}x")


if __name__ == "__main__":
    main()
