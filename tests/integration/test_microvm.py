"""microvm for real: QEMU's microvm machine run directly, the Linux guest serving redis under TCG."""

from __future__ import annotations

import subprocess

import pytest

from helpers import leftovers
from orchestrator.plan import load_plan
from orchestrator.results.store import Store
from orchestrator.runner import Runner

pytestmark = pytest.mark.slow

SUITE = """\
name: microvm-it
repetitions: 2
lab: {subnet: 10.97.0.0/24}
platforms:
  microvm: {vcpus: 1, memory_mb: 512}
workloads:
  redis: {}
benchmarks:
  boot: {kind: startup}
  setget: {kind: redis-benchmark, tests: [set], requests: [2000], clients: [5], repetitions: 1}
"""


def test_microvm_boots_serves_and_leaves_nothing(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SUITE)
    store = Store(tmp_path / "r.sqlite")
    outcome = Runner(load_plan(path), store=store).run()
    assert outcome.status == "ok", outcome.failed_cells
    rows = list(store.samples(outcome.run_id))
    starts = [r for r in rows if r.metric == "startup_ms"]
    assert len(starts) == 2 and all(r.status == "ok" for r in starts)
    for s in starts:
        phases = {r.metric: r.value for r in rows if r.repetition == s.repetition and r.benchmark == "boot"
                  and r.status == "ok"}
        order = [phases[f"phase_{p}_ms"] for p in ("process_started", "first_console", "kernel_up", "init_started",
                                                    "port_open")] + [s.value]
        assert order == sorted(order) and len(set(order)) == len(order), phases
        assert s.provenance["machine"] == "microvm" and s.provenance["accel"] in ("kvm", "tcg")
        assert "-M microvm" in s.provenance["qemu_argv"] and s.provenance["nic"] == "virtio"
    assert any(r.metric == "requests_per_s" and r.status == "ok" for r in rows)
    assert leftovers(outcome.run_id) == []
    qemus = subprocess.run(["pgrep", "-af", f"/runs/{outcome.run_id}/"], capture_output=True, text=True, check=False).stdout
    assert "qemu" not in qemus
