"""The paper suites' workloads and load generators for real, through the runner, on every platform
they run on here: python-http (cold start) and ab (fixed request counts, fresh connections and
keep-alive, files of 4 KiB and 1 MiB) on native, runc, gVisor and a Linux VM; memaslap with an
execute count and a thread sweep on the same four; open/close on a host tmpfs bind-mounted into runc
and gVisor (with runsc's file-access and overlay options); netperf's stored mean, p50 and stddev; and
`run --check` refusing runsc settings this host cannot honour. OSv and rumprun run these workloads
only from imported images; where none is imported their cells are not runnable (checked too).

No timed assertions: the numbers are for the suites; these check that every cell measures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import leftovers, run_cli

from orchestrator import paths
from orchestrator.bench import ab
from orchestrator.enums import SampleStatus
from orchestrator.plan import load_plan
from orchestrator.results.store import Store
from orchestrator.runner import Runner

pytestmark = pytest.mark.slow

SUBNET = "10.106.0.0/24"
SUITE = f"""\
name: it-paper-workloads
repetitions: 2
lab: {{subnet: {SUBNET}}}
platforms:
  native: {{}}
  runc: {{host_tmpfs: true}}
  gvisor: {{platform: ptrace, host_tmpfs: true}}
  gvisor-flags: {{kind: gvisor, platform: ptrace, host_tmpfs: true, file_access_mounts: exclusive,
                  overlay: "root:memory", runsc_flags: [--gso=false]}}
  linux-vm: {{vcpus: 1, memory_mb: 512}}
  osv: {{vcpus: 1, memory_mb: 256}}
workloads:
  python-http: {{}}
  nginx: {{files: [4k, 1m], sendfile: false}}
  memcached: {{}}
  sysbench: {{}}
  netserver: {{}}
benchmarks:
  cold: {{kind: startup}}
  dl: {{kind: ab, files: [4k, 1m], requests: [60], concurrency: [1, 4], warmup: 0, request_timeout: 30}}
  dl-keepalive: {{kind: ab, files: [4k], requests: [200], concurrency: [8], keepalive: true, warmup: 0}}
  mc: {{kind: memaslap, threads: [1, 2], clients_per_thread: 4, operations: 2000, warmup: 0, timeout: 60}}
  files: {{kind: syscalls, tests: [openclose], openclose_calls: 500, files: [tmp, host-tmpfs], warmup: 0}}
  rr: {{kind: netperf, tests: [UDP_RR], message_sizes: [64], length: 1, warmup: 0, timeout: 20}}
matrix:
  - {{platforms: [native, runc, gvisor, linux-vm, osv], workloads: [python-http], benchmarks: [cold]}}
  - {{platforms: [native, runc, gvisor, linux-vm], workloads: [nginx], benchmarks: [dl, dl-keepalive]}}
  - {{platforms: [native, runc, gvisor, linux-vm], workloads: [memcached], benchmarks: [mc]}}
  - {{platforms: [runc, gvisor, gvisor-flags], workloads: [sysbench], benchmarks: [files]}}
  - {{platforms: [native], workloads: [netserver], benchmarks: [rr]}}
