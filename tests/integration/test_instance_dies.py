"""An instance killed while a load tool runs: the failed sample is recorded within seconds, not after
the tool's own timeout (redis-benchmark would otherwise block for the benchmark's 120 s)."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from helpers import leftovers
from orchestrator.plan import load_plan
from orchestrator.results.store import Store
from orchestrator.runner import Runner

pytestmark = pytest.mark.slow

SUITE = """\
name: dies
repetitions: 1
lab: {{subnet: 10.99.0.0/24}}
platforms:
  victim: {{kind: {kind}}}
workloads:
  redis: {{}}
benchmarks:
  flood: {{kind: redis-benchmark, tests: [set], requests: [5000000], clients: [20], warmup: 0, timeout: 120}}
"""


def pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def victims(kind: str, run_id: str) -> list[int]:
    """This run's server only (other tests on the machine run redis too): the container's init, or the
    QEMU whose guest name carries the run id."""
    if kind == "linux-vm":
        return pids(f"qemu-system-x86_64.*guest=tb-{run_id}-")
    import json

    out = subprocess.run(["runc", "--root", "/run/testbed-runc", "list", "-f", "json"], capture_output=True,
                         text=True, check=False).stdout
    return [c["pid"] for c in json.loads(out or "[]") or [] if f"-{run_id}-" in c["id"] and c["pid"]]


@pytest.mark.parametrize("kind", ["runc", "linux-vm"])
def test_killed_instance_is_noticed_within_seconds(tmp_path, kind):
    path = tmp_path / "s.yaml"
    path.write_text(SUITE.format(kind=kind))
    store = Store(tmp_path / "r.sqlite")
    runner = Runner(load_plan(path), store=store)
    killed_at: list[float] = []

    def killer() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if pids("redis-benchmark -h 10.99.0."):
                time.sleep(1.0)  # well into the load
                for pid in victims(kind, runner.run_id):
                    subprocess.run(["kill", "-9", str(pid)], check=False)
                killed_at.append(time.time())
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    outcome = runner.run()
    t.join(timeout=5)
    assert killed_at, "the load never started"
    rows = list(store.samples(outcome.run_id))
    died = [r for r in rows if r.metric == "instance" or (r.reason and "instance died" in r.reason)]
    assert died, [(r.metric, r.status, r.reason) for r in rows]
    assert died[0].measured - killed_at[0] < 5.0, died[0].measured - killed_at[0]
    assert outcome.status == "failed" and leftovers(outcome.run_id) == []
