#!/usr/bin/env python3
"""The quickstart-shaped suite with the server on lab host A and redis-benchmark on lab host B,
beside the same suite run locally, and what SSH adds to the phases timed on the controller.

Builds two simulated lab hosts on this machine (orchestrator/testing/labsim.py: network + mount
namespaces, own sshd each, host A its own libvirtd; subnet 10.115.0.0/24), then:

  * SSH round trip: `true` on host A over the open connection, N times (median, p90);
  * console latency: a line written on host A (stamped with CLOCK_MONOTONIC, one clock on this
    machine) until the controller has read it, for a console followed over SSH (RemoteConsole)
    and, beside it, a local console file (ConsoleFile) polled the way ConsoleWatcher polls;
  * the suite twice, interleaved per repetition block: placement a/b, then locally (subnet
    10.116.0.0/24), and a table of the medians side by side with the ratio remote / local.

Usage (root): .venv/bin/python benchmarks/two_host_vs_local.py [--reps 5] [--blocks 1]
              [--platforms native,runc,gvisor,linux-vm,osv,rumprun]
       (osv, rumprun: `testbed images import ... --name it-redis` first)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TESTBED_HOME", tempfile.mkdtemp(prefix="testbed-twohost-"))
os.environ.setdefault("TESTBED_CACHE", "/var/cache/testbed-tests")

from rich.console import Console  # noqa: E402

from orchestrator import paths  # noqa: E402
from orchestrator.hosts.ssh import SshHost  # noqa: E402
from orchestrator.plan import load_plan  # noqa: E402
from orchestrator.results.store import Store  # noqa: E402
from orchestrator.results.table import print_results  # noqa: E402
from orchestrator.runner import Runner  # noqa: E402
from orchestrator.testing import labsim  # noqa: E402
from orchestrator.virt.console import ConsoleFile, RemoteConsole  # noqa: E402

REMOTE_SUBNET, LOCAL_SUBNET = "10.115.0.0/24", "10.116.0.0/24"
PLATFORMS = {"native": "{}", "runc": "{}", "gvisor": "{platform: ptrace}", "linux-vm": "{vcpus: 1, memory_mb: 512}",
             "osv": "{image: it-redis}", "rumprun": "{image: it-redis}"}  # unikernels: images imported as it-redis
METRICS = ("startup_ms", "phase_process_started_ms", "phase_port_open_ms", "requests_per_s")


def suite(path: Path, subnet: str, platforms: list[str], reps: int, lab_file: Path | None) -> Path:
    lab = f", lab_file: {lab_file}" if lab_file else ""
    # Both simulated hosts share this machine's CPUs: pin them as the local run's auto placement does
    # (server on the upper half, load generator on the lower), so the ratio is SSH and the link, not
    # two unpinned sides competing for the same cores.
    half = (os.cpu_count() or 2) // 2
    server, client = list(range(half, 2 * half)), list(range(half))
    placement = (f"placement: {{server_host: a, client_host: b, server_cpus: {server}, client_cpus: {client}}}\n"
                 if lab_file else "")
    body = "".join(f"  {p}: {PLATFORMS[p]}\n" for p in platforms)
    path.write_text(f"""\
name: two-host-quickstart
repetitions: {reps}
lab: {{subnet: {subnet}{lab}}}
{placement}platforms:
{body}workloads:
  redis: {{}}
