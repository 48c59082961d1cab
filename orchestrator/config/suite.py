"""Suite files: the structure of a matrix of platforms x workloads x benchmarks x repetitions.

    name: quickstart
    repetitions: 3
    lab: {subnet: 10.77.0.0/24}
    platforms: {native: {}, runc: {}, gvisor: {platform: ptrace}, vm: {kind: linux-vm, vcpus: 1}}
    workloads: {redis: {}}
    benchmarks: {cold-start: {kind: startup, repetitions: 5}, setget: {kind: redis-benchmark}}
    matrix: [{platforms: [native, runc], workloads: [redis], benchmarks: [cold-start, setget]}]

This module checks the structure (names, the matrix, lab and placement settings); each entry's
options are validated against its kind's model by orchestrator/plan.py, which knows the kinds.
Entry names are simple names: they become parts of directory, namespace and domain names.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .papers import ClaimModel, PaperModel, PublishedModel

ENTRY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
MAX_REPETITIONS = 1000


class LabModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subnet: str = "10.77.0.0/24"
    lab_file: str | None = None  # lab hosts (SSH) for two-host runs

    @field_validator("subnet")
    @classmethod
    def private_24(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IPv4 network; expected e.g. 10.77.0.0/24") from exc
        if not net.is_private:
            raise ValueError(f"{value} is not a private range; lab addresses must be private (e.g. 10.77.0.0/24)")
        if net.prefixlen > 26:
            raise ValueError(f"{value} is too small; use a /24 (at most /26)")
        return value


class PlacementModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server_host: str = "localhost"
    client_host: str = "localhost"
    server_cpus: list[int] | str = "auto"  # auto: split the host's CPUs between server and client
    client_cpus: list[int] | str = "auto"

    @field_validator("server_cpus", "client_cpus")
    @classmethod
    def cpus(cls, value):
        if isinstance(value, str) and value not in ("auto", "none"):
            raise ValueError("expected a list of CPU numbers, 'auto' or 'none'")
        if isinstance(value, list) and any(c < 0 for c in value):
            raise ValueError("CPU numbers must be >= 0")
        return value


class MatrixModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    platforms: list[str] = Field(min_length=1)
    workloads: list[str] = Field(min_length=1)
    benchmarks: list[str] = Field(min_length=1)


class NightlySettings(BaseModel):
    """How `testbed nightly` judges this suite (the command line's options override each)."""

    model_config = ConfigDict(extra="forbid")
    threshold: float | None = Field(None, gt=0, le=10, description="smallest relative change with a verdict")
    metric_thresholds: dict[str, float] = Field(default_factory=dict, description="per metric, e.g. startup_ms: 0.1")
    min_nights: int | None = Field(None, ge=3, le=1000, description="nights of a configuration before a verdict")

    @field_validator("metric_thresholds")
    @classmethod
    def positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not 0 < v <= 10]
        if bad:
            raise ValueError(f"{', '.join(bad)}: a threshold is a fraction above 0 (0.05 = 5%)")
        return value


class SuiteModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    repetitions: int = Field(3, ge=1, le=MAX_REPETITIONS)
    lab: LabModel = Field(default_factory=LabModel)
    placement: PlacementModel = Field(default_factory=PlacementModel)
    platforms: dict[str, dict[str, Any] | None] = Field(min_length=1)
    workloads: dict[str, dict[str, Any] | None] = Field(min_length=1)
    benchmarks: dict[str, dict[str, Any] | None] = Field(min_length=1)
    matrix: list[MatrixModel] | None = None
    paper: PaperModel | None = None  # a paper reproduction: which paper, figure or table
    published: PublishedModel | None = None  # the paper's own numbers, kept beside ours
    claims: list[ClaimModel] = Field(default_factory=list)  # what the paper claims, checked against ours
    nightly: NightlySettings | None = None  # thresholds `testbed nightly` uses for this suite
    # Named overlays merged into the suite before it is validated (`testbed run --scale paper`):
    # e.g. {smoke: {repetitions: 2}, paper: {repetitions: 20, benchmarks: {ab: {requests: [100000]}}}}
    scales: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("scales")
    @classmethod
    def scale_names(cls, value: dict) -> dict:
        import re

        for name, overlay in value.items():
            if not re.match(ENTRY_NAME, str(name)):
                raise ValueError(f"scale name {name!r} must be a simple name (letters, digits, '-', '_')")
            if "scales" in overlay or "name" in overlay:
                raise ValueError(f"scale {name!r} may not change the suite's name or its scales")
        return value

    @field_validator("platforms", "workloads", "benchmarks")
    @classmethod
    def simple_names(cls, value: dict) -> dict:
        import re

        for name in value:
            if not isinstance(name, str) or not re.match(ENTRY_NAME, name):
                raise ValueError(f"entry name {name!r} must be a simple name: letters, digits, '-' and '_', "
                                 f"starting with a letter or digit, at most 32 characters")
        return value
