"""netperf (2.7, omni tests): TCP_STREAM, TCP_MAERTS, TCP_RR and UDP_RR against a netserver instance.

Values come from netperf's omni output selectors (`-- -k SEL,SEL,...`), which print one
`NAME=VALUE` line per selector, so the parser reads named fields and never column positions.
The message size is a sweep: the send size of TCP_STREAM (`-m S`), the remote's send size of
TCP_MAERTS (`-m ,S`), request and response size of the _RR tests (`-r S,S`). The size netperf
reports back is checked against the one asked for, so a silently ignored option is a failure.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..tools import Tool
from .base import BenchmarkOptions, ClientSide, LoadBenchmark, Measurement, Target

Test = Literal["TCP_STREAM", "TCP_MAERTS", "TCP_RR", "UDP_RR"]
STREAM_TESTS = ("TCP_STREAM", "TCP_MAERTS")
UDP_MAX = 65507  # the largest UDP payload over IPv4
TCP_MAX = 1 << 20

SELECTORS = ("THROUGHPUT", "THROUGHPUT_UNITS", "TRANSACTION_RATE", "MEAN_LATENCY", "P50_LATENCY", "P90_LATENCY",
             "P99_LATENCY", "STDDEV_LATENCY", "LOCAL_SEND_SIZE", "REMOTE_SEND_SIZE", "REQUEST_SIZE", "RESPONSE_SIZE",
             "ELAPSED_TIME", "PROTOCOL", "DIRECTION")
# RR tests: selector -> (metric, unit). Latencies are netperf's, in microseconds (from its histogram, -j).
RR_METRICS = {
    "TRANSACTION_RATE": ("transactions_per_s", "trans/s"),
    "MEAN_LATENCY": ("latency_mean_us", "us"),
    "P50_LATENCY": ("latency_p50_us", "us"),
    "P90_LATENCY": ("latency_p90_us", "us"),
    "P99_LATENCY": ("latency_p99_us", "us"),
    "STDDEV_LATENCY": ("latency_stddev_us", "us"),
}
KEYVAL = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


class NetperfOptions(BenchmarkOptions):
    tests: list[Test] = Field(default_factory=lambda: ["TCP_STREAM", "TCP_RR"], min_length=1)  # type: ignore[arg-type]  # literal list
    message_sizes: list[int] = Field(default_factory=lambda: [1024], min_length=1,
                                     description="bytes: send size (_STREAM/_MAERTS) or request=response size (_RR)")
    length: int = Field(5, ge=1, le=600, description="seconds each netperf test runs (-l)")
    timeout: float = Field(60.0, gt=0, description="seconds one netperf run may take before it is killed")

    @field_validator("tests")
    @classmethod
    def unique(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("a test is listed twice")
        return values

    @field_validator("message_sizes")
    @classmethod
    def sizes(cls, values: list[int], info: ValidationInfo) -> list[int]:
        tests = info.data.get("tests") or []
        udp = [t for t in tests if t.startswith("UDP")]
        top = UDP_MAX if udp else TCP_MAX
        for v in values:
            if v < 1 or v > top:
                why = f" ({', '.join(udp)} sends one datagram per message)" if udp and v > UDP_MAX else ""
                raise ValueError(f"message size {v} is out of range; netperf accepts 1..{top} bytes here{why}")
        if len(set(values)) != len(values):
            raise ValueError("a message size is listed twice")
        return values

    @model_validator(mode="after")
    def timeout_covers_length(self):
        if self.timeout < self.length + 10:
            raise ValueError(f"timeout {self.timeout:g} s must exceed length {self.length} s by at least 10 s "
                             f"(control connection setup and result exchange)")
        return self


def parse_keyval(text: str) -> dict[str, str]:
    """{'THROUGHPUT': '4047.75', ...} from netperf's -k output; other lines (the banner) are ignored."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = KEYVAL.match(line.strip())
        if m:
            value = m.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            out[m.group(1)] = value
    return out


