"""memcached load with memaslap (Debian 12 ships it as /usr/bin/memcaslap in libmemcached-tools).

A set:get mix of 1:10 as in the LibrettOS evaluation, over the binary protocol by default, for a
bounded time (-t) or a fixed number of operations (`operations`: memaslap's execute number, -x).
memaslap reads its key/value size distribution and command proportions from a --cfg_cmd file,
which testbed writes per run. With -S at least the run time it prints one statistics period: TPS
per command and for the total (time-bound runs only), and latency (min/avg/max/std and a log2
histogram, in microseconds). The log2 histogram only bounds a percentile: latency_p99_le_us is the
upper edge of the power-of-two bucket holding the 99th percentile, named as such.

`threads` may be a sweep; with `clients_per_thread` the concurrency follows it (LibrettOS:
threads x 10 clients) instead of being a sweep of its own.

(memtier_benchmark is not in Debian 12; memslap from the same package has no time bound and no
latency output, hence memaslap.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..errors import TestbedError
from ..tools import Tool
from .base import BenchmarkOptions, ClientSide, LoadBenchmark, Measurement, Target, sweep_values

TOOL = "memcaslap"
RE_FINAL = re.compile(r"^Run time: ([0-9.]+)s Ops: (\d+) TPS: (\d+) Net_rate: ([0-9.]+)M/s\s*$", re.M)
RE_GLOBAL = re.compile(r"^(Get|Set|Total) Statistics\n(?:.*\n)?Type .*\n(?:Period .*\n)?Global\s+(.*)$", re.M)
RE_EVENTS = re.compile(r"^(Get|Set|Total) Statistics \((\d+) events\)\n((?:\s+.*\n?)+?)(?=\n|\Z)", re.M)
RE_FIELD = re.compile(r"^\s+(Min|Max|Avg|Geo|Std):\s+([0-9.]+)\s*$", re.M)
RE_DIST = re.compile(r"^\s+(\d+):((?:\s+\d+)+)\s*$", re.M)
RE_COUNTER = re.compile(r"^(cmd_get|cmd_set|get_misses|written_bytes|read_bytes): (\d+)\s*$", re.M)
GLOBAL_COLUMNS = ("time_s", "ops", "tps", "net_mb_s", "get_miss", "min_us", "max_us", "avg_us", "std_dev", "geo_dist")


class MemcachedLoadOptions(BenchmarkOptions):
    concurrency: list[int] = Field(default_factory=lambda: [16], min_length=1, description="memaslap -c (sweep)")
    value_sizes: list[int] = Field(default_factory=lambda: [128], min_length=1, description="bytes (sweep)")
    key_size: int = Field(64, ge=16, le=250, description="bytes (memcached keys are at most 250)")
    set_ratio: int = Field(1, ge=0, le=1000)
    get_ratio: int = Field(10, ge=0, le=1000)
    threads: list[int] = Field(default_factory=lambda: [1], min_length=1,
                               description="memaslap -T (a number or a sweep); bounded by the client's CPUs")
    clients_per_thread: int | None = Field(None, ge=1, le=1024,
                                           description="concurrency = threads x this (instead of `concurrency`)")
    duration: int = Field(5, ge=1, le=3600, description="seconds per run (-t)")
    operations: int | None = Field(None, ge=1, le=1_000_000_000,
                                   description="a fixed number of operations per run (-x) instead of a duration")
    binary: bool = Field(True, description="memcached binary protocol (-B); false: text protocol")
    timeout: float = Field(60.0, gt=0)

    @field_validator("threads", mode="before")
    @classmethod
    def threads_sweep(cls, value):
        return [value] if isinstance(value, int) else value

    @field_validator("threads")
    @classmethod
    def threads_bounds(cls, values: list[int]) -> list[int]:
        return sweep_values(values, 1, 64, "threads")

    @field_validator("concurrency")
    @classmethod
    def concurrency_bounds(cls, values: list[int]) -> list[int]:
        if any(v < 1 or v > 4096 for v in values):
            raise ValueError("every value of the sweep must be a concurrency in 1..4096")
        return values

    @field_validator("value_sizes")
    @classmethod
    def value_bounds(cls, values: list[int]) -> list[int]:
        if any(v < 1 or v > 1 << 20 for v in values):
            raise ValueError("every value size must be in 1..1048576 bytes (memcached's default item size limit)")
        return values

    @model_validator(mode="after")
    def mix_and_timeout(self):
        if self.set_ratio + self.get_ratio == 0:
            raise ValueError("set_ratio and get_ratio cannot both be 0")
        if self.operations is not None and "duration" in self.model_fields_set:
            raise ValueError("give duration (seconds per run) or operations (a fixed count per run), not both")
        if self.operations is None and self.timeout < self.duration + 10:
            raise ValueError(f"timeout {self.timeout:g} s must exceed duration {self.duration} s by at least 10 s")
        if self.clients_per_thread is not None:
            if "concurrency" in self.model_fields_set:
                raise ValueError("give concurrency (a sweep) or clients_per_thread (concurrency = threads x it), "
                                 "not both")
        elif any(c < t for c in self.concurrency for t in self.threads):
            raise ValueError(f"memaslap needs concurrency >= threads ({max(self.threads)})")
        return self

    def concurrency_of(self, threads: int) -> int | None:
        return threads * self.clients_per_thread if self.clients_per_thread else None


def cfg_cmd(key_size: int, value_size: int, set_ratio: int, get_ratio: int) -> str:
    """memaslap's --cfg_cmd file: fixed key and value sizes, cmd 0 = set, 1 = get with proportions."""
    total = set_ratio + get_ratio
    return (f"key\n{key_size} {key_size} 1\nvalue\n{value_size} {value_size} 1\n"
            f"cmd\n0 {set_ratio / total:.6f}\n1 {get_ratio / total:.6f}\n")


