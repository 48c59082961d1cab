"""suites/sriov.yaml here (no SR-IOV NIC, no IOMMU): the sriov cells are not runnable, with the reason,
and the virtio cells of the same matrix run and give samples."""

from __future__ import annotations

import pytest
import yaml

from helpers import ROOT, leftovers
from orchestrator.plan import load_plan
from orchestrator.results.store import Store
from orchestrator.runner import Runner

pytestmark = pytest.mark.slow


def test_sriov_suite_runs_what_it_can(tmp_path):
    suite = yaml.safe_load((ROOT / "suites" / "sriov.yaml").read_text())
    suite["benchmarks"]["cold-start"]["repetitions"] = 1  # smoke scale
    suite["benchmarks"]["setget"].update(repetitions=1, requests=[2000], clients=[5])
    path = tmp_path / "sriov.yaml"
    path.write_text(yaml.safe_dump(suite))
    store = Store(tmp_path / "r.sqlite")
    outcome = Runner(load_plan(path), store=store).run()
    assert not outcome.failed_cells, outcome.failed_cells
    rows = list(store.samples(outcome.run_id))
    sriov = [r for r in rows if r.platform.endswith("-sriov")]
    assert {r.platform for r in sriov} == {"vm-sriov", "osv-sriov"}
    assert all(r.status == "not_runnable" and r.reason for r in sriov)
    vm = next(r.reason for r in sriov if r.platform == "vm-sriov")
    assert vm.startswith("sriov: ") and ("IOMMU" in vm or "ens1f0" in vm), vm
    virtio = [r for r in rows if r.platform == "vm-virtio" and r.status == "ok"]
    assert {r.metric for r in virtio} >= {"startup_ms", "requests_per_s"}
    assert all(r.provenance["nic"] == "virtio" for r in virtio)
    assert leftovers(outcome.run_id) == []
