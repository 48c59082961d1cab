"""Provenance: where, on what and how a sample was measured.

Host facts come from the Host (so a lab host over SSH reports its own), tool versions from
the tools themselves, and testbed's own revision from its git checkout.
"""

from __future__ import annotations

import platform as _platform
import subprocess
from functools import cache

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import __version__, paths
from .errors import TestbedError
from .hosts.base import Host

if TYPE_CHECKING:
    from .bench.base import Benchmark
    from .images.cache import Image
    from .platforms.base import Instance, Platform
    from .workloads.base import Workload


def host_facts(host: Host) -> dict:
    """CPU model, cores, memory, kernel, OS of a host, read with commands that work locally and over SSH."""
    facts: dict = {"host": host.name}
    try:
        cpuinfo = host.run(["cat", "/proc/cpuinfo"], timeout=10, check=False).stdout
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
        facts["cpu_model"] = models[0] if models else "unknown"
        facts["cpu_threads"] = len(models) or None
        flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
        facts["cpu_virt"] = "vmx" if " vmx" in flags else ("svm" if " svm" in flags else "none")
        facts["cores"] = int(host.run(["nproc"], timeout=10).stdout.strip())
        meminfo = host.run(["cat", "/proc/meminfo"], timeout=10, check=False).stdout
        for line in meminfo.splitlines():
            if line.startswith("MemTotal:"):
                facts["memory_mb"] = int(line.split()[1]) // 1024
        facts["kernel"] = host.run(["uname", "-r"], timeout=10).stdout.strip()
        facts["arch"] = host.run(["uname", "-m"], timeout=10).stdout.strip()
        osrel = host.run(["cat", "/etc/os-release"], timeout=10, check=False).stdout
        for line in osrel.splitlines():
            if line.startswith("PRETTY_NAME="):
                facts["os"] = line.split("=", 1)[1].strip('"')
        facts["hostname"] = host.run(["uname", "-n"], timeout=10).stdout.strip()
    except (TestbedError, OSError, ValueError) as exc:  # partial facts are still facts; say what failed
        facts["facts_error"] = str(exc)
    return facts


@cache
def testbed_revision() -> str:
    """git revision of the testbed checkout (+'-dirty' when it has local changes), or the package version."""
    root = paths.project_root()
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
        if rev.returncode != 0:
            return f"v{__version__}"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return f"v{__version__}"


def controller_facts() -> dict:
    return {"testbed_version": __version__, "testbed_rev": testbed_revision(), "python": _platform.python_version()}


@dataclass
class RunFacts:
    """What every sample of a run shares: hosts, tool versions, suite, placement, testbed itself."""

    server: dict
    client: dict | None
    controller: dict
    suite: str
    suite_hash: str
    tools: dict[str, str] = field(default_factory=dict)
    placement: dict[str, Any] = field(default_factory=dict)
    readiness_poll_ms: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the run was resumed, overlap allowed

    def as_run_provenance(self) -> dict:
        return {"server": self.server, "client": self.client, **self.controller, **self.extra}


def sample_provenance(run: RunFacts, platform: "Platform", workload: "Workload", bench: "Benchmark",
                      image: "Image | None", instance: "Instance | None", point: dict) -> dict:
    """A sample's provenance: the run's facts, then what this platform, image and instance add."""
    prov: dict[str, Any] = {
        "host": run.server,
        "client_host": run.client or "same as host",
        "testbed_rev": run.controller["testbed_rev"],
        "testbed_version": run.controller["testbed_version"],
        "suite": run.suite,
        "suite_hash": run.suite_hash,
        "platform_kind": platform.kind,
        "platform_options": platform.options.model_dump(mode="json"),
        "workload_kind": workload.kind,
        "workload_options": workload.options.model_dump(mode="json"),
        "benchmark_kind": bench.kind,
        "benchmark_options": bench.options.model_dump(mode="json"),
        "tools": _tools(run.tools, workload, image),
        "placement": {**run.placement, "server_cpus": platform.options.cpus},
        "readiness_poll_ms": run.readiness_poll_ms,
        "point_key": point_key(point),
        **run.extra,
        **(image.provenance() if image else {}),
        **platform.provenance(),
    }
    if instance is not None:
        prov["nic"] = str(instance.attachment.nic)
        prov.update(instance.attachment.facts)
        prov.update(instance.provenance)
    return prov


def _tools(tools: dict[str, str], workload: "Workload", image: "Image | None") -> dict[str, str]:
    """The run's tool versions, except that an imported image (a unikernel built by the user) carries
    its own application: its server's version is the one found in the image ("unknown" if none was),
    never the host's binary's."""
    if image is None or not image.file_sha256:
        return tools
    from .images.imported import imported_app_version

    return {**tools, **{t.name: imported_app_version(image, t.name) for t in workload.tools}}


def point_key(point: dict) -> str:
    """A sweep point as a stable string (resume finds committed repetitions by it)."""
    import json

    return json.dumps(point, sort_keys=True, default=str)