def log2_percentile_bound(dist: list[int], q: float) -> float | None:
    """Upper edge of the log2 bucket holding the q-th percentile. memaslap's bucket i counts latencies
    in [2**(i-1), 2**i) us (its min and max land in the buckets this implies), so the edge is 2**i."""
    total = sum(dist)
    if total == 0:
        return None
    need = total * q / 100.0
    run = 0
    for i, count in enumerate(dist):
        run += count
        if run >= need:
            return float(2 ** i)
    return float(2 ** (len(dist) - 1))


def parse_memaslap(text: str) -> dict:
    """Named values from memaslap's report (run with -S); raises ValueError when it is not whole."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)  # it clears the screen before each period
    out: dict = {}
    m = RE_FINAL.search(text)
    if not m:
        raise ValueError(f"no final 'Run time: ... TPS:' line in memaslap output: {text.strip()[-160:]!r}")
    out["run_time_s"], out["ops"], out["tps"], out["net_mb_s"] = float(m.group(1)), int(m.group(2)), \
        int(m.group(3)), float(m.group(4))
    for kind, rest in RE_GLOBAL.findall(text):
        values = rest.split()
        if len(values) == len(GLOBAL_COLUMNS):
            out[f"global_{kind.lower()}"] = dict(zip(GLOBAL_COLUMNS, map(float, values)))
    for kind, events, block in RE_EVENTS.findall(text):
        stats: dict[str, Any] = {k.lower(): float(v) for k, v in RE_FIELD.findall(block)}
        dist: list[int] = []
        for start, counts in RE_DIST.findall(block):
            start = int(start)
            counts = [int(c) for c in counts.split()]
            dist += [0] * (start - len(dist))
            dist[start:start + len(counts)] = counts
        stats["events"] = int(events)
        stats["log2_dist"] = dist
        out[f"latency_{kind.lower()}"] = stats
    out.update({k: int(v) for k, v in RE_COUNTER.findall(text)})
    return out


def measurements(parsed: dict, params: dict) -> list[Measurement]:
    if parsed["ops"] == 0:
        return [Measurement.failed("ops_per_s", "ops/s", "memaslap completed no operation", params)]
    wanted = params.get("operations")
    if wanted and parsed["ops"] < wanted:
        return [Measurement.failed("ops_per_s", "ops/s", f"memaslap completed {parsed['ops']} of the {wanted} "
                                   f"operations asked for", params)]
    out = [Measurement("ops_per_s", float(parsed["tps"]), "ops/s", params)]
    for kind in ("get", "set"):
        g = parsed.get(f"global_{kind}")
        if g:
            out.append(Measurement(f"{kind}_ops_per_s", g["tps"], "ops/s", params))
    lat = parsed.get("latency_total")
    if lat is None:
        out.append(Measurement.failed("latency_avg_us", "us", "memaslap printed no latency statistics", params))
    else:
        out.append(Measurement("latency_avg_us", lat["avg"], "us", params))
        out.append(Measurement("latency_max_us", lat["max"], "us", params))
        out.append(Measurement("latency_std_us", lat["std"], "us", params))
        bound = log2_percentile_bound(lat["log2_dist"], 99)
        if bound is not None:
            out.append(Measurement("latency_p99_le_us", bound, "us", params))
    if "get_misses" in parsed:
        out.append(Measurement("get_misses", float(parsed["get_misses"]), "count", params))
    return out


class MemcachedLoad(LoadBenchmark, kind="memaslap"):
    Options = MemcachedLoadOptions
    options: MemcachedLoadOptions
    workloads = ("memcached",)
    tools = (Tool(TOOL, "libmemcached-tools", (TOOL, "--version"), "memaslap benchmark"),)
    metrics = ("ops_per_s", "get_ops_per_s", "set_ops_per_s", "latency_avg_us", "latency_max_us", "latency_std_us",
               "latency_p99_le_us", "get_misses")

    def sweep(self):
        o = self.options
        if o.clients_per_thread:
            return {"threads": o.threads, "value_size": o.value_sizes}
        return {"threads": o.threads, "concurrency": o.concurrency, "value_size": o.value_sizes}

    def points(self) -> list[dict]:
        out = super().points()
        for p in out:  # the concurrency that follows threads is part of the point (it is what was measured)
            c = self.options.concurrency_of(p["threads"])
            if c is not None:
                p["concurrency"] = c
        return out

    def bound_by_count(self) -> bool:
        return self.options.operations is not None

    def expected_seconds(self, point: dict) -> float:
        o = self.options
        return o.operations / 20000 if o.operations else float(o.duration)  # ~20k ops/s on a small host

    def run(self, point: dict, target: Target, client: ClientSide) -> list[Measurement]:
        o = self.options
        threads = max(1, min(point["threads"], client.cpu_count(), point["concurrency"]))
        bound = {"operations": o.operations} if o.operations else {"duration_s": o.duration}
        params = {**point, "threads_used": threads, "key_size": o.key_size,
                  "set_get": f"{o.set_ratio}:{o.get_ratio}", "protocol": "binary" if o.binary else "text", **bound}
        cfg = Path(client.workdir) / f"memaslap-{o.key_size}-{point['value_size']}-{o.set_ratio}-{o.get_ratio}.cfg"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(cfg_cmd(o.key_size, point["value_size"], o.set_ratio, o.get_ratio))
        # -S longer than a count-bound run: one statistics block at its end (memaslap has no "whole run" setting)
        limit = ["-x", str(o.operations), "-S", f"{int(o.timeout) + 1}s"] if o.operations else \
            ["-t", f"{o.duration}s", "-S", f"{o.duration}s"]
        argv = [TOOL, "-s", f"{target.address}:{target.port}", "-F", str(cfg), *limit, "-T", str(threads),
                "-c", str(point["concurrency"]), *(["-B"] if o.binary else [])]
        try:
            client.put_file(cfg)
        except (TestbedError, OSError) as exc:
            return [Measurement.failed("ops_per_s", "ops/s", str(exc), params)]
        return client.measure(argv, timeout=o.timeout,
                              label=f"memaslap-t{point['threads']}-c{point['concurrency']}-v{point['value_size']}",
                              failed=lambda reason: [Measurement.failed("ops_per_s", "ops/s", reason, params)],
                              parse=lambda result: measurements(parse_memaslap(result.stdout), params))
