"""ab (ApacheBench, apache2-utils): a fixed number of HTTP requests against nginx's static files.

wrk is time-bound; the papers' HTTP figures are often counts instead: LibrettOS fetches 10,000
requests per point, the gVisor study downloads files with wget, a fresh connection each. ab does
both: `-n N` requests, `-c C` at a time, and without `-k` a new TCP connection per request
(`keepalive: true` reuses them). `-e /dev/stdout` adds its percentile table with decimals (the
report's own table is in whole milliseconds), so p50/p90/p99 keep their resolution.

Sweeps the file x the number of requests x the concurrency. A run whose requests did not all
complete, or that got failed or non-2xx responses, is a failed sample naming the counts (a
server answering errors quickly is not a fast server).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from ..sizes import parse_size
from ..tools import Tool
from .base import ClientSide, LoadBenchmark, Measurement, Target, sweep_values
from .wrk import FetchesStaticFiles, StaticFilesOptions

RE_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9 /-]*?):\s+(.+?)\s*$", re.M)
RE_NUMBER = re.compile(r"^([0-9.]+)")
RE_CSV = re.compile(r"^(\d{1,3}),([0-9.]+)\s*$", re.M)
PERCENTILES = (50, 90, 99)


class AbOptions(StaticFilesOptions):
    requests: list[int] = Field(default_factory=lambda: [10000], min_length=1, description="ab -n (sweep)")
    concurrency: list[int] = Field(default_factory=lambda: [1], min_length=1, description="ab -c (sweep)")
    keepalive: bool = Field(False, description="reuse connections (-k); false: a fresh connection per request")
    request_timeout: int = Field(10, ge=1, le=600, description="ab -s: seconds to wait for one response")
    timeout: float = Field(120.0, gt=0, le=24 * 3600, description="seconds one ab run may take before it is killed")

    @field_validator("requests", "concurrency")
    @classmethod
    def sweep_bounds(cls, values: list[int]) -> list[int]:
        return sweep_values(values, 1, 50_000_000, "the sweep")

    @model_validator(mode="after")
    def concurrency_within_requests(self):
        if max(self.concurrency) > min(self.requests):
            raise ValueError(f"ab cannot run {max(self.concurrency)} requests at a time with only "
                             f"{min(self.requests)} requests; raise requests or lower concurrency")
        if max(self.concurrency) > 20000:
            raise ValueError("ab runs at most 20000 requests at a time")
        return self


def _number(fields: dict[str, str], key: str) -> float:
    if key not in fields:
        raise ValueError(f"no {key!r} line in ab output")
    m = RE_NUMBER.match(fields[key])
    if not m:
        raise ValueError(f"ab printed {key}: {fields[key]!r}, not a number")
    return float(m.group(1))


def parse_ab(text: str) -> dict[str, float]:
    """Named values from ab's report (and its -e percentile CSV); ValueError when it is not whole."""
    fields: dict[str, str] = {}
    for raw_name, value in RE_FIELD.findall(text):
        name = raw_name.strip()
        if name == "Time per request" and "across all concurrent requests" in value:
            name = "Time per request (all)"  # the second line of that name
        fields.setdefault(name, value)
    if "Requests per second" not in fields:
        raise ValueError(f"no 'Requests per second' line in ab output: {text.strip()[-160:]!r}")
    out = {
        "complete": _number(fields, "Complete requests"),
        "failed": _number(fields, "Failed requests"),
        "non_2xx": _number(fields, "Non-2xx responses") if "Non-2xx responses" in fields else 0.0,
        "seconds": _number(fields, "Time taken for tests"),
        "requests_per_s": _number(fields, "Requests per second"),
        "latency_avg_ms": _number(fields, "Time per request"),
        "transfer_mib_per_s": _number(fields, "Transfer rate") / 1024.0,  # ab's Kbytes are KiB
        "document_bytes": _number(fields, "Document Length"),
    }
    pct = {int(p): float(v) for p, v in RE_CSV.findall(text)}
    if pct:
        missing = [p for p in (*PERCENTILES, 100) if p not in pct]
        if missing:
            raise ValueError(f"ab's percentile table is cut short (no {missing[0]}%)")
        for p in PERCENTILES:
            if percentile_in_range(int(out["complete"]), p):
                out[f"latency_p{p}_ms"] = pct[p]
        out["latency_max_ms"] = pct[100]
    return out


def percentile_in_range(n: int, p: int) -> bool:
    """ab 2.3 reads the p-th percentile of n sorted times at index int(0.5 + n * p / 100), which is past
    the end of its array when n <= 50 / (100 - p) (p99 of 50 requests): it then prints memory, not a time."""
    return int(0.5 + n * p / 100) < n


METRICS = (("requests_per_s", "req/s"), ("transfer_mib_per_s", "MiB/s"), ("latency_avg_ms", "ms"),
           ("latency_p50_ms", "ms"), ("latency_p90_ms", "ms"), ("latency_p99_ms", "ms"), ("latency_max_ms", "ms"))


def measurements(parsed: dict[str, float], params: dict, expected_bytes: int | None = None) -> list[Measurement]:
    wanted = params["requests"]
    if parsed["complete"] < wanted:
        return [Measurement.failed("requests_per_s", "req/s", f"ab completed {int(parsed['complete'])} of "
                                   f"{wanted} requests", params)]
    bad = int(parsed["failed"] + parsed["non_2xx"])
    if bad:
        return [Measurement.failed("requests_per_s", "req/s", f"{int(parsed['failed'])} failed and "
                                   f"{int(parsed['non_2xx'])} non-2xx of {wanted} responses", params)]
    if expected_bytes is not None and int(parsed["document_bytes"]) != expected_bytes:
        return [Measurement.failed("requests_per_s", "req/s", f"the server sent {int(parsed['document_bytes'])} "
                                   f"bytes, not the file's {expected_bytes}", params)]
    return [Measurement(metric, parsed[metric], unit, params) for metric, unit in METRICS if metric in parsed]


class Ab(FetchesStaticFiles, LoadBenchmark, kind="ab"):
    Options = AbOptions
    options: AbOptions
    workloads = ("nginx",)
    tools = (Tool("ab", "apache2-utils", ("ab", "-V"), "ab benchmark"),)
    metrics = tuple(m for m, _ in METRICS)

    def sweep(self):
        o = self.options
        return {"file": o.files, "requests": o.requests, "concurrency": o.concurrency}

    def bound_by_count(self) -> bool:
        return True

    def expected_seconds(self, point: dict) -> float:
        # ~3,000 fresh-connection requests/s on a small host (more with keep-alive), plus transfer time
        per_request = 1 / 3000 + parse_size(point["file"]) / 200e6
        return point["requests"] * per_request / (point["concurrency"] ** 0.5)

    def argv(self, point: dict, target: Target) -> list[str]:
        o = self.options
        url = f"http://{target.address}:{target.port}/{point['file']}"
        return ["ab", "-q", "-r", "-n", str(point["requests"]), "-c", str(point["concurrency"]),
                "-s", str(o.request_timeout), *(["-k"] if o.keepalive else []), "-e", "/dev/stdout", url]

    def run(self, point: dict, target: Target, client: ClientSide) -> list[Measurement]:
        params = {**point, "keepalive": self.options.keepalive}
        size = parse_size(point["file"])
        label = f"ab-{point['file']}-n{point['requests']}-c{point['concurrency']}"
        return client.measure(self.argv(point, target), timeout=self.options.timeout, label=label,
                              failed=lambda reason: [Measurement.failed("requests_per_s", "req/s", reason, params)],
                              parse=lambda result: measurements(parse_ab(result.stdout), params, size))
