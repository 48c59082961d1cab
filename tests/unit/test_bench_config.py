"""Benchmark options are validated when the suite loads: one line naming file:line and field."""

from __future__ import annotations

import pytest

from orchestrator.plan import load_plan
from orchestrator.errors import ConfigError

from helpers import run_cli

SUITE = """\
name: b
repetitions: 2
platforms:
  native: {{}}
workloads:
  netserver: {{}}
  nginx: {{}}
  memcached: {{}}
  sysbench: {{}}
benchmarks:
  np:
    kind: netperf
{netperf}
  web:
    kind: wrk
{wrk}
  mc:
    kind: memaslap
{memaslap}
  sys:
    kind: syscalls
{syscalls}
"""
DEFAULTS = {
    "netperf": "    tests: [TCP_STREAM, UDP_RR]\n    message_sizes: [64, 1024]\n    length: 2",
    "wrk": "    files: [4k.bin]\n    connections: [1, 10]\n    duration: 2",
    "memaslap": "    concurrency: [8]\n    duration: 2",
    "syscalls": "    tests: [gettimeofday]\n    calls: 1000",
}
# Line numbers of the option lines above, for the expected file:line.
LINE = {"netperf": 13, "wrk": 18, "memaslap": 23, "syscalls": 27}


def suite(tmp_path, **override) -> str:
    p = tmp_path / "s.yaml"
    p.write_text(SUITE.format(**{**DEFAULTS, **override}))
    return str(p)


def error_of(path: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load_plan(path)
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1, msg
    return msg


def test_good_options_load_and_expand_sweeps(tmp_path):
    s = load_plan(suite(tmp_path))
    cells = {(c.workload, c.benchmark) for c in s.cells}
    assert cells == {("netserver", "np"), ("nginx", "web"), ("memcached", "mc"), ("sysbench", "sys")}
    from orchestrator.runner import Runner  # noqa: F401  (the runner builds benchmarks the same way)

    np = s.benchmarks["np"]
    assert len(np.points()) == 4 and {"test": "UDP_RR", "message_size": 1024} in np.points()
    web = s.benchmarks["web"]
    assert web.points() == [{"file": "4k.bin", "connections": 1}, {"file": "4k.bin", "connections": 10}]


@pytest.mark.parametrize("bench, text, field, words", [
    ("netperf", "    tests: [TCP_STREAM]\n    message_sizes: []", "benchmarks.np.message_sizes", "at least 1"),
    ("netperf", "    tests: [TCP_STREAM]\n    message_sizes: [-1]", "benchmarks.np.message_sizes", "out of range"),
    ("netperf", "    tests: [TCP_STREAM]\n    message_sizes: [0]", "benchmarks.np.message_sizes", "out of range"),
    ("netperf", "    tests: [UDP_RR]\n    message_sizes: [1024, 70000]", "benchmarks.np.message_sizes", "1..65507"),
    ("netperf", "    tests: [TCP_STREAM, SCTP_RR]", "benchmarks.np.tests[1]", "TCP_STREAM"),
    ("netperf", "    tests: [TCP_RR]\n    length: 0", "benchmarks.np.length", "greater than or equal to 1"),
    ("netperf", "    tests: [TCP_RR]\n    length: 60\n    timeout: 30", "benchmarks.np", "must exceed length"),
    ("netperf", "    tests: [TCP_RR]\n    mesage_sizes: [1]", "benchmarks.np.mesage_sizes", "unknown field"),
    ("wrk", "    connections: []", "benchmarks.web.connections", "at least 1"),
    ("wrk", "    connections: [10, -4]", "benchmarks.web.connections", "1..10000"),
    ("wrk", "    files: [4k.bin, 5q]", "benchmarks.web.files", "'5q' is not a size"),
    ("wrk", "    files: [4k, 4k.bin]", "benchmarks.web.files", "listed twice"),
    ("memaslap", "    concurrency: [0]", "benchmarks.mc.concurrency", "1..4096"),
    ("memaslap", "    set_ratio: 0\n    get_ratio: 0", "benchmarks.mc", "cannot both be 0"),
    ("memaslap", "    value_sizes: [2000000]", "benchmarks.mc.value_sizes", "1..1048576"),
    ("syscalls", "    tests: [gettimeofday, fork]", "benchmarks.sys.tests[1]", "'gettimeofday'"),
    ("syscalls", "    calls: 0", "benchmarks.sys.calls", "greater than or equal to 1"),
])
def test_bad_options_name_file_line_and_field(tmp_path, bench, text, field, words):
    path = suite(tmp_path, **{bench: text})
    msg = error_of(path)
    prefix = f"{path}:"
    assert msg.startswith(prefix), msg
    line, _, rest = msg[len(prefix):].partition(": ")
    assert line.isdigit() and LINE[bench] - 1 <= int(line) <= LINE[bench] + 3, msg
    assert rest.startswith(f"{field}: ") or rest.startswith(f"{field}.") or rest.startswith(field), msg
    assert words in msg, msg


@pytest.mark.parametrize("bench, text, words", [
    ("netperf", "    tests: [UDP_RR]\n    message_sizes: [65508]", "1..65507"),
    ("netperf", "    tests: [TCP_NOPE]", "benchmarks.np.tests[0]"),
    ("wrk", "    connections: [0]", "benchmarks.web.connections"),
])
def test_cli_refuses_bad_options_in_one_line(tmp_path, bench, text, words):
    path = suite(tmp_path, **{bench: text})
    res = run_cli("run", path, timeout=60)
    assert res.returncode == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"testbed: error: {path}:") and words in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_tool_versions_are_read_on_the_client_host():
    """Provenance names the load generator the client host runs: asked through that host."""
    from orchestrator.bench.netperf import Netperf
    from orchestrator.bench.redis_benchmark import RedisBenchmark
    from orchestrator.hosts.local import LocalHost

    class NoTools(LocalHost):
        def which(self, tool):
            return None

    bench = RedisBenchmark("rb", RedisBenchmark.Options())
    assert bench.versions(LocalHost())["redis-benchmark"].startswith("redis-benchmark 7.")
    assert bench.versions(NoTools()) == {"redis-benchmark": "missing"}
    assert "2.7.0" in Netperf("np", Netperf.Options()).versions(LocalHost())["netperf"]
