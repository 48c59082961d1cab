#!/usr/bin/env python3
"""testbed's cold start beside its bare floor, per platform, interleaved: how much testbed itself adds.

The floor is benchmarks/floor.py: a script with no testbed code that starts the same thing testbed
starts (the same argv for native, runc and gVisor: namespace, bundle, runtime flags, CPU pinning;
the same domain XML through libvirt-python for linux-vm) and probes it the same way (a non-blocking
connect polled every millisecond from the lab's client namespace, then redis PING/SET/GET). What it
starts is taken from testbed's own platform objects (their launch stopped at the point of starting),
so both sides run the same command; only who runs it differs.

Each repetition runs one testbed cold start (a one-repetition `startup` run through the Runner) and
one floor cold start, alternating which goes first. Prints per platform both medians, the ratio
testbed / floor and a bootstrap 95% interval of that ratio of medians. Target: at most 1.05.

Usage (as root): .venv/bin/python benchmarks/cold_start_floor.py [--runs 10] [--platforms native,runc,gvisor,linux-vm]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TESTBED_HOME", tempfile.mkdtemp(prefix="testbed-floor-"))

from orchestrator import paths  # noqa: E402
from orchestrator.hosts.local import LocalHost  # noqa: E402
from orchestrator.images.cache import ImageCache  # noqa: E402
from orchestrator.ledger import Ledger  # noqa: E402
from orchestrator.net.labnet import LabNet  # noqa: E402
from orchestrator.placement import split_cpus  # noqa: E402
from orchestrator.plan import load_plan  # noqa: E402
from orchestrator.results.stats import ratio_ci  # noqa: E402
from orchestrator.results.store import Store  # noqa: E402
from orchestrator.runner import Runner  # noqa: E402
from orchestrator.timeline import Timeline  # noqa: E402

SUITE = """\
name: floor
repetitions: 1
lab: {{subnet: 10.120.0.0/24}}
platforms:
  {kind}: {{kind: {kind}}}
workloads:
  redis: {{}}
benchmarks:
  boot: {{kind: startup, warmup: 0}}
"""
FLOOR = Path(__file__).with_name("floor.py")


class Captured(Exception):
    """A platform's launch reached the point of starting: what it would start."""

    def __init__(self, argv: list[str] | None = None, xml: str | None = None):
        super().__init__("captured")
        self.argv, self.xml = argv, xml


class CapturingHost(LocalHost):
    def spawn(self, argv, *, log_path, ledger, label, before_start=None):
        raise Captured(argv=list(argv))


def testbed_once(kind: str, tmp: Path, store: Store) -> float:
    path = tmp / f"{kind}.yaml"
    path.write_text(SUITE.format(kind=kind))
    outcome = Runner(load_plan(path), store=store).run()
    if outcome.failed_cells:
        raise SystemExit(f"testbed {kind}: {outcome.failed_cells[0]}")
    return next(r.value for r in store.samples(outcome.run_id) if r.metric == "startup_ms")


def floor_once(kind: str, tmp: Path, ledger: Ledger, labnet: LabNet, i: int) -> float:
    """What testbed would start for one cold start, started and probed by floor.py instead."""
    plan = load_plan(_suite(tmp, kind))
    entry = plan.platforms[kind]
    server_cpus, _ = split_cpus(os.cpu_count() or 1)
    options = entry.options.model_copy(update={"cpus": server_cpus})
    platform = entry.cls(kind, options, CapturingHost(), ledger, tmp / f"floor-{kind}")
    workload = plan.workloads["redis"]
    platform.prepare()
    image = platform.image(workload, ImageCache())
    att = platform.attach(labnet)
    spec: dict = {"address": str(att.address), "port": workload.port, "log": str(tmp / f"floor-{kind}-{i}.log"),
                  "client_netns": labnet.client_ns}
    cid = None
    try:
        if kind == "linux-vm":
            platform.create = _capture_xml  # type: ignore[method-assign]
        try:
            platform.launch(image, workload, att, Timeline())
        except Captured as c:
            if c.xml is not None:
                xml = tmp / f"floor-{i}.xml"
                xml.write_text(c.xml.replace("<name>tb-", "<name>tbfloor-"))
                spec["domain_xml"] = str(xml)
            else:
                spec["argv"] = c.argv
                cid = c.argv[-1] if kind in ("runc", "gvisor") else None
        (tmp / "spec.json").write_text(json.dumps(spec))
        res = subprocess.run([sys.executable, str(FLOOR), str(tmp / "spec.json")], capture_output=True, text=True,
                             timeout=300, check=False)
        if res.returncode != 0:
            log = Path(spec["log"]).read_text(errors="replace")[-400:] if Path(spec["log"]).exists() else ""
            raise SystemExit(f"floor {kind}: {res.stderr.strip() or res.stdout.strip()}; server log: {log}")
        return float(res.stdout.strip())
    finally:
        if cid is not None:
            platform.delete_container(cid)  # type: ignore[attr-defined]
            ledger.release("container", cid)
        labnet.release(att)
        platform.close()


def _capture_xml(name, xml, workdir, timeline, attachment):
    # The launch removes its per-launch initrd when create fails; the floor boots a copy of it.
    initrd = Path(workdir) / "initrd.img"
    if initrd.exists():
        kept = Path(workdir).with_name(f"{Path(workdir).name}-floor-initrd.img")
        shutil.copyfile(initrd, kept)
        xml = xml.replace(f"<initrd>{initrd}</initrd>", f"<initrd>{kept}</initrd>")
    raise Captured(xml=xml)


def _suite(tmp: Path, kind: str) -> Path:
    path = tmp / f"{kind}.yaml"
    path.write_text(SUITE.format(kind=kind))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--platforms", default="native,runc,gvisor,linux-vm")
    args = ap.parse_args()
    kinds = args.platforms.split(",")
    with tempfile.TemporaryDirectory(prefix="floor-", dir=paths.home()) as d:  # scratch inside TESTBED_HOME
        tmp = Path(d)
        store = Store(tmp / "r.sqlite")
        ledger = Ledger("floorbench")
        labnet = LabNet("flr", "10.121.0.0/24", ledger)
        labnet.create()
        ours: dict[str, list[float]] = {k: [] for k in kinds}
        floor: dict[str, list[float]] = {k: [] for k in kinds}
        try:
            for i in range(args.runs):
                for kind in kinds:
                    first_testbed = i % 2 == 0
                    for side in (("testbed", "floor") if first_testbed else ("floor", "testbed")):
                        if side == "testbed":
                            ours[kind].append(testbed_once(kind, tmp, store))
                        else:
                            floor[kind].append(floor_once(kind, tmp, ledger, labnet, i))
                print(f"run {i + 1}/{args.runs}: " + ", ".join(
                    f"{k} {ours[k][-1]:.1f}/{floor[k][-1]:.1f} ms" for k in kinds), flush=True)
        finally:
            labnet.destroy()
            ledger.close()
    print(f"\ncold start to the first correct redis answer (ms), n={args.runs} each, interleaved")
    print(f"{'platform':<10}{'testbed':>12}{'floor':>12}{'ratio':>8}  95% CI of the ratio")
    for kind in kinds:
        a, b = ours[kind], floor[kind]
        ci = ratio_ci(a, b)
        interval = f"{ci.low:.3f}-{ci.high:.3f}" if ci and ci.low is not None else "n too small"
        print(f"{kind:<10}{statistics.median(a):12.2f}{statistics.median(b):12.2f}"
              f"{statistics.median(a) / statistics.median(b):8.3f}  {interval}")


if __name__ == "__main__":
    main()
