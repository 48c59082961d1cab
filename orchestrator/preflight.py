"""Everything that can be checked before a run creates anything.

Stops the run (one line each): a tool missing on the host a platform, workload or benchmark is
placed on; a CPU that does not exist there; a lab subnet the host already uses; a platform
setting the host cannot honour. Reports, without stopping: cells that cannot run here (an
unikernel image not imported, no SR-IOV NIC), which become not-runnable samples with the reason.

`run --check` calls the same checks (check_plan) and prints what a run would do.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .errors import ConfigError, MissingToolError, ResourceBusyError
from .hosts.base import Host
from .hosts.local import LocalHost
from .placement import Placement, cpu_count
from .plan import Cell, Plan
from .platforms.base import Platform
from .tools import BASE_TOOLS, Tool


@dataclass
class Preflight:
    not_runnable: dict[Cell, str] = field(default_factory=dict)


def _missing(host: Host, tools: list[tuple[Tool, str]], out: list[str]) -> None:
    for tool, who in tools:
        if host.which(tool.name) is None:
            out.append(f"{tool.name} on {host.name} (needed by {who}; Debian package {tool.package})")


def check_tools(plan: Plan, placement: Placement, platforms: dict[str, Platform], local_lab: bool) -> None:
    missing: list[str] = []
    server: list[tuple[Tool, str]] = [(t, "the lab network") for t in BASE_TOOLS if local_lab and t.name == "ip"]
    client: list[tuple[Tool, str]] = []
    controller: list[tuple[Tool, str]] = []
    for cell in plan.cells:
        p = platforms[cell.platform]
        server += [(t, f"platform {cell.platform}") for t in p.tools_for(p.options)]
        wl = plan.workloads[cell.workload]
        # native runs the host's own binary; the other platforms build images from the controller's.
        target = server if p.kind == "native" else controller
        target += [(t, f"workload {cell.workload}") for t in wl.tools]
        client += [(t, f"benchmark {cell.benchmark}") for t in plan.benchmarks[cell.benchmark].tools]
    for host, tools in ((placement.server, server), (placement.client, client), (LocalHost(), controller)):
        _missing(host, list({t.name: (t, who) for t, who in tools}.values()), missing)
    if missing:
        hosts = sorted({placement.server.name, placement.client.name} - {"localhost"})
        fix = f"run `testbed provision {' '.join(hosts)}`" if hosts else "run ./setup.sh"
        raise MissingToolError(f"missing: {'; '.join(dict.fromkeys(missing))}; {fix} (see `testbed doctor`)")


def check_cpus(plan: Plan, placement: Placement, platforms: dict[str, Platform]) -> None:
    errors = []
    for host, cpus, what in [(placement.server, placement.server_cpus, "placement.server_cpus"),
                             (placement.client, placement.client_cpus, "placement.client_cpus"),
                             *((placement.server, p.options.cpus, f"platforms.{n}.cpus") for n, p in platforms.items())]:
        if not cpus:
            continue
        count = cpu_count(host)
        bad = [c for c in cpus if not 0 <= c < count]
        if bad:
            errors.append(f"{plan.path}: {what}: CPU {', '.join(map(str, bad))} does not exist on {host.name} "
                          f"(it has CPUs 0-{count - 1})")
    if errors:
        raise ConfigError("\n".join(errors))


def check_subnet_free(plan: Plan) -> None:
    subnet = ipaddress.IPv4Network(plan.model.lab.subnet)
    out = LocalHost().run(["ip", "-o", "-4", "addr", "show"], timeout=10).stdout
    for line in out.split("\n"):
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "inet":
            iface = ipaddress.IPv4Interface(parts[3])
            if iface.network.overlaps(subnet):
                raise ResourceBusyError(
                    f"{plan.path}: lab.subnet {subnet} overlaps {iface} on host interface {parts[1]}; "
                    f"choose a subnet this host does not use")


def make_platforms(plan: Plan, placement: Placement, host: Host, ledger, workdir) -> dict[str, Platform]:
    """The plan's platforms on the server host, pinned as the placement says (what a run constructs)."""
    out = {}
    for name in dict.fromkeys(c.platform for c in plan.cells):
        entry = plan.platforms[name]
        options = entry.options
        if options.cpus is None and placement.server_cpus:
            options = options.model_copy(update={"cpus": placement.server_cpus})
        out[name] = entry.cls(name, options, host, ledger, workdir / name)
    return out


def preflight(plan: Plan, placement: Placement, platforms: dict[str, Platform], *, local_lab: bool) -> Preflight:
    check_tools(plan, placement, platforms, local_lab)
    check_cpus(plan, placement, platforms)
    errors = [f"{plan.path}: platforms.{name}: {e}" for name, p in platforms.items() for e in p.preflight()]
    if errors:
        raise ConfigError("\n".join(errors))
    if local_lab:
        check_subnet_free(plan)
    result = Preflight()
    for cell in plan.cells:
        reason = platforms[cell.platform].not_runnable(plan.workloads[cell.workload])
        if reason:
            result.not_runnable[cell] = reason
    return result


@dataclass
class PlanCheck:
    """What `run --check` says of a suite beyond its matrix: cells that cannot run here, and the estimate."""

    not_runnable: dict[Cell, str]
    estimate_s: dict[str, float]  # by accelerator (kvm, tcg) when the suite has guests, else {"": s}


def check_plan(plan: Plan, placement: Placement, platforms: dict[str, Platform], *, local_lab: bool) -> PlanCheck:
    """Every check a run makes before it creates anything (raising the same one-line errors), and the
    duration of the cells that would run."""
    result = preflight(plan, placement, platforms, local_lab=local_lab)
    runnable = [c for c in plan.cells if c not in result.not_runnable]
    accels = ("kvm", "tcg") if plan.has_guests() else ("kvm",)
    estimate = {a if plan.has_guests() else "": plan.estimate_seconds(a, runnable) for a in accels}
    return PlanCheck(result.not_runnable, estimate)
