#!/usr/bin/env python3
"""microvm (QEMU run directly) beside linux-vm (the pc machine through libvirt): cold start of the
same Linux guest image (Debian cloud kernel + the redis initramfs), interleaved, on one host.

Each repetition is one testbed run of one cold start per platform, alternating which goes first,
so slow drift on a shared machine hits both alike. Prints per platform the median cold start (to
the first correct redis answer), the median of each phase (QEMU process started, first console
line, guest init, port open) and the ratio microvm / pc with a bootstrap 95% interval of the ratio
of medians. "QEMU + early kernel" is first console line minus process started: what the VMM's own
start adds before the guest can speak (QEMU's start alone is not separable from the outside).

Usage (as root): .venv/bin/python benchmarks/microvm_vs_pc.py [--runs 5] [--accel auto|tcg|kvm]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TESTBED_HOME", tempfile.mkdtemp(prefix="testbed-microvm-bench-"))

from orchestrator import paths  # noqa: E402
from orchestrator.plan import load_plan  # noqa: E402
from orchestrator.results.store import Store  # noqa: E402
from orchestrator.runner import Runner  # noqa: E402

SUITE = """\
name: microvm-vs-pc
repetitions: 1
lab: {{subnet: {subnet}}}
platforms:
  {name}: {{kind: {kind}, vcpus: 1, memory_mb: 512, accel: {accel}}}
workloads:
  redis: {{}}
benchmarks:
  boot: {{kind: startup}}
"""
PLATFORMS = {"microvm": "microvm", "pc": "linux-vm"}
PHASES = ("process_started", "first_console", "init_started", "port_open")


def one(name: str, accel: str, workdir: Path, store: Store) -> dict[str, float]:
    path = workdir / f"{name}.yaml"
    path.write_text(SUITE.format(name=name, kind=PLATFORMS[name], accel=accel, subnet="10.98.0.0/24"))
    outcome = Runner(load_plan(path), store=store).run()
    if outcome.failed_cells:
        raise SystemExit(f"{name}: {outcome.failed_cells[0]}")
    rows = {r.metric: r.value for r in store.samples(outcome.run_id) if r.status == "ok"}
    return {"startup": rows["startup_ms"], **{p: rows[f"phase_{p}_ms"] for p in PHASES if f"phase_{p}_ms" in rows}}


def ratio_ci(a: list[float], b: list[float], resamples: int = 4000) -> tuple[float, float, float]:
    rng = random.Random(1)
    point = statistics.median(a) / statistics.median(b)
    rs = sorted(statistics.median(rng.choices(a, k=len(a))) / statistics.median(rng.choices(b, k=len(b)))
                for _ in range(resamples))
    return point, rs[int(0.025 * resamples)], rs[int(0.975 * resamples) - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--accel", default="auto", choices=("auto", "tcg", "kvm"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="microvm-bench-", dir=paths.home()) as tmp:  # inside TESTBED_HOME
        workdir = Path(tmp)
        store = Store(workdir / "r.sqlite")
        results: dict[str, list[dict[str, float]]] = {n: [] for n in PLATFORMS}
        for i in range(args.runs):
            order = list(PLATFORMS) if i % 2 == 0 else list(reversed(PLATFORMS))
            for name in order:
                results[name].append(one(name, args.accel, workdir, store))
            print(f"run {i + 1}/{args.runs}: " + ", ".join(f"{n} {results[n][-1]['startup']:.0f} ms" for n in order),
                  flush=True)
        accel = next(iter(store.samples(store.latest_run() or ""))).provenance.get("accel", "?")
    print(f"\ncold start to the first correct redis answer, accel {accel}, n={args.runs} each, interleaved")
    print(f"{'':24}{'microvm':>12}{'pc (libvirt)':>14}{'ratio':>8}")
    for key in ("startup", *PHASES):
        a = [r[key] for r in results["microvm"] if key in r]
        b = [r[key] for r in results["pc"] if key in r]
        if a and b:
            print(f"{key + ' ms':24}{statistics.median(a):12.1f}{statistics.median(b):14.1f}"
                  f"{statistics.median(a) / statistics.median(b):8.2f}")
    own_a = [r["first_console"] - r["process_started"] for r in results["microvm"]]
    own_b = [r["first_console"] - r["process_started"] for r in results["pc"]]
    print(f"{'QEMU + early kernel ms':24}{statistics.median(own_a):12.1f}{statistics.median(own_b):14.1f}"
          f"{statistics.median(own_a) / statistics.median(own_b):8.2f}")
    point, lo, hi = ratio_ci([r["startup"] for r in results["microvm"]], [r["startup"] for r in results["pc"]])
    print(f"\nmicrovm / pc cold start: {point:.2f} (bootstrap 95% CI of the ratio of medians {lo:.2f}-{hi:.2f})")


if __name__ == "__main__":
    main()
