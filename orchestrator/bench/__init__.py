"""Benchmark registry: kind -> class. Adding a load generator is one module and one line here."""

from .base import Benchmark, BenchmarkOptions, ClientSide, Measurement, Target
from .memcached_load import MemcachedLoad
from .netperf import Netperf
from .redis_benchmark import RedisBenchmark
from .startup import Startup
from .syscalls import Syscalls
from .wrk import Wrk

BENCHMARKS: dict[str, type[Benchmark]] = {b.kind: b for b in (Startup, RedisBenchmark, Netperf, Wrk, MemcachedLoad,
                                                              Syscalls)}
