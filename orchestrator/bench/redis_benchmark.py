"""redis-benchmark: SET/GET requests per second and latency percentiles from its --csv output."""

from __future__ import annotations

import csv
import io
from typing import Literal

from pydantic import Field, field_validator

from ..tools import Tool
from .base import BenchmarkOptions, ClientSide, LoadBenchmark, Measurement, Target

# redis-benchmark 7 CSV columns -> (metric, unit)
CSV_METRICS = {
    "rps": ("requests_per_s", "req/s"),
    "avg_latency_ms": ("latency_avg_ms", "ms"),
    "p50_latency_ms": ("latency_p50_ms", "ms"),
    "p95_latency_ms": ("latency_p95_ms", "ms"),
    "p99_latency_ms": ("latency_p99_ms", "ms"),
    "max_latency_ms": ("latency_max_ms", "ms"),
}


class RedisBenchmarkOptions(BenchmarkOptions):
    tests: list[Literal["set", "get", "incr", "lpush", "rpush", "lpop", "rpop", "sadd", "hset", "ping_inline",
                        "ping_mbulk", "mset"]] = Field(default_factory=lambda: ["set", "get"], min_length=1)  # type: ignore[arg-type]  # literal list
    requests: list[int] = Field(default_factory=lambda: [20000], min_length=1)
    clients: list[int] = Field(default_factory=lambda: [50], min_length=1)
    value_size: int = Field(128, ge=1, le=1 << 20)
    pipeline: int = Field(1, ge=1)
    threads: int = Field(1, ge=1)

    @field_validator("requests", "clients")
    @classmethod
    def positive(cls, values: list[int]) -> list[int]:
        if any(v <= 0 for v in values):
            raise ValueError("every value of the sweep must be a positive integer")
        return values


def parse_csv(text: str) -> dict[str, dict[str, float]]:
    """{'SET': {'rps': ..., 'p99_latency_ms': ...}, ...} from redis-benchmark --csv output."""
    rows = list(csv.reader(io.StringIO(text.strip())))
    if not rows or rows[0][:2] != ["test", "rps"]:
        raise ValueError(f"not redis-benchmark CSV output: {text.strip()[:120]!r}")
    header = rows[0]
    out = {}
    for row in rows[1:]:
        if len(row) != len(header):
            raise ValueError(f"truncated CSV row: {row}")
        out[row[0]] = {k: float(v) for k, v in zip(header[1:], row[1:])}
    return out


class RedisBenchmark(LoadBenchmark, kind="redis-benchmark"):
    Options = RedisBenchmarkOptions
    options: RedisBenchmarkOptions
    workloads = ("redis",)
    tools = (Tool("redis-benchmark", "redis-tools", ("redis-benchmark", "--version"), "redis-benchmark benchmark"),)
    metrics = tuple(m for m, _ in CSV_METRICS.values())

    def bound_by_count(self) -> bool:
        return True

    def expected_seconds(self, point: dict) -> float:
        return len(self.options.tests) * point["requests"] / 20000  # ~20k req/s per test on a small host

    def sweep(self):
        return {"requests": self.options.requests, "clients": self.options.clients}

    def run(self, point: dict, target: Target, client: ClientSide) -> list[Measurement]:
        o = self.options
        argv = ["redis-benchmark", "-h", target.address, "-p", str(target.port), "-n", str(point["requests"]),
                "-c", str(point["clients"]), "-d", str(o.value_size), "-P", str(o.pipeline),
                "--threads", str(o.threads), "-t", ",".join(o.tests), "--csv"]
        params = {**point, "value_size": o.value_size, "pipeline": o.pipeline}
        def failed(reason: str) -> list[Measurement]:
            return [Measurement.failed("requests_per_s", "req/s", reason, {**params, "test": t.upper()}) for t in o.tests]

        def parse(result) -> list[Measurement]:
            parsed = parse_csv(result.stdout)
            out = []
            for test in o.tests:
                row = parsed.get(test.upper())
                if row is None:
                    out.append(Measurement.failed("requests_per_s", "req/s", f"no {test.upper()} row in output",
                                                  {**params, "test": test.upper()}))
                    continue
                for column, (metric, unit) in CSV_METRICS.items():
                    if column in row:
                        out.append(Measurement(metric, row[column], unit, {**params, "test": test.upper()}))
            return out

        return client.measure(argv, timeout=o.timeout, label=f"redis-benchmark-n{point['requests']}-c{point['clients']}",
                              failed=failed, parse=parse)
