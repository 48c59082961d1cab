"""Every non-hypervisor platform with every workload, started for real, answering its probe.

Each test runs the runner on a small suite and then checks that nothing of the run is left:
no namespace, link, container or server process.
"""

from __future__ import annotations

import pytest

from helpers import leftovers
from orchestrator.plan import load_plan
from orchestrator.results.store import Store
from orchestrator.runner import Runner

pytestmark = pytest.mark.slow

SUITE = """\
name: core-{platform}
repetitions: 2
platforms:
  {platform}: {{}}
workloads:
  redis: {{}}
  nginx: {{}}
  memcached: {{}}
benchmarks:
  boot: {{kind: startup, warmup: 0}}
  rb: {{kind: redis-benchmark, requests: [2000], clients: [10], warmup: 0, repetitions: 1}}
"""


@pytest.mark.parametrize("platform", ["native", "runc", "gvisor"])
def test_platform_serves_every_workload_and_leaves_nothing(tmp_path, platform):
    path = tmp_path / "s.yaml"
    path.write_text(SUITE.format(platform=platform))
    store = Store(tmp_path / "r.sqlite")
    runner = Runner(load_plan(path), store=store)
    outcome = runner.run()
    assert outcome.status == "ok", outcome.failed_cells
    rows = list(store.samples(outcome.run_id))
    startups = [r for r in rows if r.metric == "startup_ms"]
    assert {r.workload for r in startups} == {"redis", "nginx", "memcached"}
    assert len(startups) == 6 and all(r.status == "ok" and r.value > 0 for r in startups)
    for r in startups:
        # The phases explain the figure: process start and port open come before the first correct answer.
        phases = {x.metric: x.value for x in rows if x.repetition == r.repetition and x.workload == r.workload}
        assert phases["phase_process_started_ms"] <= phases["phase_port_open_ms"] <= r.value
        assert r.provenance["image_digest"] and r.provenance["host"]["cpu_model"]
        assert r.provenance["platform_kind"] == platform and r.provenance["tools"]
    rps = [r for r in rows if r.metric == "requests_per_s"]
    assert {r.params["test"] for r in rps} == {"SET", "GET"} and all(r.value > 0 for r in rps)
    # Every TCP load run carries its retransmission counters: the client's always, the server's where the
    # host kernel runs the server's TCP (not gVisor's netstack).
    retrans = {r.metric for r in rows if r.metric.startswith("tcp_retrans_segs_") and r.status == "ok"}
    assert retrans == ({"tcp_retrans_segs_client"} | (set() if platform == "gvisor" else {"tcp_retrans_segs_server"}))
    assert all("interference" in r.provenance and r.provenance["raw_output"] for r in rps)
    assert leftovers(outcome.run_id) == []
