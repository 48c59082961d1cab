"""startup: N cold starts per platform; the value is first correct response minus launch requested.

The runner performs the launches (it owns the order of steps); this module only turns a
launch's Timeline into samples: the cold-start figure and every phase that explains it.
"""

from __future__ import annotations

from pydantic import Field

from ..timeline import Timeline
from .base import BenchmarkOptions, ColdStartBenchmark, Measurement


class StartupOptions(BenchmarkOptions):
    warmup: int = Field(0, ge=0, le=100)


class Startup(ColdStartBenchmark, kind="startup"):
    Options = StartupOptions
    metrics = ("startup_ms", "phase_*_ms", "guest_*_ms")

    def measure(self, timeline: Timeline) -> list[Measurement]:
        phases = timeline.since_requested_ms()
        out = [Measurement("startup_ms", timeline.startup_ms, "ms", {"end_point": "first correct response"})]
        for phase, ms in phases.items():
            if phase != "ready":
                out.append(Measurement(f"phase_{phase}_ms", ms, "ms", {"end_point": phase}))
        for name, value in timeline.guest.items():
            if value is None:
                out.append(Measurement.failed(f"guest_{name}_ms", "ms", "unavailable: the guest reported no usable value"))
            else:
                out.append(Measurement(f"guest_{name}_ms", value, "ms", {"source": "guest"}))
        return out
