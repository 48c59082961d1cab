"""Timelines, not stopwatches: monotonic timestamps of the phases a launch passes.

A platform marks what it alone can see (process started; for guests the VMM, console lines,
kernel and init markers, stamped by a console reader thread as each line arrives); the
readiness probe marks port_open and ready. Startup time is ready minus requested; the phases
explain it. Marks are first-wins, so a late duplicate never moves a phase.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

# Phases in the order a launch passes them.
PHASES = (
    "requested",        # launch() called (after the resources it needs are recorded)
    "process_started",  # runtime / VMM process exists (spawn returned, libvirt create returned)
    "vmm_started",      # QEMU process seen (guests): its own start time from /proc
    "first_console",    # first console line from the guest
    "kernel_up",        # guest kernel handed over to userspace / unikernel booted
    "init_started",     # guest init or the application's main() started
    "port_open",        # the workload's TCP port accepts
    "ready",            # first correct application response (the end point of cold start)
)


def now() -> float:
    return time.monotonic()


@dataclass
class Timeline:
    """Phase timestamps (time.monotonic) plus what the guest itself reported, in ms (None = unavailable)."""

    marks: dict[str, float] = field(default_factory=dict)
    guest: dict[str, float | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def mark(self, phase: str, t: float | None = None) -> float:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase}")
        t = now() if t is None else t
        with self._lock:  # the console thread and the probe mark concurrently
            return self.marks.setdefault(phase, t)

    def has(self, phase: str) -> bool:
        return phase in self.marks

    def since_requested_ms(self) -> dict[str, float]:
        """Each observed phase as milliseconds after `requested`, in phase order."""
        t0 = self.marks["requested"]
        return {p: (self.marks[p] - t0) * 1000.0 for p in PHASES if p in self.marks and p != "requested"}

    @property
    def startup_ms(self) -> float | None:
        if "ready" not in self.marks or "requested" not in self.marks:
            return None
        return (self.marks["ready"] - self.marks["requested"]) * 1000.0
