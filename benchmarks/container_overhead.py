#!/usr/bin/env python3
"""testbed's measured container cold start beside the bare runtime command, timed independently.

For runc and gVisor (runsc) this prints:
  * testbed: median cold start of redis through the runner (launch requested -> first correct
    redis response, over the run's lab network), N repetitions;
  * bare: hyperfine timing `runc run` / `runsc run` of the *same* cached rootfs with the server
    replaced by `redis-server --version` (create, start, exit, delete: the runtime's own cost);
  * the ratio, so testbed's own overhead plus the server's start and the readiness probe are visible.

Usage (as root, after ./setup.sh):  .venv/bin/python benchmarks/container_overhead.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.config.suite import load_suite  # noqa: E402
from orchestrator.images.cache import ImageCache  # noqa: E402
from orchestrator.images.oci import oci_config, rootfs_image, write_bundle  # noqa: E402
from orchestrator.platforms.gvisor import COMPAT_WRAPPER, runsc_needs_netns_compat  # noqa: E402
from orchestrator.results.store import Store  # noqa: E402
from orchestrator.runner import Runner  # noqa: E402
from orchestrator.workloads.redis import Redis  # noqa: E402

SUITE = """\
name: overhead
repetitions: {runs}
platforms: {{native: {{}}, runc: {{}}, gvisor: {{}}}}
workloads: {{redis: {{}}}}
benchmarks: {{boot: {{kind: startup, warmup: 1}}}}
"""


def testbed_cold_starts(tmp: Path, runs: int) -> dict[str, list[float]]:
    path = tmp / "overhead.yaml"
    path.write_text(SUITE.format(runs=runs))
    store = Store(tmp / "r.sqlite")
    outcome = Runner(load_suite(path), store=store).run()
    out: dict[str, list[float]] = {}
    for r in store.samples(outcome.run_id):
        if r.metric == "startup_ms" and r.status == "ok":
            out.setdefault(r.platform, []).append(r.value)
    return out


def hyperfine(argv: list[str], runs: int, tmp: Path, name: str) -> tuple[float, float]:
    export = tmp / f"{name}.json"
    cmd = ["hyperfine", "-N", "--warmup", "1", "--runs", str(runs), "--export-json", str(export),
           " ".join(argv)]  # hyperfine -N splits the command itself; every word here is ours, none the user's
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    result = json.loads(export.read_text())["results"][0]
    return result["mean"] * 1000, result["stddev"] * 1000


def bare_runs(tmp: Path, runs: int) -> dict[str, tuple[float, float]]:
    image = rootfs_image(Redis(), ImageCache())
    netns = "tbbench-overhead"
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True, timeout=10)
        cfg = tmp / "cfg"
        cfg.mkdir()
        spec = oci_config(rootfs=str(image.file("rootfs")), args=["/usr/bin/redis-server", "--version"],
                          hostname="bare", netns_path=f"/var/run/netns/{netns}", config_dir=cfg)
        bundle = write_bundle(tmp / "bundle", spec)
        runsc = [str(COMPAT_WRAPPER), "runsc"] if runsc_needs_netns_compat() else ["runsc"]
        return {
            "native": hyperfine(["/usr/bin/redis-server", "--version"], runs, tmp, "native"),
            "runc": hyperfine(["runc", "--root", str(tmp / "runc-root"), "run", "--bundle", str(bundle), "bare-runc"],
                              runs, tmp, "runc"),
            "gvisor": hyperfine([*runsc, "--root", str(tmp / "runsc-root"), "--platform=ptrace", "--network=sandbox",
                                 "run", "--bundle", str(bundle), "bare-runsc"], runs, tmp, "runsc"),
        }
    finally:
        subprocess.run(["ip", "netns", "del", netns], timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tb-overhead-") as d:
        tmp = Path(d)
        os.environ.setdefault("TESTBED_HOME", str(tmp / "home"))
        ours = testbed_cold_starts(tmp, args.runs)
        bare = bare_runs(tmp, args.runs)
    print(f"{'platform':<8} {'testbed cold start (ms)':>24} {'bare runtime run (ms)':>24} {'ratio':>7}")
    for p in ("native", "runc", "gvisor"):
        med = statistics.median(ours[p])
        mean, sd = bare[p]
        print(f"{p:<8} {med:>16.1f} (n={len(ours[p])}) {mean:>15.1f} ± {sd:<6.1f} {med / mean:>7.2f}")
    print("testbed: launch requested -> first correct redis reply over the lab network (median).")
    print("bare: hyperfine mean of the runtime running the same rootfs with `redis-server --version` "
          "(native: the binary alone).")


if __name__ == "__main__":
    main()
