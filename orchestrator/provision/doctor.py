"""`testbed doctor`: pass / warn / fail checks of a host, each with a fix hint.

Checks register themselves with @check; each takes the Host and returns one or more
Check results. Modules that add checks (virtualization, SR-IOV, ...) are imported in
CHECK_MODULES so the registry is complete before running.
"""

from __future__ import annotations

import importlib
import re
import subprocess
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

from ..hosts.base import Host

PASS, WARN, FAIL = "pass", "warn", "fail"


@dataclass
class Check:
    name: str
    status: str  # pass | warn | fail
    detail: str
    fix: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


CheckFn = Callable[[Host], Iterable[Check]]
CHECKS: list[CheckFn] = []
CHECK_MODULES: list[str] = ["orchestrator.provision.doctor", "orchestrator.provision.host_checks"]
CHECK_MODULES.append("orchestrator.platforms.gvisor")
CHECK_MODULES.append("orchestrator.platforms.unikernel_common")
CHECK_MODULES.append("orchestrator.virt.doctor_checks")


def check(fn: CheckFn) -> CheckFn:
    CHECKS.append(fn)
    return fn


# tool -> (argv printing its version, Debian package providing it, what needs it)
TOOLS: dict[str, tuple[list[str], str, str]] = {
    "ip": (["ip", "-V"], "iproute2", "lab network"),
    "taskset": (["taskset", "--version"], "util-linux", "CPU placement"),
    "runc": (["runc", "--version"], "runc", "runc platform"),
    "runsc": (["runsc", "--version"], "runsc", "gvisor platform"),
    "redis-server": (["redis-server", "--version"], "redis-server", "redis workload"),
    "nginx": (["nginx", "-v"], "nginx-light", "nginx workload"),
    "memcached": (["memcached", "-V"], "memcached", "memcached workload"),
    "redis-benchmark": (["redis-benchmark", "--version"], "redis-tools", "redis-benchmark benchmark"),
    "ldd": (["ldd", "--version"], "libc-bin", "image builds"),
}


def tool_version(host: Host, argv: list[str]) -> str | None:
    """First version-looking token the tool prints, or None when the tool is missing."""
    if host.which(argv[0]) is None:
        return None
    try:
        res = host.run(argv, timeout=15, check=False)
    except Exception as exc:
        if getattr(exc, "ends_session", False):
            raise
        return None
    text = (res.stdout + "\n" + res.stderr).strip()
    m = re.search(r"v?(\d+\.\d+(?:[.\-~+][\w.~+-]*)?)", text)
    return m.group(1) if m else (text.splitlines()[0] if text else "unknown")


@check
def tools(host: Host) -> Iterable[Check]:
    for tool, (argv, package, purpose) in TOOLS.items():
        version = tool_version(host, argv)
        if version is None:
            yield Check(f"tool {tool}", FAIL, f"missing (needed by the {purpose})",
                        f"apt-get install {package}  (or run ./setup.sh)")
        else:
            yield Check(f"tool {tool}", PASS, version)


def run_checks(host: Host) -> list[Check]:
    for module in CHECK_MODULES:
        importlib.import_module(module)
    results: list[Check] = []
    for fn in CHECKS:
        try:
            results.extend(fn(host))
        except Exception as exc:  # a broken check is itself a finding, not a crash
            if getattr(exc, "ends_session", False):
                raise  # the host refused or dropped the connection: no later check can run (SshError)
            results.append(Check(fn.__name__, FAIL, f"check failed to run: {exc}"))
    return results


def versions_of(host: Host, tools: Iterable[str]) -> dict[str, str]:
    return {t: (tool_version(host, TOOLS[t][0]) or "missing") for t in tools if t in TOOLS}


__all__ = ["Check", "check", "run_checks", "PASS", "WARN", "FAIL", "TOOLS", "tool_version", "CHECK_MODULES"]
