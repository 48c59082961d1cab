#!/usr/bin/env python3
"""What verifying a cached image costs before each use (orchestrator/images/cache.py).

For the redis rootfs (runc/gVisor) and the redis Linux guest (kernel + initramfs), and the guest
kernel entry the guest build draws on, prints the median of N timings of:
  * manifest   the hot path: one lstat per file compared with the manifest (what every lookup pays);
  * full warm  the full sha256 of the entry with its files in the page cache (paid when the
               manifest differs, e.g. after a copy, or once for entries made before manifests);
  * full cold  the same after evicting the entry's own files from the page cache
               (posix_fadvise DONTNEED on each file; nothing else on the machine is dropped);
  * ensure     ImageCache.ensure on a hit, the whole lookup (lock + image.json + manifest check).
and the ratio full warm / manifest.

Usage (as root, after ./setup.sh; builds the images into TESTBED_CACHE when missing):
    .venv/bin/python benchmarks/image_verify.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.images.cache import NOT_CONTENT, ImageCache, tree_digest, verify_entry  # noqa: E402
from orchestrator.images.linux import guest_image, kernel_image  # noqa: E402
from orchestrator.images.oci import rootfs_image  # noqa: E402
from orchestrator.workloads.redis import Redis  # noqa: E402


def evict(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def median_ms(fn, runs: int, before=None) -> float:
    times = []
    for _ in range(runs):
        if before:
            before()
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    cache = ImageCache()
    workload = Redis()
    entries = {
        "rootfs redis": (rootfs_image(workload, cache), lambda: rootfs_image(workload, cache)),
        "linux-guest redis": (guest_image(workload, cache), lambda: guest_image(workload, cache)),
        "linux-kernel": (kernel_image(cache), lambda: kernel_image(cache)),
    }
    print(f"{'image':<20} {'files':>6} {'MB':>7} {'manifest ms':>12} {'full warm ms':>13} {'full cold ms':>13} "
          f"{'ensure ms':>10} {'full/manifest':>14}")
    for label, (image, lookup) in entries.items():
        files = [os.path.join(d, f) for d, _, fs in os.walk(image.path) for f in fs]
        mb = sum(os.lstat(f).st_size for f in files) / 1e6
        verify_entry(image.path, image.digest)  # manifest present and true
        # B023 below: each lambda is called at once, inside this iteration
        manifest = median_ms(lambda: verify_entry(image.path, image.digest), args.runs)  # noqa: B023
        warm = median_ms(lambda: tree_digest(image.path, NOT_CONTENT), args.runs)  # noqa: B023
        cold = median_ms(lambda: tree_digest(image.path, NOT_CONTENT), args.runs,  # noqa: B023
                         before=lambda: evict(image.path))  # noqa: B023
        ensure = median_ms(lookup, args.runs)  # guest_image also looks up the kernel entry: two checks
        print(f"{label:<20} {len(files):>6} {mb:>7.1f} {manifest:>12.2f} {warm:>13.1f} {cold:>13.1f} {ensure:>10.2f} "
              f"{warm / manifest:>13.0f}x")


if __name__ == "__main__":
    main()
