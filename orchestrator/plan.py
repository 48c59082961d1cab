"""A suite resolved once into named objects: the Plan the runner executes.

load_plan() reads a suite file (config/suite.py checks its structure), looks every entry's
kind up in the registries, validates its options against that kind's model (paths in options
are relative to the suite file), expands the matrix into cells and constructs the workloads and
benchmarks with their entry names. Everything downstream is keyed by entry names, so two
variants of one kind (`redis-tuned: {kind: redis}`) are simply two entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .bench.base import Benchmark, ColdStartBenchmark, LoadBenchmark
from .config.suite import MatrixModel, SuiteModel
from .config.yamlload import LineMap, dotted, load_yaml, raise_if, validation_errors
from .digest import sha256_file
from .platforms.base import Platform
from .registry import Registry, UnknownKind
from .workloads.base import Workload


@dataclass
class Entry:
    name: str
    kind: str
    cls: type
    options: Any


@dataclass(frozen=True)
class Cell:
    platform: str
    workload: str
    benchmark: str

    def __str__(self) -> str:
        return f"{self.platform}/{self.workload}/{self.benchmark}"


@dataclass
class Plan:
    path: Path
    name: str
    digest: str
    model: SuiteModel
    platforms: dict[str, Entry]
    workloads: dict[str, Workload]
    benchmarks: dict[str, Benchmark]
    cells: list[Cell] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # incompatible workload/benchmark pairs, said once
    lines: LineMap = field(default_factory=LineMap)

    def repetitions(self, bench: Benchmark) -> int:
        return bench.options.repetitions or self.model.repetitions

    def trials(self, cell: Cell) -> int:
        """Launches or tool runs the cell makes, warm-ups included (for progress and estimates)."""
        b = self.benchmarks[cell.benchmark]
        return (b.options.warmup + self.repetitions(b)) * len(b.points())

    def groups(self) -> dict[tuple[str, str], list[Cell]]:
        """Cells by (platform, workload), in matrix order: one group shares a load instance."""
        out: dict[tuple[str, str], list[Cell]] = {}
        for cell in self.cells:
            out.setdefault((cell.platform, cell.workload), []).append(cell)
        return out

    def cold(self, cells: list[Cell]) -> list[Cell]:
        return [c for c in cells if isinstance(self.benchmarks[c.benchmark], ColdStartBenchmark)]

    def load(self, cells: list[Cell]) -> list[Cell]:
        return [c for c in cells if isinstance(self.benchmarks[c.benchmark], LoadBenchmark)]


def _entries(section: str, raw: dict, registry: Registry, source: str, lines: LineMap, errors: list[str],
             base_dir: Path) -> dict[str, Entry]:
    out = {}
    for name, options in raw.items():
        options = dict(options or {})
        kind = options.pop("kind", name)
        loc = (section, name)
        try:
            cls = registry.get(str(kind))
        except UnknownKind as exc:
            where = lines.line_of(loc + ("kind",))
            errors.append(f"{source}:{where}: {dotted(loc + ('kind',))}: {exc}")
            continue
        try:
            opts = cls.Options.model_validate(options, context={"base_dir": base_dir, "source": source})
        except ValidationError as exc:
            errors.extend(validation_errors(exc, source, lines, loc, model=cls.Options))
            continue
        out[name] = Entry(name, str(kind), cls, opts)
    return out


def load_plan(path: Path | str) -> Plan:
    path = Path(path)
    source = str(path)
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise_if([f"{source}:1: the suite must be a mapping with name, platforms, workloads, benchmarks"])
    try:
        model = SuiteModel.model_validate(data)
    except ValidationError as exc:
        raise_if(validation_errors(exc, source, lines, model=SuiteModel))
    errors: list[str] = []
    base = path.resolve().parent
    platforms = _entries("platforms", model.platforms, Platform.registry, source, lines, errors, base)
    workload_entries = _entries("workloads", model.workloads, Workload.registry, source, lines, errors, base)
    bench_entries = _entries("benchmarks", model.benchmarks, Benchmark.registry, source, lines, errors, base)
    raise_if(errors)
    workloads = {n: e.cls(n, e.options) for n, e in workload_entries.items()}
    benchmarks = {n: e.cls(n, e.options) for n, e in bench_entries.items()}

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
                wl = workloads[w]
                if bench.workloads and wl.kind not in bench.workloads:
                    skipped.append(f"{b} does not drive {w} (it drives {', '.join(bench.workloads)})")
                    continue
                wl.add_needs(bench.workload_needs())
                for p in m.platforms:
                    cell = Cell(p, w, b)
                    if cell not in cells:
                        cells.append(cell)
    raise_if(errors)
    if not cells:
        raise_if([f"{source}:{lines.line_of(('matrix',)) or 1}: matrix: no benchmark in the matrix can drive any of "
                  f"its workloads ({'; '.join(dict.fromkeys(skipped))})"])
    return Plan(path, model.name, sha256_file(path), model, platforms, workloads, benchmarks, cells,
                list(dict.fromkeys(skipped)), lines)
