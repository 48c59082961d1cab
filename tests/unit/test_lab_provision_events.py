"""ansible-runner events -> one-line progress and the one-line failure message."""

from __future__ import annotations

from orchestrator.provision.ansible import HostStats, ProvisionResult, _Events, _failure_message


def ev(kind: str, host: str = "a", task: str = "t", **res) -> dict:
    return {"event": kind, "event_data": {"host": host, "task": task, "res": res}}


def test_failure_messages():
    assert _failure_message({"msg": "boom\n  second line"}) == "boom second line"
    assert _failure_message({"msg": "non-zero return code", "rc": 3, "stderr": "eth9 has no SR-IOV"}) == \
        "eth9 has no SR-IOV"
    loop = {"msg": "One or more items failed", "results": [{"failed": False, "msg": "fine"},
                                                           {"failed": True, "rc": 1, "stderr": "second item broke"}]}
    assert _failure_message(loop) == "second item broke"
    assert _failure_message({}) == "failed without a message"
    assert len(_failure_message({"msg": "x" * 1000})) == 300


def test_events_stream_and_remember_first_failure():
    lines: list[str] = []
    e = _Events(lines.append)
    e({"event": "playbook_on_task_start", "event_data": {"task": "install"}})
    e(ev("runner_on_ok", task="install", changed=True))
    e(ev("runner_on_ok", host="b", task="install", changed=False))
    e(ev("runner_on_skipped", task="grub"))
    e({"event": "runner_on_failed", "event_data": {"host": "b", "task": "probe", "ignore_errors": True,
                                                   "res": {"msg": "ignored"}}})
    e(ev("runner_on_failed", host="b", task="vfs", msg="no such device"))
    e(ev("runner_on_failed", host="a", task="later", msg="second"))
    e(ev("runner_on_ok", task="reboot required", msg="testbed: reboot required to enable the IOMMU"))
    assert lines[:4] == ["task install", "a: install: changed", "b: install: ok", "a: grub: skipped"]
    assert e.first_failure == ("b", "vfs", "no such device")
    assert e.reboot == {"a"}


def test_callback_errors_do_not_break_provisioning():
    def broken(line):
        raise RuntimeError("display gone")

    e = _Events(broken)
    assert e(ev("runner_on_ok")) is True


def test_summary():
    r = ProvisionResult("successful", 0, {"a": HostStats(ok=5, changed=2), "b": HostStats(ok=5, skipped=1)},
                        ["a"], "/x", 12.3)
    assert r.changed == 2 and r.ok == 10 and r.failed == 0
    assert r.summary() == ("provision successful in 12 s; a: ok=5 changed=2 failed=0 unreachable=0 skipped=0; "
                           "b: ok=5 changed=0 failed=0 unreachable=0 skipped=1; reboot required on a")
