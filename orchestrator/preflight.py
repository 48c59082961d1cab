"""Everything that can be checked before a run creates anything.

Stops the run (one line each): a tool missing that every cell needs (the lab network's, a
benchmark's on the client host, the image builders' on the controller), or a platform's tool when
no cell is left to run; a CPU that does not exist there; a lab subnet the host already uses; a
platform setting the host cannot honour. Fails, without stopping the others: the cells of a
platform whose tool is missing on the host it is placed on (one line naming host, tool, package
and `testbed provision HOST`). Reports: cells that cannot run here (an unikernel image not
imported, no SR-IOV NIC), which become not-runnable samples with the reason.

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
    failed: dict[Cell, str] = field(default_factory=dict)  # cells that fail before they start (a tool missing)


def _missing(host: Host, tools: list[tuple[Tool, str]], out: list[str], seen: dict[tuple[str, str], bool]) -> None:
    for tool, who in tools:
        key = (host.name, tool.name)
        if key not in seen:
            seen[key] = host.which(tool.name) is None
        if seen[key]:
            out.append(f"{tool.name} on {host.name} (needed by {who}; Debian package {tool.package})")


def _fix(hosts: set[str]) -> str:
    lab = sorted(hosts - {"localhost"})
    return f"run `testbed provision {' '.join(lab)}`" if lab else "run ./setup.sh"


def check_tools(plan: Plan, placement: Placement, platforms: dict[str, Platform], local_lab: bool) -> dict[Cell, str]:
    """Every tool each cell needs, on the host it runs on. Tools every cell needs stop the run; a
    platform's tool missing on its host fails that platform's cells (returned: cell -> one line)."""
    seen: dict[tuple[str, str], bool] = {}
    missing: list[str] = []
    server: list[tuple[Tool, str]] = [(t, "the lab network") for t in BASE_TOOLS if t.name == "ip"]
    client: list[tuple[Tool, str]] = []
    controller: list[tuple[Tool, str]] = []
    per_platform: dict[str, list[tuple[Tool, str]]] = {}
    for cell in plan.cells:
        p = platforms[cell.platform]
        mine = per_platform.setdefault(cell.platform, [])
        mine += [(t, f"platform {cell.platform}") for t in p.tools_for(p.options)]
        if not local_lab:
            mine += [(t, f"platform {cell.platform}") for t in p.lab_host_tools(p.options)]
        wl = plan.workloads[cell.workload]
        # native runs the host's own binary; the other platforms build images from the controller's.
        if p.kind == "native":
            mine += [(t, f"workload {cell.workload}") for t in wl.tools]
        else:
            controller += [(t, f"workload {cell.workload}") for t in wl.tools]
        client += [(t, f"benchmark {cell.benchmark}") for t in plan.benchmarks[cell.benchmark].tools]
    for host, tools in ((placement.server, server), (placement.client, client), (LocalHost(), controller)):
        _missing(host, list({t.name: (t, who) for t, who in tools}.values()), missing, seen)
    if missing:
        fix = _fix({placement.server.name, placement.client.name})
        raise MissingToolError(f"missing: {'; '.join(dict.fromkeys(missing))}; {fix} (see `testbed doctor`)")
    reasons: dict[str, str] = {}
    for name, tools in per_platform.items():
        lines: list[str] = []
        _missing(placement.server, list({t.name: (t, who) for t, who in tools}.values()), lines, seen)
        if lines:
            doctor = "testbed doctor" if placement.server.is_local else f"testbed doctor {placement.server.name}"
            reasons[name] = (f"missing: {'; '.join(dict.fromkeys(lines))}; {_fix({placement.server.name})} "
                             f"(see `{doctor}`)")
    if reasons and len(reasons) == len(per_platform):  # nothing would run: say so at once, as one line
        raise MissingToolError("; ".join(dict.fromkeys(reasons.values())))
    return {cell: reasons[cell.platform] for cell in plan.cells if cell.platform in reasons}


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
    failed = check_tools(plan, placement, platforms, local_lab)
    check_cpus(plan, placement, platforms)
    errors = [f"{plan.path}: platforms.{name}: {e}" for name, p in platforms.items() for e in p.preflight()]
    if errors:
        raise ConfigError("\n".join(errors))
    if local_lab:
        check_subnet_free(plan)
    result = Preflight(failed=failed)
    for cell in plan.cells:
        if cell in failed:
            continue
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