benchmarks:
  cold-start: {{kind: startup, repetitions: {reps}}}
  setget: {{kind: redis-benchmark, tests: [set, get], requests: [20000], clients: [50], value_size: 128,
           repetitions: {max(1, reps // 2)}}}
""")
    return path


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def ssh_round_trip(host: SshHost, n: int) -> list[float]:
    host.run(["true"], timeout=10)
    out = []
    for _ in range(n):
        t = time.monotonic()
        host.run(["true"], timeout=10)
        out.append((time.monotonic() - t) * 1000)
    return out


WRITER = ("import sys, time\n"
          "f = open(sys.argv[1], 'a', buffering=1)\n"
          "for i in range(int(sys.argv[2])):\n"
          "    time.sleep(0.05)\n"
          "    f.write('TESTBED stamp t=%.6f\\n' % time.clock_gettime(time.CLOCK_MONOTONIC))\n")


def console_latency(lab: labsim.SimLab, host: SshHost, n: int) -> tuple[list[float], list[float]]:
    """ms from a line's write (on host A / here) to its read here, remote console and local file."""
    import subprocess

    remote_file = f"{lab.lab_home}/console-latency.log"
    remote: list[float] = []
    con = RemoteConsole(host, remote_file)
    con.start()
    time.sleep(0.3)
    proc = subprocess.Popen(lab.hosts["a"].enter(["python3", "-c", WRITER, remote_file, str(n)]))
    deadline = time.monotonic() + 30 + n
    while len(remote) < n and time.monotonic() < deadline:
        for ev in con.poll():
            if ev.kind == "marker":
                remote.append((time.monotonic() - float(ev.values["t"])) * 1000)
        time.sleep(0.002)  # ConsoleWatcher's WATCH_INTERVAL
    con.close()
    proc.wait(30)
    local: list[float] = []
    path = Path(paths.home()) / "console-latency.log"
    path.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)])
    cf = ConsoleFile(path)
    deadline = time.monotonic() + 30 + n
    while len(local) < n and time.monotonic() < deadline:
        for ev in cf.poll():
            if ev.kind == "marker":
                local.append((time.monotonic() - float(ev.values["t"])) * 1000)
        time.sleep(0.002)
    cf.close()
    proc.wait(30)
    return remote, local


def run(path: Path, store: Store) -> str:
    runner = Runner(load_plan(path), store=store)
    outcome = runner.run()  # closes the SSH connections it opened
    print(f"  run {outcome.run_id}: {outcome.status}, {outcome.samples} samples"
          + (f"; {outcome.reason}" if outcome.reason else ""), flush=True)
    return outcome.run_id


def medians(store: Store, run_id: str) -> dict[tuple[str, str, str], float]:
    values: dict[tuple[str, str, str], list[float]] = {}
    for r in store.samples(run_id):
        if r.status == "ok" and r.metric in METRICS and r.value is not None:
            key = (r.platform, r.metric, str(r.params.get("test", "")))
            values.setdefault(key, []).append(r.value)
    return {k: statistics.median(v) for k, v in values.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--blocks", type=int, default=1, help="remote/local pairs, interleaved")
    ap.add_argument("--platforms", default="native,runc,gvisor,linux-vm")
    ap.add_argument("--probes", type=int, default=50, help="SSH round trips and console lines to time")
    args = ap.parse_args()
    platforms = args.platforms.split(",")
    work = Path(tempfile.mkdtemp(prefix="testbed-twohost-lab-"))
    lab = labsim.build(work / "lab", REMOTE_SUBNET, private_paths=[paths.home()])
    console = Console(width=150)
    try:
        lab_file = lab.write_lab()
        from orchestrator.config.lab import load_lab

        host_a = SshHost.from_lab(load_lab(lab_file).host("a"))
        rtt = ssh_round_trip(host_a, args.probes)
        remote_lat, local_lat = console_latency(lab, host_a, args.probes)
        host_a.close()
        print(f"SSH round trip to host A (`true`, open connection), n={len(rtt)}: median {statistics.median(rtt):.2f} "
              f"ms, p90 {pct(rtt, 0.9):.2f} ms")
        print(f"console line written -> read on the controller, n={len(remote_lat)}: over SSH median "
              f"{statistics.median(remote_lat):.2f} ms (p90 {pct(remote_lat, 0.9):.2f}); "
              f"local file, n={len(local_lat)}: "
              f"median {statistics.median(local_lat):.2f} ms (p90 {pct(local_lat, 0.9):.2f}); "
              f"difference of medians {statistics.median(remote_lat) - statistics.median(local_lat):.2f} ms")
        remote_store, local_store = Store(work / "remote.sqlite"), Store(work / "local.sqlite")
        remote_suite = suite(work / "remote.yaml", REMOTE_SUBNET, platforms, args.reps, lab_file)
        local_suite = suite(work / "local.yaml", LOCAL_SUBNET, platforms, args.reps, None)
        runs: dict[str, list[str]] = {"remote": [], "local": []}
        for b in range(args.blocks):
            print(f"block {b + 1}/{args.blocks}: server on host A, client on host B", flush=True)
            runs["remote"].append(run(remote_suite, remote_store))
            print(f"block {b + 1}/{args.blocks}: the same suite on this machine", flush=True)
            runs["local"].append(run(local_suite, local_store))
        print_results(console, remote_store, runs["remote"][-1])
        print_results(console, local_store, runs["local"][-1])
        rm = [medians(remote_store, r) for r in runs["remote"]]
        lm = [medians(local_store, r) for r in runs["local"]]
        print("\nmedians, server on host A / client on host B beside local (ratio = two-host / local):")
        print(f"{'platform':10} {'metric':26} {'test':5} {'two-host':>12} {'local':>12} {'ratio':>7}")
        for key in sorted(set().union(*rm) & set().union(*lm)):
            r = statistics.median([m[key] for m in rm if key in m])
            loc = statistics.median([m[key] for m in lm if key in m])
            print(f"{key[0]:10} {key[1]:26} {key[2]:5} {r:12.1f} {loc:12.1f} {r / loc if loc else float('nan'):7.2f}")
        print(f"leftovers: {lab.leftovers()}")
    finally:
        lab.close()


if __name__ == "__main__":
    main()
