"""The real playbooks/site.yml against this machine (ansible_connection=local), through the driver,
as the project's own set-up script does: it must succeed, and a second run must change nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.provision.ansible import provision

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.mark.skipif(os.geteuid() != 0, reason="provisioning this machine needs root")
def test_site_playbook_on_localhost_is_idempotent(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TESTBED_HOME", str(tmp_path / "home"))
    extravars = {"testbed_probe_marker_dir": str(tmp_path / "markers")}
    events: list[str] = []
    first = provision(extravars=extravars, on_event=events.append)
    assert first.status == "successful", first.summary()
    assert list(first.hosts) == ["localhost"]
    assert first.failed == 0
    assert (tmp_path / "markers" / "provisioned-localhost").exists()
    assert any(e.startswith("localhost: Virtualization packages:") for e in events)

    second = provision(extravars=extravars)
    assert second.status == "successful"
    assert second.changed == 0, second.summary()
    assert second.hosts["localhost"].ok >= 20  # every role ran


DEB822 = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://example.invalid/debian
Suites: bookworm
Components: main non-free
"""

CLASSIC = """\
deb http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm main contrib non-free
# deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian-security bookworm-security main contrib
"""


def test_packages_role_enables_non_free_in_both_formats(tmp_path: Path, monkeypatch):
    """The packages role's apt-sources tasks on copies of both formats (apt update switched off)."""
    monkeypatch.setenv("TESTBED_HOME", str(tmp_path / "home"))
    deb822, classic = tmp_path / "debian.sources", tmp_path / "sources.list"
    deb822.write_text(DEB822)
    classic.write_text(CLASSIC)
    extravars = {"packages_apt_deb822": str(deb822), "packages_apt_sources_list": str(classic),
                 "packages_apt_update": False}
    first = provision(tags=["apt_sources"], extravars=extravars)
    assert first.changed == 2, first.summary()
    assert deb822.read_text() == (DEB822.replace("Components: main contrib\n", "Components: main contrib non-free\n")
                                  .replace("main non-free-firmware\n", "main non-free-firmware non-free\n"))
    assert classic.read_text() == CLASSIC.replace("bookworm main\n", "bookworm main non-free\n", 1).replace(
        "bookworm-security main contrib\n", "bookworm-security main contrib non-free\n")
    second = provision(tags=["apt_sources"], extravars=extravars)
    assert second.changed == 0, second.summary()


def _fact(artifact_dir: str, task: str, fact: str):
    """A fact a set_fact task produced, read back from ansible-runner's event files."""
    for path in sorted(Path(artifact_dir, "job_events").glob("*.json")):
        event = json.loads(path.read_text())
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and data.get("task") == task:
            return data["res"]["ansible_facts"][fact]
    raise AssertionError(f"no ok event for task {task!r} in {artifact_dir}")


def test_packages_role_sees_every_roles_package_list(tmp_path: Path, monkeypatch):
    """The apt update is decided from all roles' lists: a package only another role names counts as missing."""
    monkeypatch.setenv("TESTBED_HOME", str(tmp_path / "home"))
    extravars = {"packages_apt_deb822": str(tmp_path / "none.sources"),
                 "packages_apt_sources_list": str(tmp_path / "none.list"), "packages_apt_update": False,
                 "loadgen_packages": ["testbed-no-such-package"], "build_packages": ["procps"]}
    result = provision(tags=["apt_sources"], extravars=extravars)
    missing = _fact(result.artifact_dir, "Packages the roles want that are not installed", "packages_missing")
    assert "testbed-no-such-package" in missing and "procps" not in missing, missing
