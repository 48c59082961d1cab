"""`testbed collect`'s copy and merge, with this machine standing in for a lab host."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestrator.hosts.local import LocalHost
from orchestrator.results.collect import CollectError, collect, merge
from orchestrator.results.store import Store


class LabX(LocalHost):
    name = "lab-x"


class Tampering(LabX):
    def get(self, remote: str, local: Path, *, timeout: float) -> None:
        super().get(remote, local, timeout=timeout)
        with open(local, "ab") as fh:
            fh.write(b"\0")  # a byte changed on the way


def host_store(path: Path, runs: dict[str, str]) -> Path:
    s = Store(path)
    for run_id, status in runs.items():
        s.begin_run(run_id, "quickstart", "suites/quickstart.yaml", "h" * 64, "rev", {"server": {"host": "lab-x"}})
        for rep in range(3):
            s.add_sample(run_id, platform="native", workload="redis", benchmark="boot", metric="startup_ms",
                         value=10.0 + rep, unit="ms", repetition=rep, params={}, status="ok", reason=None,
                         provenance={"host": {"host": "lab-x"}, "testbed_rev": "rev", "suite_hash": "h" * 64,
                                     "image_digest": "d"})
        if status != "running":
            s.end_run(run_id, status)
    s.close()
    return path


def test_collect_merges_finished_runs_once(tmp_path):
    remote = host_store(tmp_path / "remote.sqlite", {"aaaa1111": "ok", "bbbb2222": "failed", "cccc3333": "running"})
    target = Store(tmp_path / "controller.sqlite")
    first = collect(LabX(), str(remote), target)
    assert first.merged == ["aaaa1111@lab-x", "bbbb2222@lab-x"] and first.unfinished == 1
    info = target.run_info("aaaa1111@lab-x")
    assert info["status"] == "ok" and info["provenance"]["collected_from"] == "lab-x"
    assert info["provenance"]["original_run_id"] == "aaaa1111"
    assert [s.value for s in target.samples("aaaa1111@lab-x")] == [10.0, 11.0, 12.0]
    again = collect(LabX(), str(remote), target)
    assert again.merged == [] and again.skipped == 2
    assert len(target.runs()) == 2 and "2 already collected" in again.line()


def test_checksum_mismatch_merges_nothing(tmp_path):
    remote = host_store(tmp_path / "remote.sqlite", {"aaaa1111": "ok"})
    target = Store(tmp_path / "controller.sqlite")
    with pytest.raises(CollectError, match=r"lab-x: the copy of .* has sha256 .*nothing merged") as exc:
        collect(Tampering(), str(remote), target)
    assert "\n" not in str(exc.value) and target.runs() == []


def test_corrupted_store_merges_nothing(tmp_path):
    remote = host_store(tmp_path / "remote.sqlite", {"aaaa1111": "ok"})
    bad = tmp_path / "bad.sqlite"
    shutil.copy(remote, bad)
    data = bytearray(bad.read_bytes())
    data[4096:] = b"\xa5" * (len(data) - 4096)  # every page after the header's
    bad.write_bytes(bytes(data))
    target = Store(tmp_path / "controller.sqlite")
    with pytest.raises(CollectError, match="lab-x: its store"):
        merge(target, bad, "lab-x")
    assert target.runs() == []


def test_missing_remote_store_is_one_line(tmp_path):
    with pytest.raises(CollectError, match="lab-x: no result store at .*nope.sqlite"):
        collect(LabX(), str(tmp_path / "nope.sqlite"), Store(tmp_path / "c.sqlite"))
    assert json.dumps([]) == json.dumps(Store(tmp_path / "c.sqlite").runs())
