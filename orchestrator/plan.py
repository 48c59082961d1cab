"""A suite resolved once into named objects: the Plan the runner executes.

load_plan() reads a suite file (config/suite.py checks its structure), looks every entry's
kind up in the registries, validates its options against that kind's model (paths in options
are relative to the suite file), expands the matrix into cells and constructs the workloads and
benchmarks with their entry names. Everything downstream is keyed by entry names, so two
variants of one kind (`redis-tuned: {kind: redis}`) are simply two entries.

A `scale` (a named overlay under `scales:`) is merged into the suite before it is validated;
a paper suite's claims and published numbers are checked against the suite's platforms and the
metrics its benchmarks produce (paper_errors).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .bench.base import Benchmark, ColdStartBenchmark, LoadBenchmark
from .config.papers import claim_ids_unique, paper_provenance
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


# Rough seconds from launch to ready and back (for `run --check`'s estimate), by platform kind; VMs
# and unikernels under KVM and under TCG. Measured on a 2-CPU host; a guide, not a promise.
LAUNCH_SECONDS = {"native": 0.2, "runc": 0.6, "oci": 0.6, "gvisor": 1.2}
GUEST_SECONDS = {"kvm": 2.0, "tcg": 6.0}
GUEST_SLOWDOWN = {"kvm": 1.5, "tcg": 8.0}  # a fixed number of operations against a guest takes this much longer
LOAD_RUN_OVERHEAD_S = 0.3  # per tool run: start, output, store
DEFAULT_RUN_S = 5.0  # a benchmark that cannot say how long it runs


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
    scale: str | None = None  # the overlay of `scales:` merged in, if any

    def run_provenance(self) -> dict:
        """What the run records of its suite beyond the file's hash: the scale, the paper blocks (so
        `testbed claims` and `report` judge the claims the run actually ran with)."""
        m = self.model
        return {**({"scale": self.scale} if self.scale else {}), **paper_provenance(m.paper, m.published, m.claims)}

    def repetitions(self, bench: Benchmark) -> int:
        return bench.options.repetitions or self.model.repetitions

    def trials(self, cell: Cell) -> int:
        """Launches or tool runs the cell makes, warm-ups included (for progress and estimates)."""
        b = self.benchmarks[cell.benchmark]
        return (b.options.warmup + self.repetitions(b)) * len(b.points())

    def kept_runs(self, cell: Cell) -> int:
        """Launches or tool runs whose samples are kept (warm-ups excluded)."""
        b = self.benchmarks[cell.benchmark]
        return self.repetitions(b) * len(b.points())

    def launch_seconds(self, platform: str, accel: str) -> float:
        return LAUNCH_SECONDS.get(self.platforms[platform].kind, GUEST_SECONDS[accel])

    def estimate_seconds(self, accel: str = "kvm", cells: list[Cell] | None = None) -> float:
        """About how long the run takes (image builds on a cold cache not included)."""
        total = 0.0
        for (platform, _), group in self.groups().items():
            group = [c for c in group if cells is None or c in cells]
            launch = self.launch_seconds(platform, accel)
            for cell in self.cold(group):
                total += self.trials(cell) * launch
            load = self.load(group)
            if load:
                total += launch
            guest = self.platforms[platform].kind not in LAUNCH_SECONDS
            for cell in load:
                b = self.benchmarks[cell.benchmark]
                slow = GUEST_SLOWDOWN[accel] if guest and b.bound_by_count() else 1.0
                per = sum((b.expected_seconds(p) or DEFAULT_RUN_S) * slow + LOAD_RUN_OVERHEAD_S for p in b.points())
                total += per * (b.options.warmup + self.repetitions(b))
        return total

    def has_guests(self) -> bool:
        return any(self.platforms[c.platform].kind not in LAUNCH_SECONDS for c in self.cells)

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


def _merge(base: dict, overlay: dict, loc: tuple, origin: tuple, lines: LineMap) -> None:
    """Deep-merge overlay into base (mappings merge, anything else replaces); an overridden value's
    line becomes the overlay's, so an error in it points at the scale that set it."""
    for key, value in overlay.items():
        here = loc + (key,)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, here, origin + (key,), lines)
            continue
        base[key] = copy.deepcopy(value)
        for k in [k for k in lines if k[:len(here)] == here]:
            del lines[k]
        for k, line in list(lines.items()):
            if k[:len(origin) + 1] == origin + (key,):
                lines[here + k[len(origin) + 1:]] = line


