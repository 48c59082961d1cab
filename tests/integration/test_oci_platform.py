"""The generic `oci` platform for real with Debian's crun: the same bundle, namespace and pinning as runc."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from helpers import leftovers
from orchestrator.plan import load_plan
from orchestrator.results.store import Store
from orchestrator.runner import Runner

pytestmark = pytest.mark.slow

SUITE = """\
name: oci-crun
repetitions: 3
lab: {subnet: 10.96.0.0/24}
platforms:
  crun: {kind: oci, runtime: crun}
workloads:
  redis: {}
benchmarks:
  boot: {kind: startup}
  setget: {kind: redis-benchmark, tests: [set], requests: [2000], clients: [5], repetitions: 2}
"""


def test_crun_serves_redis_and_leaves_nothing(tmp_path):
    if shutil.which("crun") is None:
        pytest.skip("crun is not installed (the playbook's containers role installs it)")
    path = tmp_path / "s.yaml"
    path.write_text(SUITE)
    store = Store(tmp_path / "r.sqlite")
    outcome = Runner(load_plan(path), store=store).run()
    assert outcome.status == "ok", outcome.failed_cells
    rows = list(store.samples(outcome.run_id))
    starts = [r for r in rows if r.metric == "startup_ms"]
    assert len(starts) == 3 and all(r.status == "ok" for r in starts)
    assert all(r.provenance["oci_runtime"] == "crun" and r.provenance["tools"]["crun"].startswith("1.")
               for r in starts)
    assert any(r.metric == "requests_per_s" and r.status == "ok" for r in rows)
    assert leftovers(outcome.run_id) == []
    listed = subprocess.run(["crun", "--root", "/run/testbed-oci-crun", "list", "-q"], capture_output=True, text=True,
                            timeout=30, check=False).stdout
    assert outcome.run_id not in listed
