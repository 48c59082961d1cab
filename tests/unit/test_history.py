"""Nightly series out of the store, and configuration fingerprints."""

from __future__ import annotations

import statistics

import pytest

from nightly_history import Lab, seed_history, seed_night
from orchestrator.errors import DataError
from orchestrator.results.fingerprint import diff, fingerprint
from orchestrator.results.history import extract_series, median_ci, open_store
from orchestrator.results.store import Store


def test_one_night_per_run_is_the_median_of_its_ok_samples(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    seed_history(store, 3)
    seed_night(store, 3, status="failed", failed={"runc/startup_ms"})  # a failed run is still a night
    seed_night(store, 4, status="running")                              # not finished: not a night
    series, runs = extract_series(store, "nightly")
    assert [r["run_id"] for r in runs] == ["n000", "n001", "n002", "n003"]
    by = {(s.key.platform, s.key.metric): s for s in series}
    native = by[("native", "startup_ms")]
    assert len(native.nights) == 4 and len(native.nights[0].samples) == 5
    assert native.nights[0].median == statistics.median(native.nights[0].samples)
    assert native.nights[0].started < native.nights[1].started
    assert by[("runc", "startup_ms")].unmeasured == ["n003"] and len(by[("runc", "startup_ms")].nights) == 3
    # the sweep point names what differs: the test of a redis-benchmark row is always shown
    assert by[("native", "requests_per_s")].key.point == "test=SET"
    assert native.key.label == "localhost nightly native redis cold-start startup_ms"


def test_configuration_segments_split_where_the_fingerprint_changes(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    seed_history(store, 3)
    for night in (3, 4):
        seed_night(store, night, lab=Lab(kernel="6.6.0"))
    s = extract_series(store, "nightly")[0][0]
    segs = s.configuration_segments()
    assert [len(x) for x in segs] == [3, 2]
    assert diff(segs[0][-1].fingerprint, segs[1][0].fingerprint) == ["host.kernel: 6.1.0-18-amd64 -> 6.6.0"]
    assert segs[0][-1].fingerprint.digest != segs[1][0].fingerprint.digest


def test_fingerprint_names_what_changed_and_ignores_what_is_context():
    run = {"server": {"host": "h", "cpu_model": "X", "cores": 2, "kernel": "6.1", "os": "Debian 12",
                      "hostname": "h", "facts_error": "ignored"}}
    sample = {"tools": {"qemu-system-x86_64": "7.2.0", "runc": "1.1"}, "image_digest": "sha256:a", "accel": "kvm",
              "suite_hash": "s1", "testbed_rev": "abc"}
    a = fingerprint(run, [sample])
    b = fingerprint(run, [{**sample, "tools": {"qemu-system-x86_64": "8.0.0", "runc": "1.1"}, "accel": "tcg",
                           "testbed_rev": "def"}])
    assert diff(a, b) == ["accel: kvm -> tcg", "tools.qemu-system-x86_64: 7.2.0 -> 8.0.0"]
    assert "host.facts_error" not in a.as_dict() and "host.hostname" not in a.as_dict()
    assert diff(a, fingerprint(run, [{k: v for k, v in sample.items() if k != "accel"}])) == ["accel: kvm -> (none)"]


def test_median_ci_from_order_statistics_says_its_coverage():
    (lo, hi), cov = median_ci([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (lo, hi) == (1.0, 5.0) and cov == pytest.approx(0.9375)  # five samples cannot reach 95%
    (lo, hi), cov = median_ci([float(x) for x in range(1, 21)])
    assert (lo, hi) == (6.0, 15.0) and cov >= 0.95
    assert median_ci([1.0]) is None


def test_bad_input_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no result store there"):
        open_store(tmp_path / "missing.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database" * 200)
    with pytest.raises(DataError, match="result store is corrupted"):
        open_store(tmp_path / "junk.sqlite")
    store = Store(tmp_path / "r.sqlite")
    with pytest.raises(DataError, match="no history"):
        extract_series(store, "nightly")
    seed_history(store, 2)
    with pytest.raises(DataError, match="--host lab9: .* hosts: localhost"):
        extract_series(store, "nightly", host="lab9")
