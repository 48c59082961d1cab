"""Benchmarks register by subclassing bench.base.ColdStartBenchmark or LoadBenchmark with a kind."""

from .base import Benchmark, BenchmarkOptions, ClientSide, ColdStartBenchmark, LoadBenchmark, Measurement, Target

__all__ = ["Benchmark", "BenchmarkOptions", "ClientSide", "ColdStartBenchmark", "LoadBenchmark", "Measurement",
           "Target"]