def apply_scale(data: dict, lines: LineMap, scale: str, source: str) -> dict:
    """The suite with `scales.<scale>` merged in."""
    scales = data.get("scales")
    if not isinstance(scales, dict) or scale not in scales:
        have = ", ".join(scales) if isinstance(scales, dict) and scales else "none"
        raise_if([f"{source}:{lines.line_of(('scales',)) or 1}: --scale {scale}: the suite has no such scale "
                  f"(scales: {have})"])
    assert isinstance(scales, dict)
    overlay = scales[scale]
    if not isinstance(overlay, dict):
        raise_if([f"{source}:{lines.line_of(('scales', scale))}: scales.{scale}: expected a mapping of settings"])
    out = copy.deepcopy(data)
    _merge(out, overlay, (), ("scales", scale), lines)
    return out


def _name_error(source: str, lines: LineMap, loc: tuple, name: str, what: str, known) -> str:
    return (f"{source}:{lines.line_of(loc)}: {dotted(loc)}: {name!r} is not {what} of this suite; expected one of "
            f"{', '.join(known) or '(none)'}")


def paper_errors(model: SuiteModel, platforms: dict, workloads: dict, benchmarks: dict[str, Benchmark],
                 cells: list[Cell], source: str, lines: LineMap) -> list[str]:
    """Claims and published numbers that name a platform, workload, benchmark or metric the suite lacks."""
    errors: list[str] = []

    def produced(metric: str, workload: str | None, benchmark: str | None) -> list[Cell]:
        return [c for c in cells if benchmarks[c.benchmark].produces(metric)
                and (workload is None or c.workload == workload) and (benchmark is None or c.benchmark == benchmark)]

    def check(loc: tuple, metric: str, workload: str | None, benchmark: str | None,
              named: list[tuple[tuple, str]]) -> None:
        ok = True
        if workload is not None and workload not in workloads:
            errors.append(_name_error(source, lines, loc + ("workload",), workload, "a workload", workloads))
            ok = False
        if benchmark is not None and benchmark not in benchmarks:
            errors.append(_name_error(source, lines, loc + ("benchmark",), benchmark, "a benchmark", benchmarks))
            ok = False
        for ploc, p in named:
            if p not in platforms:
                errors.append(_name_error(source, lines, loc + ploc, p, "a platform", platforms))
                ok = False
        if not ok:
            return
        found = produced(metric, workload, benchmark)
        if not found:
            scope = " ".join(x for x in (workload, benchmark) if x) or "this suite"
            makes = sorted({m for b in benchmarks.values() for m in b.metrics})
            errors.append(f"{source}:{lines.line_of(loc + ('metric',))}: {dotted(loc + ('metric',))}: no benchmark "
                          f"of {scope} produces {metric!r}; they produce {', '.join(makes) or 'nothing'}")
            return
        for ploc, p in named:
            if not any(c.platform == p for c in found):
                errors.append(f"{source}:{lines.line_of(loc + ploc)}: {dotted(loc + ploc)}: the matrix measures "
                              f"{metric} on {', '.join(dict.fromkeys(c.platform for c in found))}, not on {p!r}")

    named: list[tuple[tuple, str]]
    loc: tuple
    for i, claim in enumerate(model.claims):
        loc = ("claims", i)
        if claim.kind == "order":
            key = "increasing" if claim.increasing is not None else "decreasing"
            named = [((key, j), p) for j, p in enumerate(claim.platforms)]
        else:
            named = [(("platform",), claim.platform or ""), (("baseline",), claim.baseline or "")]
        check(loc, claim.metric, claim.workload, claim.benchmark, named)
    for i in claim_ids_unique(model.claims):
        loc = ("claims", i, "id")
        errors.append(f"{source}:{lines.line_of(loc)}: {dotted(loc)}: claim id {model.claims[i].id!r} is used twice; "
                      f"give each claim its own id")
    if model.published is not None:
        for i, v in enumerate(model.published.values):
            if v.ours is not None:
                loc = ("published", "values", i, "ours")
                check(loc, v.ours.metric, v.ours.workload, v.ours.benchmark, [(("platform",), v.ours.platform)])
    return errors


def load_plan(path: Path | str, *, scale: str | None = None) -> Plan:
    path = Path(path)
    source = str(path)
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise_if([f"{source}:1: the suite must be a mapping with name, platforms, workloads, benchmarks"])
    if scale is not None:
        data = apply_scale(data, lines, scale, source)
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
    raise_if(paper_errors(model, platforms, workloads, benchmarks, cells, source, lines))
    digest = sha256_file(path)
    if scale is not None:  # the same file at another scale is another suite (resume refuses to mix them)
        digest = hashlib.sha256(f"{digest}:scale={scale}".encode()).hexdigest()
    return Plan(path, model.name, digest, model, platforms, workloads, benchmarks, cells,
                list(dict.fromkeys(skipped)), lines, scale)
