#!/usr/bin/env python3
"""The same suite run by two testbed checkouts, interleaved, and the ratio of their medians.

For a change that must not slow the local path (e.g. the lab-host seam): block by block, checkout A
runs the suite, then checkout B, each into its own store; then per platform and metric the medians
of A and B over all blocks, B / A, and a bootstrap 95% interval of that ratio (resampling each
side's samples). Both run from this venv (PYTHONPATH=<checkout>), with private TESTBED_HOMEs and
the shared image cache, so only the code differs.

Usage (root): .venv/bin/python benchmarks/checkout_ratio.py --a /work/main --b . [--suite suites/quickstart.yaml]
              [--blocks 2] [--subnet 10.117.0.0/24]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

METRICS = ("startup_ms", "phase_process_started_ms", "phase_port_open_ms", "requests_per_s")


def run(checkout: Path, suite: Path, store: Path, home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(checkout.resolve()), "TESTBED_HOME": str(home),
           "TESTBED_CACHE": os.environ.get("TESTBED_CACHE", "/var/cache/testbed-tests")}
    res = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(suite), "--store", str(store)],
                         env=env, capture_output=True, text=True, timeout=3600, check=False)
    tail = (res.stderr.strip().splitlines() or [""])[-1]
    print(f"  {checkout}: exit {res.returncode} {tail}", flush=True)


def samples(store: Path) -> dict[tuple[str, str, str], list[float]]:
    out: dict[tuple[str, str, str], list[float]] = {}
    with sqlite3.connect(store) as db:
        for platform, metric, params, value in db.execute(
                "SELECT platform, metric, params, value FROM samples WHERE status = 'ok' AND value IS NOT NULL"):
            if metric in METRICS:
                test = yaml.safe_load(params or "{}").get("test", "") if params else ""
                out.setdefault((platform, metric, str(test)), []).append(float(value))
    return out


def ratio_interval(a: list[float], b: list[float], rng: np.random.Generator, n: int = 4000) -> tuple[float, float]:
    xa, xb = np.asarray(a), np.asarray(b)
    ra = np.median(rng.choice(xa, (n, len(xa))), axis=1)
    rb = np.median(rng.choice(xb, (n, len(xb))), axis=1)
    r = rb / ra
    return float(np.percentile(r, 2.5)), float(np.percentile(r, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", type=Path, required=True, help="the baseline checkout")
    ap.add_argument("--b", type=Path, required=True, help="the changed checkout")
    ap.add_argument("--suite", type=Path, default=Path("suites/quickstart.yaml"))
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--subnet", default="10.117.0.0/24", help="replaces the suite's lab.subnet")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="testbed-ratio-"))
    suite = yaml.safe_load(args.suite.read_text())
    suite.setdefault("lab", {})["subnet"] = args.subnet
    path = work / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    stores = {"a": work / "a.sqlite", "b": work / "b.sqlite"}
    homes = {k: work / f"home-{k}" for k in stores}
    for h in homes.values():
        h.mkdir()
    for block in range(args.blocks):
        order = ("a", "b") if block % 2 == 0 else ("b", "a")  # neither side always runs first
        print(f"block {block + 1}/{args.blocks}: {' then '.join(order)}", flush=True)
        for side in order:
            run(getattr(args, side), path, stores[side], homes[side])
    sa, sb = samples(stores["a"]), samples(stores["b"])
    rng = np.random.default_rng(1)
    print(f"\n{args.suite} ({args.blocks} blocks), medians of every sample; ratio = B / A with a bootstrap 95% interval")
    print(f"A = {args.a}, B = {args.b}")
    print(f"{'platform':10} {'metric':26} {'test':5} {'n':>4} {'A':>11} {'B':>11} {'B/A':>6}  95% interval")
    for key in sorted(sa.keys() & sb.keys()):
        a, b = sa[key], sb[key]
        lo, hi = ratio_interval(a, b, rng)
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{key[0]:10} {key[1]:26} {key[2]:5} {min(len(a), len(b)):4} {ma:11.2f} {mb:11.2f} {mb / ma:6.3f}  "
              f"[{lo:.3f}, {hi:.3f}]")


if __name__ == "__main__":
    main()