def number(fields: dict[str, str], key: str) -> float:
    if key not in fields:
        raise ValueError(f"netperf printed no {key}")
    try:
        v = float(fields[key])
    except ValueError:
        raise ValueError(f"netperf printed {key}={fields[key]!r}, not a number") from None
    if math.isnan(v) or math.isinf(v):
        raise ValueError(f"netperf printed {key}={fields[key]}")
    return v


def size_argv(test: str, size: int) -> list[str]:
    if test == "TCP_STREAM":
        return ["-m", str(size)]
    if test == "TCP_MAERTS":
        return ["-m", f",{size}"]  # the remote side sends: its send size
    return ["-r", f"{size},{size}"]


def measurements(test: str, size: int, fields: dict[str, str], params: dict) -> list[Measurement]:
    """Metrics of one netperf run from its selectors; raises ValueError when the output is not whole."""
    if test in STREAM_TESTS:
        key = "LOCAL_SEND_SIZE" if test == "TCP_STREAM" else "REMOTE_SEND_SIZE"
        used = int(number(fields, key))
        if used != size:
            raise ValueError(f"netperf used a send size of {used} bytes, not the {size} asked for")
        units = fields.get("THROUGHPUT_UNITS")
        if units != "10^6bits/s":
            raise ValueError(f"netperf reported throughput in {units!r}, expected 10^6bits/s")
        return [Measurement("throughput_mbps", number(fields, "THROUGHPUT"), "Mbit/s", params)]
    for key in ("REQUEST_SIZE", "RESPONSE_SIZE"):
        used = int(number(fields, key))
        if used != size:
            raise ValueError(f"netperf used a {key.lower().replace('_', ' ')} of {used} bytes, not {size}")
    out = []
    for key, (metric, unit) in RR_METRICS.items():
        value = number(fields, key)
        if key != "TRANSACTION_RATE" and value < 0:
            raise ValueError(f"netperf printed {key}={value}: no latency histogram")
        out.append(Measurement(metric, value, unit, params))
    if (out[0].value or 0) <= 0:
        raise ValueError("netperf completed no transaction")
    return out


class Netperf(LoadBenchmark, kind="netperf"):
    Options = NetperfOptions
    options: NetperfOptions
    workloads = ("netserver",)
    tools = (Tool("netperf", "netperf", ("netperf", "-V"), "netperf benchmark (non-free)"),)
    metrics = ("throughput_mbps", *(m for m, _ in RR_METRICS.values()))

    def expected_seconds(self, point: dict) -> float:
        return self.options.length + 0.5

    def uses_tcp(self, point: dict) -> bool:
        return str(point.get("test", "")).startswith("TCP")

    def sweep(self):
        return {"test": self.options.tests, "message_size": self.options.message_sizes}

    def argv(self, point: dict, target: Target) -> list[str]:
        o = self.options
        test, size = point["test"], point["message_size"]
        # -j: keep the latency histogram (needed for the percentile selectors); -f m: Mbit/s.
        return ["netperf", "-H", target.address, "-p", str(target.port), "-t", test, "-l", str(o.length), "-f", "m",
                *([] if test in STREAM_TESTS else ["-j"]), "--", "-k", ",".join(SELECTORS), *size_argv(test, size)]

    @staticmethod
    def headline(test: str) -> tuple[str, str]:
        return ("throughput_mbps", "Mbit/s") if test in STREAM_TESTS else ("transactions_per_s", "trans/s")

    def run(self, point: dict, target: Target, client: ClientSide) -> list[Measurement]:
        test, size = point["test"], point["message_size"]
        params = {"test": test, "message_size": size, "length_s": self.options.length}
        metric, unit = self.headline(test)
        return client.measure(self.argv(point, target), timeout=self.options.timeout, label=f"netperf-{test}-{size}",
                              failed=lambda reason: [Measurement.failed(metric, unit, reason, params)],
                              parse=lambda result: measurements(test, size, parse_keyval(result.stdout), params))
