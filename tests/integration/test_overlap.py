"""Two testbed runs on the same CPUs: the second is refused in one line, or measured and flagged."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from helpers import ROOT, TESTBED, run_cli
from orchestrator import paths
from orchestrator.results.store import Store

pytestmark = pytest.mark.slow

SUITE = """\
name: {name}
repetitions: {reps}
lab: {{subnet: {subnet}}}
platforms:
  native: {{}}
workloads:
  redis: {{}}
benchmarks:
  boot: {{kind: startup}}
"""


def suite(tmp_path, name: str, subnet: str, reps: int):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SUITE.format(name=name, subnet=subnet, reps=reps))
    return path


def test_second_run_on_the_same_cpus_is_refused_or_flagged(tmp_path):
    long_run = suite(tmp_path, "long", "10.111.0.0/24", 400)
    first = subprocess.Popen([TESTBED, "run", str(long_run), "--store", str(tmp_path / "a.sqlite")], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list(paths.ledger_dir().glob("*.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, "the first run ended too early"
        short = suite(tmp_path, "short", "10.112.0.0/24", 2)
        res = run_cli("run", str(short), "--store", str(tmp_path / "b.sqlite"), timeout=120)
        lines = [l for l in res.stderr.splitlines() if l.startswith("testbed:")]
        assert res.returncode == 4 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        assert "is live on localhost" in lines[0] and "--allow-overlap" in lines[0]
        assert not (tmp_path / "b.sqlite").exists() or not Store(tmp_path / "b.sqlite").runs()

        res = run_cli("run", str(short), "--store", str(tmp_path / "b.sqlite"), "--allow-overlap", timeout=120)
        assert res.returncode == 0, res.stderr
        store = Store(tmp_path / "b.sqlite")
        run_id = store.latest_run()
        rows = list(store.samples(run_id))
        assert rows and all(r.provenance["interference"]["overlap"] for r in rows)
        assert all(r.provenance["allowed_overlap"] for r in rows)
        out = run_cli("results", run_id, "--store", str(tmp_path / "b.sqlite"), "--format", "json", "--summary")
        assert out.returncode == 0 and "overlap" in out.stdout
    finally:
        first.terminate()
        first.wait(timeout=60)
    assert json.dumps([]) == json.dumps([p.name for p in paths.ledger_dir().glob("*.jsonl")])
