"""wrk: HTTP requests per second, transfer rate and latency distribution against nginx's static files.

Sweeps the file (the 4K..128K files the nginx workload writes) x the number of connections;
threads are min(threads option, connections, client CPUs). `--latency` adds the 50/75/90/99%
distribution. Non-2xx/3xx responses make the run's samples failed (a server answering errors
fast is not a fast server); socket errors are reported as their own metric.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from ..sizes import static_file_name
from ..tools import Tool
from .base import BenchmarkOptions, ClientSide, LoadBenchmark, Measurement, Target

TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}  # -> ms
BINARY_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}

RE_REQUESTS = re.compile(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h), ([0-9.]+)([KMGT]?B) read\s*$", re.M)
RE_RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)\s*$", re.M)
RE_TRANSFER = re.compile(r"^Transfer/sec:\s+([0-9.]+)([KMGT]?B)\s*$", re.M)
RE_PCT = re.compile(r"^\s+(50|75|90|99)%\s+([0-9.]+)(us|ms|s|m|h)\s*$", re.M)
RE_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
RE_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
RE_LATENCY_AVG = re.compile(r"^\s+Latency\s+([0-9.]+)(us|ms|s|m|h)\s", re.M)


class StaticFilesOptions(BenchmarkOptions):
    """Options of a benchmark that fetches the nginx workload's static files (wrk, ab)."""

    files: list[str] = Field(default_factory=lambda: ["4k.bin"], min_length=1,
                             description="static files to fetch, by size (4k, 1m) or name (4k.bin)")

    @field_validator("files")
    @classmethod
    def file_names(cls, values: list[str]) -> list[str]:
        return unique_file_names(values)


class FetchesStaticFiles:
    """Mixin for a benchmark with StaticFilesOptions: the workload serves the files it fetches."""

    options: StaticFilesOptions

    def workload_needs(self) -> dict[str, list]:
        return {"files": [f.removesuffix(".bin") for f in self.options.files]}


class WrkOptions(StaticFilesOptions):
    connections: list[int] = Field(default_factory=lambda: [1, 10, 20, 40, 60], min_length=1)
    threads: int = Field(2, ge=1, le=64, description="upper bound; also bounded by connections and client CPUs")
    duration: int = Field(5, ge=1, le=600, description="seconds per run (-d)")
    request_timeout: int = Field(2, ge=1, le=60, description="wrk's own per-request timeout, seconds")
    timeout: float = Field(60.0, gt=0, description="seconds one wrk run may take before it is killed")

    @field_validator("connections")
    @classmethod
    def positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 or v > 10000 for v in values):
            raise ValueError("every value of the sweep must be a number of connections in 1..10000")
        if len(set(values)) != len(values):
            raise ValueError("a value is listed twice")
        return values

    @model_validator(mode="after")
    def timeout_covers_duration(self):
        if self.timeout < self.duration + 10:
            raise ValueError(f"timeout {self.timeout:g} s must exceed duration {self.duration} s by at least 10 s")
        return self


def unique_file_names(values: list[str]) -> list[str]:
    """The nginx workload's file names for sizes or names (4k, 1m, 4k.bin), each at most once."""
    names = [static_file_name(v) for v in values]
    if len(set(names)) != len(names):
        raise ValueError("a file is listed twice")
    return names


def to_ms(value: str, unit: str) -> float:
    return float(value) * TIME_UNITS[unit]


def parse_wrk(text: str) -> dict[str, float]:
    """Named values from wrk's report; raises ValueError when the report is not whole."""
    out: dict[str, float] = {}
    m = RE_REQUESTS.search(text)
    if not m:
        raise ValueError(f"no 'N requests in T' line in wrk output: {text.strip()[-160:]!r}")
    out["requests"] = int(m.group(1))
    out["seconds"] = to_ms(m.group(2), m.group(3)) / 1000.0
    out["bytes_read"] = float(m.group(4)) * BINARY_UNITS[m.group(5)]
    m = RE_RPS.search(text)
    if not m:
        raise ValueError("no Requests/sec line in wrk output")
    out["requests_per_s"] = float(m.group(1))
    m = RE_TRANSFER.search(text)
    if not m:
        raise ValueError("no Transfer/sec line in wrk output")
    out["transfer_mib_per_s"] = float(m.group(1)) * BINARY_UNITS[m.group(2)] / (1 << 20)
    pct = {p: to_ms(v, u) for p, v, u in RE_PCT.findall(text)}
    if set(pct) != {"50", "75", "90", "99"}:
        raise ValueError("wrk printed no complete latency distribution (was --latency given?)")
    for p, v in pct.items():
        out[f"latency_p{p}_ms"] = v
    m = RE_LATENCY_AVG.search(text)
    if m:
        out["latency_avg_ms"] = to_ms(m.group(1), m.group(2))
    m = RE_SOCKET.search(text)
    errors = [int(x) for x in m.groups()] if m else [0, 0, 0, 0]
    out.update(dict(zip(("errors_connect", "errors_read", "errors_write", "errors_timeout"), errors)))
    out["socket_errors"] = sum(errors)
    m = RE_NON2XX.search(text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    return out


METRICS = (("requests_per_s", "req/s"), ("transfer_mib_per_s", "MiB/s"), ("latency_avg_ms", "ms"),
           ("latency_p50_ms", "ms"), ("latency_p75_ms", "ms"), ("latency_p90_ms", "ms"), ("latency_p99_ms", "ms"))


def measurements(parsed: dict[str, float], params: dict) -> list[Measurement]:
    if parsed["requests"] == 0:
        return [Measurement.failed("requests_per_s", "req/s", f"wrk completed no request "
                                   f"({int(parsed['socket_errors'])} socket errors)", params)]
    if parsed["non_2xx"]:
        return [Measurement.failed("requests_per_s", "req/s", f"{int(parsed['non_2xx'])} of {int(parsed['requests'])} "
                                   f"responses were not 2xx/3xx", params)]
    out = [Measurement(metric, parsed[metric], unit, params) for metric, unit in METRICS if metric in parsed]
    out.append(Measurement("socket_errors", parsed["socket_errors"], "count", params))
    return out


class Wrk(FetchesStaticFiles, LoadBenchmark, kind="wrk"):
    Options = WrkOptions
    options: WrkOptions
    workloads = ("nginx",)
    tools = (Tool("wrk", "wrk", ("wrk", "--version"), "wrk benchmark"),)
    metrics = (*(m for m, _ in METRICS), "socket_errors")

    def expected_seconds(self, point: dict) -> float:
        return float(self.options.duration)

    def sweep(self):
        return {"file": self.options.files, "connections": self.options.connections}

    def run(self, point: dict, target: Target, client: ClientSide) -> list[Measurement]:
        o = self.options
        conns = point["connections"]
        threads = max(1, min(o.threads, conns, client.cpu_count()))
        url = f"http://{target.address}:{target.port}/{point['file']}"
        argv = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{o.duration}s", "--timeout",
                f"{o.request_timeout}s", "--latency", url]
        params = {**point, "threads": threads, "duration_s": o.duration}
        return client.measure(argv, timeout=o.timeout, label=f"wrk-{point['file']}-c{conns}",
                              failed=lambda reason: [Measurement.failed("requests_per_s", "req/s", reason, params)],
                              parse=lambda result: measurements(parse_wrk(result.stdout), params))