"""
FOUR = ("native", "runc", "gvisor", "linux-vm")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("paper-workloads")
    path = d / "s.yaml"
    path.write_text(SUITE)
    store = Store(d / "r.sqlite")
    outcome = Runner(load_plan(path), store=store).run()
    rows = list(store.samples(outcome.run_id))
    assert leftovers(outcome.run_id) == []
    assert not [p for p in os.listdir("/dev/shm") if p.startswith(f"testbed-{outcome.run_id}")]
    return outcome, rows, paths.runs_dir() / outcome.run_id / "client"  # one raw/ directory per platform


def ok(rows, benchmark, metric, platform):
    return [r for r in rows if r.benchmark == benchmark and r.metric == metric and r.platform == platform
            and r.status == SampleStatus.OK]


def test_the_run_measured_every_runnable_cell(run):
    outcome, rows, _ = run
    assert outcome.failed_cells == [], outcome.failed_cells
    assert outcome.not_runnable == ["osv/python-http/cold: " + next(
        r.reason for r in rows if r.platform == "osv")]
    assert "no osv image named 'python-http'" in outcome.not_runnable[0]


@pytest.mark.parametrize("platform", FOUR)
def test_python_http_cold_start(run, platform):
    _, rows, _ = run
    starts = ok(rows, "cold", "startup_ms", platform)
    assert len(starts) == 2 and all(r.value > 0 for r in starts)
    assert starts[0].provenance["workload_kind"] == "python-http"
    if platform == "linux-vm":
        assert starts[0].provenance["accel"] in ("kvm", "tcg")


@pytest.mark.parametrize("platform", FOUR)
def test_ab_fixed_counts_fresh_connections_and_keepalive(run, platform):
    _, rows, raw = run
    rps = ok(rows, "dl", "requests_per_s", platform)
    assert {(r.params["file"], r.params["concurrency"]) for r in rps} == {
        ("4k.bin", 1), ("4k.bin", 4), ("1m.bin", 1), ("1m.bin", 4)}
    assert len(rps) == 8 and all(r.params["requests"] == 60 and r.params["keepalive"] is False for r in rps)
    assert ok(rows, "dl", "transfer_mib_per_s", platform) and ok(rows, "dl", "latency_p90_ms", platform)
    keep = ok(rows, "dl-keepalive", "requests_per_s", platform)
    assert len(keep) == 2 and keep[0].params["keepalive"] is True
    assert ok(rows, "dl-keepalive", "latency_p99_ms", platform)  # 200 requests: ab's p99 is in range
    kept = sorted(raw.glob(f"{platform}/raw/ab-*.out"))
    assert kept  # the run kept ab's own output for this platform
    for f in kept:  # and every one of them parses
        assert ab.parse_ab(f.read_text())["complete"] > 0


@pytest.mark.parametrize("platform", FOUR)
def test_memaslap_execute_count_and_thread_sweep(run, platform):
    _, rows, _ = run
    ops = ok(rows, "mc", "ops_per_s", platform)
    assert sorted((r.params["threads"], r.params["concurrency"]) for r in ops) == [(1, 4), (1, 4), (2, 8), (2, 8)]
    assert all(r.params["operations"] == 2000 and "duration_s" not in r.params for r in ops)
    assert ok(rows, "mc", "latency_avg_us", platform)


@pytest.mark.parametrize("platform", ["runc", "gvisor", "gvisor-flags"])
def test_open_close_on_the_containers_tmpfs_and_a_host_tmpfs(run, platform):
    _, rows, _ = run
    got = {r.params["test"] for r in ok(rows, "files", "ns_per_call", platform)}
    assert got == {"openclose_tmp", "openclose_host-tmpfs"}
    prov = ok(rows, "files", "ns_per_call", platform)[0].provenance
    assert prov["host_tmpfs"].startswith("/dev/shm/testbed-")
    if platform == "gvisor-flags":
        assert "--file-access-mounts=exclusive --overlay2=root:memory --gso=false" in prov["runsc_flags"]


def test_netperf_stores_mean_p50_and_stddev(run):
    _, rows, _ = run
    for metric in ("latency_mean_us", "latency_p50_us", "latency_stddev_us"):
        assert len(ok(rows, "rr", metric, "native")) == 2, metric


def test_check_refuses_runsc_settings_this_host_lacks(tmp_path):
    suite = tmp_path / "kvm.yaml"
    suite.write_text(f"name: it-kvm\nlab: {{subnet: {SUBNET}}}\n"
                     "platforms: {gk: {kind: gvisor, platform: kvm}, gs: {kind: gvisor, platform: systrap}}\n"
                     "workloads: {redis: {}}\nbenchmarks: {cold: {kind: startup}}\n")
    res = run_cli("run", "--check", str(suite), timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert any("platforms.gs: platform: this runsc" in line and "has no systrap platform" in line for line in lines)
    kvm = [line for line in lines if "platforms.gk: platform: kvm:" in line]
    if kvm:  # this host's KVM is not usable by runsc (nested without VMX): refused before anything starts
        assert "use platform: ptrace here" in kvm[0]
    assert not list(Path("/tmp").glob("testbed-runsc-kvm-probe.*"))
