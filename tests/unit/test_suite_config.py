"""Suite loading: valid suites expand to cells; every mistake is one line naming file:line and field."""

from __future__ import annotations

import pytest

from orchestrator.plan import load_plan
from orchestrator.errors import ConfigError

from helpers import ROOT, run_cli

GOOD = """\
name: t
repetitions: 2
platforms:
  native: {}
  fast-gvisor: {kind: gvisor, platform: ptrace}
workloads:
  redis: {maxmemory_mb: 64}
  nginx: {}
benchmarks:
  boot: {kind: startup}
  rb: {kind: redis-benchmark, requests: [1000, 2000], clients: [5]}
"""


def load(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return load_plan(p)


def error_of(tmp_path, text) -> str:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    return str(exc.value)


def test_good_suite_expands_matrix_and_skips_incompatible_pairs(tmp_path):
    s = load(tmp_path, GOOD)
    cells = {(c.platform, c.workload, c.benchmark) for c in s.cells}
    assert ("native", "redis", "rb") in cells and ("fast-gvisor", "nginx", "boot") in cells
    assert ("native", "nginx", "rb") not in cells  # redis-benchmark drives only redis
    assert any("rb does not drive nginx" in n for n in s.skipped)
    assert s.platforms["fast-gvisor"].kind == "gvisor"
    assert len(s.digest) == 64


@pytest.mark.parametrize(
    "text, line, field, words",
    [
        (GOOD.replace("fast-gvisor: {kind: gvisor", "fast-gvisor: {kind: gvsior"), 5, "platforms.fast-gvisor.kind",
         "unknown platform 'gvsior'"),
        (GOOD.replace("  nginx: {}", "  ngnix: {}"), 8, "workloads.ngnix.kind", "unknown workload 'ngnix'"),
        (GOOD.replace("maxmemory_mb: 64", "maxmemory: 64"), 7, "workloads.redis.maxmemory", "unknown field"),
        (GOOD.replace("requests: [1000, 2000]", "requests: []"), 11, "benchmarks.rb.requests", "at least 1"),
        (GOOD.replace("requests: [1000, 2000]", "requests: [1000, -5]"), 11, "benchmarks.rb.requests", "positive"),
        (GOOD.replace("repetitions: 2", "repetitions: zero"), 2, "repetitions", "integer"),
        (GOOD.replace("clients: [5]}", "clients: [5], tests: [set, fly]}"), 11, "benchmarks.rb.tests[1]", "'set'"),
        (GOOD + "lab: {subnet: 8.8.8.0/24}\n", 12, "lab.subnet", "not a private range"),
        (GOOD + "matrix: [{platforms: [native, kvm], workloads: [redis], benchmarks: [boot]}]\n", 12,
         "matrix[0].platforms[1]", "'kvm' is not defined"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, text, line, field, words):
    msg = error_of(tmp_path, text)
    first = msg.splitlines()[0]
    assert first.startswith(f"{tmp_path / 's.yaml'}:{line}: {field}: "), first
    assert words in first


def test_malformed_yaml_is_one_line(tmp_path):
    msg = error_of(tmp_path, "name: t\nplatforms: {native: {}\nworkloads: [\n")
    assert (len(msg.splitlines()) == 1 and "YAML syntax error" in msg and ":3:" in msg) or ":4:" in msg


def test_duplicate_key_is_an_error(tmp_path):
    msg = error_of(tmp_path, GOOD + "name: again\n")
    assert "s.yaml:12: name: duplicate key" in msg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_plan(tmp_path / "nope.yaml")


def test_shipped_suites_load():
    for path in sorted((ROOT / "suites").glob("*.yaml")):
        assert load_plan(path).cells, path


@pytest.mark.parametrize("text, code, words", [
    ("name: t\nplatforms: {native: {}\n", 2, "YAML syntax error"),
    (GOOD.replace("  nginx: {}", "  postgres: {}"), 2, "unknown workload 'postgres'"),
])
def test_cli_bad_input_is_one_line_and_nonzero(tmp_path, text, code, words):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    res = run_cli("run", str(p), timeout=60)
    assert res.returncode == code
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("testbed: error: ") and words in lines[0], res.stderr
    assert "Traceback" not in res.stderr
