"""`testbed doctor`: pass / warn / fail checks of a host, each with a fix hint.

Checks are DoctorCheck subclasses (orchestrator/checks.py) living beside the code whose needs
they know; the tool table is built from the tools every registered platform, workload and
benchmark declares. A host that cannot be reached (refused host key, no route) is not a table
of failures: it is one line and a non-zero exit, at the first refusal.
"""

from __future__ import annotations

from typing import Iterable

from ..bench.base import Benchmark
from ..checks import FAIL, PASS, WARN, Check, DoctorCheck
from ..errors import TestbedError
from ..hosts.base import Host
from ..platforms.base import Platform
from ..tools import BASE_TOOLS, ToolSet, tool_version
from ..workloads.base import Workload


def declared_tools(lab_host: bool = False) -> ToolSet:
    """Every tool testbed's registered platforms, workloads and benchmarks declare, once each (and,
    for a lab host, what platforms need there besides: copying images, libvirt over SSH)."""
    tools = ToolSet()
    tools.add(BASE_TOOLS, "testbed")
    for registry, noun in ((Platform.registry, "platform"), (Workload.registry, "workload"),
                           (Benchmark.registry, "benchmark")):
        for kind, cls in registry.items():
            tools.add(cls.tools, f"{kind} {noun}")
    if lab_host:
        for kind, cls in Platform.registry.items():
            tools.add(cls.lab_host_tools(), f"{kind} platform on a lab host")
    return tools


class ToolsCheck(DoctorCheck, kind="tools"):
    order = 10

    def run(self, host: Host) -> Iterable[Check]:
        tools = declared_tools(lab_host=not host.is_local)
        for tool in tools:
            needed_by = ", ".join(tools.purposes[tool.name])
            version = tool_version(host, tool.version_argv) if tool.version_argv else (
                "present" if host.which(tool.name) else None)
            if version is None:
                yield Check(f"tool {tool.name}", WARN if tool.optional else FAIL, f"missing (needed by {needed_by})",
                            f"apt-get install {tool.package}  (or `testbed provision`)")
            else:
                yield Check(f"tool {tool.name}", PASS, version)


def run_checks(host: Host) -> list[Check]:
    """Every registered check against `host`; a check that breaks is itself a finding, a host that
    cannot be reached (an SshError: refused key, no route) raises its one line at once."""
    classes = sorted((cls for _, cls in DoctorCheck.registry.items()), key=lambda c: (c.order, c.kind))
    results: list[Check] = []
    for cls in classes:
        if cls.local_only and not host.is_local:
            continue
        try:
            results.extend(cls().run(host))
        except TestbedError as exc:
            if getattr(exc, "ends_session", False):  # SSH refused or dropped: no later check can run
                raise
            results.append(Check(cls.kind, FAIL, f"check failed to run: {exc}"))
        except OSError as exc:
            results.append(Check(cls.kind, FAIL, f"check failed to run: {exc}"))
    return results


__all__ = ["FAIL", "PASS", "WARN", "Check", "DoctorCheck", "declared_tools", "run_checks", "tool_version"]
