"""Benchmark registry: kind -> class. Adding a load generator is one module and one line here."""

from .base import Benchmark, BenchmarkOptions, ClientSide, Measurement, Target
from .redis_benchmark import RedisBenchmark
from .startup import Startup

BENCHMARKS: dict[str, type[Benchmark]] = {b.kind: b for b in (Startup, RedisBenchmark)}
