"""Suites: a matrix of platforms x workloads x benchmarks x repetitions, validated on load.

    name: quickstart
    repetitions: 3
    lab: {subnet: 10.77.0.0/24}
    platforms: {native: {}, runc: {}, gvisor: {platform: ptrace}, vm: {kind: linux-vm, vcpus: 1}}
    workloads: {redis: {}}
    benchmarks: {cold-start: {kind: startup, repetitions: 5}, setget: {kind: redis-benchmark}}
    matrix: [{platforms: [native, runc], workloads: [redis], benchmarks: [cold-start, setget]}]

Each platform / workload / benchmark entry is `name: {kind: K, ...options}`; kind defaults to
the name. Options are validated by the model of that kind, so a typo is an error at load time.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..bench import BENCHMARKS
from ..platforms import PLATFORMS
from ..workloads import WORKLOADS
from .yamlload import LineMap, dotted, load_yaml, raise_if, validation_errors


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


class SuiteModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    repetitions: int = Field(3, ge=1, le=1000)
    lab: LabModel = Field(default_factory=LabModel)
    placement: PlacementModel = Field(default_factory=PlacementModel)
    platforms: dict[str, dict[str, Any] | None] = Field(min_length=1)
    workloads: dict[str, dict[str, Any] | None] = Field(min_length=1)
    benchmarks: dict[str, dict[str, Any] | None] = Field(min_length=1)
    matrix: list[MatrixModel] | None = None
    claims: list[dict[str, Any]] = Field(default_factory=list)  # the paper's published figures, kept beside ours


@dataclass
class Entry:
    name: str
    kind: str
    cls: type
    options: Any


@dataclass
class Cell:
    platform: str
    workload: str
    benchmark: str


@dataclass
class Suite:
    path: Path
    name: str
    digest: str
    model: SuiteModel
    platforms: dict[str, Entry]
    workloads: dict[str, Entry]
    benchmarks: dict[str, Entry]
    cells: list[Cell] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # incompatible workload/benchmark pairs, said once


def _entries(section: str, raw: dict, registry: dict, source: str, lines: LineMap, errors: list[str]) -> dict:
    out = {}
    for name, options in raw.items():
        options = dict(options or {})
        kind = options.pop("kind", name)
        loc = (section, name)
        if kind not in registry:
            where = lines.line_of(loc + ("kind",))
            noun = section.rstrip("s")
            errors.append(f"{source}:{where}: {dotted(loc + ('kind',))}: unknown {noun} {kind!r}; "
                          f"expected one of {', '.join(sorted(registry))}")
            continue
        cls = registry[kind]
        try:
            out[name] = Entry(name, kind, cls, cls.Options.model_validate(options))
        except ValidationError as exc:
            errors.extend(validation_errors(exc, source, lines, loc))
    return out


def load_suite(path: Path | str) -> Suite:
    path = Path(path)
    source = str(path)
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise_if([f"{source}:1: the suite must be a mapping with name, platforms, workloads, benchmarks"])
    try:
        model = SuiteModel.model_validate(data)
    except ValidationError as exc:
        raise_if(validation_errors(exc, source, lines))
    errors: list[str] = []
    platforms = _entries("platforms", model.platforms, PLATFORMS, source, lines, errors)
    workloads = _entries("workloads", model.workloads, WORKLOADS, source, lines, errors)
    benchmarks = _entries("benchmarks", model.benchmarks, BENCHMARKS, source, lines, errors)
    raise_if(errors)

    matrix = model.matrix or [MatrixModel(platforms=list(platforms), workloads=list(workloads),
                                          benchmarks=list(benchmarks))]
    cells: list[Cell] = []
    skipped: list[str] = []
    for i, m in enumerate(matrix):
        for key, known in (("platforms", platforms), ("workloads", workloads), ("benchmarks", benchmarks)):
            for j, name in enumerate(getattr(m, key)):
                if name not in known:
                    loc = ("matrix", i, key, j)
                    errors.append(f"{source}:{lines.line_of(loc)}: {dotted(loc)}: {name!r} is not defined under "
                                  f"{key}; expected one of {', '.join(known) or '(none defined)'}")
        if errors:
            continue
        for b in m.benchmarks:
            bench = benchmarks[b]
            for w in m.workloads:
                wkind = workloads[w].kind
                if bench.cls.workloads and wkind not in bench.cls.workloads:
                    skipped.append(f"{b} does not drive {w} (it drives {', '.join(bench.cls.workloads)})")
                    continue
                for p in m.platforms:
                    cells.append(Cell(p, w, b))
    raise_if(errors)
    if not cells:
        raise_if([f"{source}:{lines.line_of(('matrix',)) or 1}: matrix: no benchmark in the matrix can drive any of "
                  f"its workloads ({'; '.join(dict.fromkeys(skipped))})"])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Suite(path, model.name, digest, model, platforms, workloads, benchmarks, cells,
                 list(dict.fromkeys(skipped)))
