"""The nightly role's files as Ansible renders them (its templates with its own defaults and vars):
the systemd units pass `systemd-analyze verify`; the run script runs every suite in turn, with
TESTBED_HOME set, and under one lock. The installed cron entry: tests/integration/test_lab_hosts.py."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "playbooks" / "roles" / "nightly"
VENV_BIN = Path(sys.executable).parent
TEMPLATES = ["testbed-nightly.service", "testbed-nightly.timer", "run-nightly.sh"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """The three templates rendered by ansible-playbook into a temporary directory."""
    out = tmp_path_factory.mktemp("nightly-render")
    playbook = out / "render.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Render the nightly role's templates", "hosts": "localhost", "connection": "local",
        "gather_facts": False,
        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
        "tasks": [{"name": "Template", "ansible.builtin.template": {
            "src": str(ROLE / "templates" / "{{ item }}.j2"), "dest": str(out / "{{ item }}"), "mode": "0755"},
            "loop": TEMPLATES}],
    }]))
    extravars = {"nightly_suites": ["/lab/suites/quick.yaml", "/lab/other.yaml"], "nightly_at": "02:15",
                 "nightly_store": str(out / "store.sqlite"), "nightly_testbed_bin": str(out / "fake-testbed"),
                 "nightly_testbed_home": str(out / "home"), "nightly_config_dir": str(out / "config"),
                 "nightly_lock_file": str(out / "lock" / "nightly.lock"), "ansible_python_interpreter": sys.executable}
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
           "ANSIBLE_LOCAL_TEMP": str(out / "tmp"), "ANSIBLE_NOCOLOR": "1"}
    res = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(playbook),
                          "-e", json.dumps(extravars)], capture_output=True, text=True, timeout=180, env=env, check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return out


def test_units_render_the_schedule_and_the_job(rendered: Path):
    timer = (rendered / "testbed-nightly.timer").read_text()
    service = (rendered / "testbed-nightly.service").read_text()
    assert "OnCalendar=*-*-* 02:15:00\n" in timer and "Unit=testbed-nightly.service\n" in timer
    assert "WantedBy=timers.target" in timer and "Persistent=" not in timer
    assert f"ExecStart=/usr/bin/timeout --kill-after=60 21600 {rendered}/config/run\n" in service
    assert "Type=oneshot\n" in service and "Description=testbed nightly benchmarks (quick.yaml, other.yaml)" in service


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_pass_systemd_analyze_verify(rendered: Path, tmp_path: Path):
    units = [str(rendered / "testbed-nightly.service"), str(rendered / "testbed-nightly.timer")]
    res = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    # the check has teeth: a calendar systemd cannot parse fails it
    bad = tmp_path / "testbed-nightly.timer"
    bad.write_text((rendered / "testbed-nightly.timer").read_text().replace("02:15:00", "25:15:00"))
    shutil.copy(rendered / "testbed-nightly.service", tmp_path)
    res = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "testbed-nightly.service"), str(bad)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode != 0 and "calendar" in res.stderr


def _fake_testbed(rendered: Path, fail_on: str = "") -> Path:
    """Records each call (argv and TESTBED_HOME); fails for the suite named `fail_on`."""
    calls = rendered / "calls.txt"
    calls.unlink(missing_ok=True)
    fake = rendered / "fake-testbed"
    fake.write_text(f'#!/bin/sh\necho "$TESTBED_HOME $*" >> {calls}\n'
                    f'case "$2" in *{fail_on or "@none@"}) exit 1;; esac\nexit 0\n')
    fake.chmod(0o755)
    return calls


def _run(rendered: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(rendered / "run-nightly.sh")], capture_output=True, text=True, timeout=60, check=False)


def test_run_script_runs_each_suite_in_turn(rendered: Path):
    calls = _fake_testbed(rendered)
    res = _run(rendered)
    assert res.returncode == 0, res.stderr
    suites, home, store = rendered / "config" / "suites", rendered / "home", rendered / "store.sqlite"
    assert calls.read_text().splitlines() == [f"{home} nightly {suites}/quick.yaml --store {store}",
                                              f"{home} nightly {suites}/other.yaml --store {store}"]
    assert "suite quick.yaml" in res.stdout and "done, exit 0" in res.stdout
    # a failing suite does not stop the next one; the run exits 1
    calls = _fake_testbed(rendered, fail_on="quick.yaml")
    res = _run(rendered)
    assert res.returncode == 1 and len(calls.read_text().splitlines()) == 2


def test_run_script_is_skipped_while_another_holds_the_lock(rendered: Path):
    calls = _fake_testbed(rendered)
    lock = rendered / "lock" / "nightly.lock"
    lock.parent.mkdir(exist_ok=True)
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        res = _run(rendered)
    assert res.returncode == 75
    assert res.stderr.strip() == f"testbed-nightly: another nightly run holds {lock}; this one is skipped"
    assert not calls.exists()
    assert _run(rendered).returncode == 0  # released: the next night runs
