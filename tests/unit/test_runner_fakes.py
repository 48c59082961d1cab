"""The runner's logic without root, runtimes or a network: fake host, lab network, platform, benchmark."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orchestrator import paths
from orchestrator.errors import ConfigError, Interrupted
from orchestrator.ledger import live_resources
from orchestrator.plan import load_plan
from orchestrator.results.store import Store
from orchestrator.runner import Runner
from orchestrator.testing import fakes
from orchestrator.testing.fakes import EVENTS, FakeHost, FakeLabNet

SUITE = """\
name: fakes
repetitions: {reps}
platforms:
  {platforms}
workloads:
  {workloads}
benchmarks:
  boot: {{kind: startup}}
  load: {{kind: fake-load, {load}}}
"""


def plan(tmp_path: Path, *, platforms: str = "fake: {}", workloads: str = "fake-echo: {}", load: str = "",
         reps: int = 2):
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(platforms=platforms, workloads=workloads, load=load, reps=reps))
    return load_plan(path)


def runner(tmp_path: Path, p, **kw) -> Runner:
    EVENTS.clear()
    store = Store(tmp_path / "r.sqlite")
    return Runner(p, store=store, server_host=FakeHost(), client_host=FakeHost(), labnet_factory=FakeLabNet, **kw)


def samples(r: Runner) -> list:
    return list(r.store.samples(r.run_id))


def no_live_resources() -> bool:
    return all(not live_resources(f) for f in paths.ledger_dir().glob("*.jsonl"))


def test_step_order_and_teardown_on_success(tmp_path):
    r = runner(tmp_path, plan(tmp_path))
    out = r.run()
    assert out.status == "ok" and not out.failed_cells
    kinds = [k for k, _ in EVENTS]
    # two cold starts: attach -> launch -> stop -> release each; then one instance for the load cell
    assert kinds[:2] == ["net", "platform-attach"]
    for _ in range(3):
        assert kinds.count("launch") == 3 and kinds.count("stop") == 3 and kinds.count("release") == 3
    first_launch, first_stop = kinds.index("launch"), kinds.index("stop")
    assert first_launch < first_stop < kinds.index("release")
    assert kinds.index("bench") > kinds.index("launch", first_stop)  # load runs after its own launch
    assert kinds[-1] == "destroy" or EVENTS[-1] == ("net", "destroy")
    metrics = {s.metric for s in samples(r)}
    assert {"startup_ms", "phase_process_started_ms", "phase_port_open_ms", "value"} <= metrics
    assert r.store.run_info(r.run_id)["status"] == "ok"
    assert no_live_resources()


def test_entry_names_that_differ_from_kinds(tmp_path):
    p = plan(tmp_path, platforms="my-fake: {kind: fake}\n  other: {kind: fake}",
             workloads="echo-tuned: {kind: fake-echo, greeting: hello}")
    r = runner(tmp_path, p)
    out = r.run()
    assert out.status == "ok", out.reason
    rows = samples(r)
    assert {s.platform for s in rows} == {"my-fake", "other"} and {s.workload for s in rows} == {"echo-tuned"}
    assert all(s.provenance["workload_kind"] == "fake-echo" and s.provenance["platform_kind"] == "fake"
               for s in rows)


def test_launch_failure_is_a_failed_cell_and_the_run_goes_on(tmp_path):
    p = plan(tmp_path, platforms="broken: {kind: fake, fail_launch: 'runtime said no'}\n  good: {kind: fake}")
    r = runner(tmp_path, p)
    out = r.run()
    assert out.status == "failed" and len(out.failed_cells) == 2
    assert all("runtime said no" in c for c in out.failed_cells)
    rows = samples(r)
    failed = [s for s in rows if s.platform == "broken"]
    assert {s.metric for s in failed} == {"startup_ms", "cell"} and all(s.status == "failed" for s in failed)
    assert any(s.platform == "good" and s.status == "ok" for s in rows)
    assert no_live_resources() and not any(k == "attach" for k, _ in EVENTS[-1:])


def test_never_ready_is_a_failed_cell_with_the_probe_reason(tmp_path):
    p = plan(tmp_path, platforms="slow: {kind: fake, ready_after_polls: 100000, ready_timeout: 0.3}")
    out = runner(tmp_path, p).run()
    assert out.status == "failed"
    assert "gave no correct answer to its readiness probe within 0.3 s" in out.failed_cells[0]


def test_instance_dying_under_load_is_noticed_within_a_second(tmp_path):
    p = plan(tmp_path, platforms="dies: {kind: fake, die_after_s: 0.4}", load="seconds: 5, warmup: 0")
    r = runner(tmp_path, p, )
    r.plan.cells[:] = [c for c in r.plan.cells if c.benchmark == "load"]
    start = time.monotonic()
    out = r.run()
    elapsed = time.monotonic() - start
    assert elapsed < 3, elapsed  # not the tool's 5 s
    rows = samples(r)
    assert [s.metric for s in rows] == ["instance"] and "instance died" in rows[0].reason
    assert out.status == "failed" and no_live_resources()


def test_ctrl_c_tears_down_and_keeps_samples(tmp_path):
    p = plan(tmp_path, load="interrupt_after: 2")
    r = runner(tmp_path, p)
    with pytest.raises(Interrupted):
        r.run()
    assert r.store.run_info(r.run_id)["status"] == "interrupted"
    assert samples(r)  # the cold starts and the first load run stay
    assert ("net", "destroy") in EVENTS and EVENTS.count(("net", "destroy")) == 1
    assert [k for k, _ in EVENTS].count("stop") == [k for k, _ in EVENTS].count("launch")
    assert no_live_resources()


def test_a_bug_in_a_benchmark_surfaces_as_a_bug(tmp_path):
    p = plan(tmp_path, load="bug_after: 1")
    r = runner(tmp_path, p)
    with pytest.raises(TypeError, match="a bug in a benchmark"):
        r.run()
    assert r.store.run_info(r.run_id)["status"] == "failed"
    assert no_live_resources()


def test_not_runnable_cells_are_reported_and_the_rest_runs(tmp_path):
    p = plan(tmp_path, platforms="nope: {kind: fake, not_runnable_reason: 'no SR-IOV NIC here'}\n  good: {kind: fake}")
    r = runner(tmp_path, p)
    out = r.run()
    assert out.status == "ok" and not out.failed_cells
    assert sorted(out.not_runnable) == ["nope/fake-echo/boot: no SR-IOV NIC here",
                                        "nope/fake-echo/load: no SR-IOV NIC here"]
    rows = samples(r)
    assert {s.status for s in rows if s.platform == "nope"} == {"not_runnable"}
    assert not [k for k, w in EVENTS if k == "launch" and w == "nope"]


def test_missing_tool_stops_before_anything_is_created(tmp_path):
    from orchestrator.errors import MissingToolError

    p = plan(tmp_path)
    EVENTS.clear()
    r = Runner(p, store=Store(tmp_path / "r.sqlite"), server_host=FakeHost(missing={"ip"}),
               client_host=FakeHost(), labnet_factory=FakeLabNet)
    with pytest.raises(MissingToolError, match="ip on localhost"):
        r.run()
    assert EVENTS == [] and r.store.runs() == []


def test_cpu_that_does_not_exist_is_one_line(tmp_path):
    p = plan(tmp_path, platforms="fake: {cpus: [99]}")
    with pytest.raises(ConfigError, match=r"platforms.fake.cpus: CPU 99 does not exist on localhost \(it has CPUs 0-3\)"):
        runner(tmp_path, p).run()


def test_resume_runs_only_what_is_missing(tmp_path):
    p = plan(tmp_path, load="interrupt_after: 3, points: [1, 2]", reps=2)
    r = runner(tmp_path, p)
    with pytest.raises(Interrupted):
        r.run()
    before = samples(r)
    p2 = plan(tmp_path, load="interrupt_after: 3, points: [1, 2]", reps=2)
    p2.benchmarks["load"].options = p2.benchmarks["load"].options.model_copy(update={"interrupt_after": 0})
    r2 = Runner(p2, store=r.store, server_host=FakeHost(), client_host=FakeHost(), labnet_factory=FakeLabNet,
                resume=r.run_id)
    out = r2.run()
    assert out.status == "ok"
    rows = samples(r2)
    assert rows[:len(before)] == before
    keys = [(s.platform, s.benchmark, s.metric, json.dumps(s.params.get("size")), s.repetition) for s in rows
            if s.metric in ("value", "startup_ms")]
    assert len(keys) == len(set(keys))  # no duplicate
    assert sorted(k for k in keys if k[2] == "value") == sorted(
        ("fake", "load", "value", str(size), rep) for size in (1, 2) for rep in (0, 1))  # none missing
    info = r.store.run_info(r.run_id)
    assert info["status"] == "ok" and info["provenance"]["resumed"]


def test_resume_refuses_a_changed_suite(tmp_path):
    p = plan(tmp_path)
    r = runner(tmp_path, p)
    r.run()
    p2 = plan(tmp_path, reps=3)
    with pytest.raises(ConfigError, match="changed since that run"):
        Runner(p2, store=r.store, server_host=FakeHost(), client_host=FakeHost(), labnet_factory=FakeLabNet,
               resume=r.run_id).run()


def test_fakes_register_only_when_imported():
    from orchestrator.platforms.base import Platform

    assert "fake" in Platform.registry.kinds()  # imported above
    assert fakes.FakePlatform.kind == "fake"
