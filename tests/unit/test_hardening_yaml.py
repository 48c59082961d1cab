"""Hostile or mistaken suite and lab files: each is refused quickly with one `file:line:` line.

The issue's cases: a 9-level "billion laughs" suite (was 54 s to a MemoryError traceback), a
recursive alias (was a RecursionError traceback), a file of 349,525 unknown keys (was 46 MB of
errors). Through the real CLI: exit code 2, one `testbed: error:` line (or the capped list), no
traceback.
"""

from __future__ import annotations

import pytest

from orchestrator.config import yamlload
from orchestrator.config.lab import load_lab
from orchestrator.plan import load_plan
from orchestrator.errors import ConfigError

from helpers import run_cli

GOOD_TAIL = "workloads: {redis: {}}\nbenchmarks: {cold-start: {kind: startup}}\n"


def billion_laughs(levels: int = 9) -> str:
    lines = ["name: lol", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def check_cli(tmp_path, text: str | bytes, *, max_lines: int = 1) -> list[str]:
    p = tmp_path / "s.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    res = run_cli("run", "--check", str(p), timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert 1 <= len(lines) <= max_lines, res.stderr[:2000]
    assert all(line.startswith(f"testbed: error: {p}") or line.startswith("testbed: error: ... and ")
               for line in lines), lines
    return lines


def test_billion_laughs_is_refused_before_expansion(tmp_path):
    (line,) = check_cli(tmp_path, billion_laughs())
    assert "YAML aliases expand to more than" in line and "s.yaml:" in line


def test_recursive_alias_is_refused_with_its_line(tmp_path):
    (line,) = check_cli(tmp_path, "name: x\nplatforms: &x {native: *x}\n" + GOOD_TAIL)
    assert "s.yaml:2:" in line and "recursive alias" in line and "*x" in line


def test_recursive_merge_key_is_refused(tmp_path):
    (line,) = check_cli(tmp_path, "name: x\nplatforms: &x {native: {<<: *x}}\n" + GOOD_TAIL)
    assert "recursive alias" in line


def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path):
    (line,) = check_cli(tmp_path, "name: x\nplatforms: " + "[" * 2000 + "]" * 2000 + "\n")
    assert "nested more than" in line


def test_oversized_file_is_refused_by_size(tmp_path):
    text = "".join(f"k{i}: 1\n" for i in range(yamlload.MAX_FILE_BYTES // 6))
    (line,) = check_cli(tmp_path, text)
    assert "bytes; a suite or lab file is at most" in line


def test_many_unknown_keys_give_the_first_few_and_a_count(tmp_path):
    text = "".join(f"k{i}: 1\n" for i in range(5000))
    lines = check_cli(tmp_path, text, max_lines=yamlload.MAX_ERRORS + 1)
    assert len(lines) == yamlload.MAX_ERRORS + 1
    assert lines[-1].startswith("testbed: error: ... and ") and "more errors" in lines[-1]
    total = int(lines[-1].split("... and ")[1].split()[0]) + yamlload.MAX_ERRORS
    assert total == 5000 + 4  # every key unknown, and the four required fields missing


def test_not_utf8_is_one_line(tmp_path):
    (line,) = check_cli(tmp_path, b"name: \xff\xfe\n")
    assert "not UTF-8" in line


def test_a_directory_or_device_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_plan(tmp_path)
    with pytest.raises(ConfigError, match="more than"):  # stat says 0 bytes; reading is bounded anyway
        load_plan("/dev/zero")


def test_small_aliases_still_work(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\nplatforms:\n  native: &opts {cpus: [0]}\n  other: {kind: native, <<: *opts}\n" + GOOD_TAIL)
    s = load_plan(p)
    assert s.platforms["other"].options.cpus == [0] and len(s.cells) == 2


def test_alias_bound_counts_expanded_values_not_alias_uses(tmp_path):
    # 9 x 9 x 9 = 729 values from three levels is fine; the bomb is refused at the level that crosses the bound.
    p = tmp_path / "s.yaml"
    p.write_text(billion_laughs(levels=3))
    with pytest.raises(ConfigError, match="unknown field"):  # got through YAML, into validation
        load_plan(p)
    p.write_text(billion_laughs(levels=5))
    with pytest.raises(ConfigError, match="YAML aliases expand"):
        load_plan(p)


def test_lab_files_get_the_same_bounds(tmp_path):
    p = tmp_path / "lab.yaml"
    p.write_text("hosts: &h [{name: a, address: 192.0.2.1, roles: *h}]\n")
    with pytest.raises(ConfigError, match="recursive alias") as exc:
        load_lab(p)
    assert "\n" not in str(exc.value)


def test_capped_keeps_short_lists_whole():
    assert yamlload.capped(["a", "b"]) == ["a", "b"]
    out = yamlload.capped([str(i) for i in range(25)], limit=3)
    assert out == ["0", "1", "2", "... and 22 more errors like these; fix the ones above first"]
