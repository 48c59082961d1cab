"""Every flag on synthetic data: too short, inconsistent (Little's law), cliff, too good, overlap."""

from __future__ import annotations

from results_data import add, begin, open_store

from orchestrator.results.summary import Group, summarize_rows


def groups(store, run="r1") -> list[Group]:
    return summarize_rows(list(store.samples(run)))


def find(gs: list[Group], metric: str, **point) -> Group:
    for g in gs:
        if g.metric == metric and all(str(g.point.get(k)) == str(v) for k, v in point.items()):
            return g
    raise AssertionError(f"no group {metric} {point}")


def names(g: Group, platform: str) -> list[str]:
    return g.per_platform[platform].flag_names()


def detail(g: Group, platform: str, name: str) -> str:
    return next(f.detail for f in g.per_platform[platform].flags if f.name == name)


def test_littles_law_violation_is_inconsistent_and_names_both_numbers(tmp_path):
    # The wrk run: 1 connection, 18,756 requests in 2.01 s (9,331 req/s) but a 552 us mean latency.
    store = open_store(tmp_path / "r.sqlite")
    begin(store, "r1")
    params = {"file": "4k.bin", "connections": 1, "threads": 1, "duration_s": 2}
    add(store, "r1", "native", "requests_per_s", [9331.0] * 5, kind="wrk", params=params)
    add(store, "r1", "native", "latency_avg_ms", [0.552] * 5, kind="wrk", unit="ms", params=params)
    ok = {**params, "connections": 10, "threads": 2}  # 9,331 x 0.9 ms = 8.4 in flight <= 10: consistent
    add(store, "r1", "native", "requests_per_s", [9331.0, 9400, 9200, 9350, 9300], kind="wrk", params=ok)
    add(store, "r1", "native", "latency_avg_ms", [0.9, 0.91, 0.92, 0.9, 0.89], kind="wrk", unit="ms", params=ok)
    gs = groups(store)
    bad = find(gs, "requests_per_s", connections=1)
    assert "inconsistent" in names(bad, "native")
    d = detail(bad, "native", "inconsistent")
    assert "9,331" in d and "0.552" in d and "5.2 in flight" in d and "1 connection" in d
    assert "inconsistent" in names(find(gs, "latency_avg_ms", connections=1), "native")
    assert "inconsistent" not in names(find(gs, "requests_per_s", connections=10), "native")


def test_vm_at_60_connections_implying_104_in_flight(tmp_path):
    store = open_store(tmp_path / "r.sqlite")
    begin(store, "r1")
    params = {"file": "4k.bin", "connections": 60, "threads": 2, "duration_s": 5}
    add(store, "r1", "vm", "requests_per_s", [5200.0, 5100, 5300, 5250, 5150], kind="wrk", params=params)
    add(store, "r1", "vm", "latency_avg_ms", [20.0, 20.4, 19.6, 20.1, 19.9], kind="wrk", unit="ms", params=params)
    assert "104.0 in flight" in detail(find(groups(store), "requests_per_s"), "vm", "inconsistent")


def test_quantized_zero_spread_redis_run_is_too_short(tmp_path):
    # 3,000 requests in 28 ms: 107,143 req/s every time; "CV 0.0%" is the clock, not precision.
    store = open_store(tmp_path / "r.sqlite")
    begin(store, "r1")
    params = {"requests": 3000, "clients": 50, "test": "SET", "value_size": 128, "pipeline": 1}
    add(store, "r1", "native", "requests_per_s", [107143.0] * 5, kind="redis-benchmark", params=params)
    add(store, "r1", "native", "latency_avg_ms", [0.3] * 5, kind="redis-benchmark", unit="ms", params=params)
    g = find(groups(store), "requests_per_s")
    s = g.per_platform["native"]
    assert "too short" in names(g, "native") and "28 ms" in detail(g, "native", "too short")
    assert s.ci_low is None and "zero spread" in s.ci_reason  # and no [107,143–107,143] interval


def test_long_enough_redis_run_is_not_too_short(tmp_path):
    store = open_store(tmp_path / "r.sqlite")
    begin(store, "r1")
    params = {"requests": 200000, "clients": 50, "test": "SET", "value_size": 128, "pipeline": 1}
    add(store, "r1", "native", "requests_per_s", [100000.0, 101000, 99000, 100500, 99500], kind="redis-benchmark",
        params=params)
    assert names(find(groups(store), "requests_per_s"), "native") == []


def test_memaslap_log2_bucket_zero_spread_is_too_short(tmp_path):
    store = open_store(tmp_path / "r.sqlite")
    begin(store, "r1")
    params = {"concurrency": 16, "value_size": 128, "duration_s": 5}
    add(store, "r1", "native", "ops_per_s", [50000.0, 50500, 49800, 50100, 50200], kind="memaslap", unit="ops/s",
        params=params)
    add(store, "r1", "native", "latency_p99_le_us", [1024.0] * 5, kind="memaslap", unit="us", params=params)
    gs = groups(store)
    assert "zero spread" in detail(find(gs, "latency_p99_le_us"), "native", "too short")
    assert names(find(gs, "ops_per_s"), "native") == []
    # a count that is always zero is not a quantized measurement
    add(store, "r1", "native", "socket_errors", [0.0] * 5, kind="memaslap", unit="count", params=params)
    assert names(find(groups(store), "socket_errors"), "native") == []
    # nor is a percentage of events that never happened (no retransmission in any run)
    add(store, "r1", "native", "tcp_retrans_pct_server", [0.0] * 5, kind="memaslap", unit="%", params=params)
    assert names(find(groups(store), "tcp_retrans_pct_server"), "native") == []


def test_cliff_along_a_sweep(tmp_path):
    # gVisor serving 64k files: 340x below 16k, a timeout cliff; native scales with the file size.
    store = open_store(tmp_path / "r.sqlite")
    begin(store, "r1")
    for platform, rates in {"gvisor": [9000.0, 8000.0, 23.5], "native": [30000.0, 20000.0, 6000.0]}.items():
        for f, rate in zip(["4k.bin", "16k.bin", "64k.bin"], rates):
            add(store, "r1", platform, "requests_per_s", [rate * (1 + d) for d in (0, 0.01, -0.01, 0.02, -0.02)],
                kind="wrk", params={"file": f, "connections": 10, "threads": 2, "duration_s": 5})
    gs = groups(store)
    g64 = find(gs, "requests_per_s", file="64k.bin")
    assert "cliff" in names(g64, "gvisor") and "340x worse than at file=16k.bin" in detail(g64, "gvisor", "cliff")
    assert "115 requests" in detail(g64, "gvisor", "too short")  # 23.5 req/s for 5 s: a p99 of ~115 requests
    assert names(g64, "native") == []
    assert all(not names(find(gs, "requests_per_s", file=f), "gvisor") for f in ("4k.bin", "16k.bin"))


def test_latency_growing_with_connections_is_not_a_cliff(tmp_path):
    store = open_store(tmp_path / "r.sqlite")
    begin(store, "r1")
    for conns, lat in ((1, 0.1), (10, 1.2), (60, 7.0)):  # closed loop at saturation: latency ~ connections
        add(store, "r1", "native", "latency_p99_ms", [lat * (1 + d) for d in (0, 0.01, -0.01, 0.02, -0.02)],
            kind="wrk", unit="ms", params={"file": "4k.bin", "connections": conns, "threads": min(conns, 2),
                                            "duration_s": 5})
    assert all(not names(g, "native") for g in groups(store))


def test_too_good_against_native_by_kind(tmp_path):
    store = open_store(tmp_path / "r.sqlite")
    begin(store, "r1")
    add(store, "r1", "host", "throughput_mbps", [1000.0, 1010, 990], unit="Mbit/s", platform_kind="native")
    add(store, "r1", "unikernel", "throughput_mbps", [9000.0, 9100, 8900], unit="Mbit/s")
    add(store, "r1", "runc", "throughput_mbps", [980.0, 1000, 990], unit="Mbit/s")
    g = groups(store)[0]
    assert names(g, "unikernel") == ["too good"] and "9.0x native (host)" in detail(g, "unikernel", "too good")
    assert names(g, "runc") == [] and names(g, "host") == []


def test_overlap_from_provenance(tmp_path):
    store = open_store(tmp_path / "r.sqlite")
    begin(store, "r1")
    quiet = {"interference": {"loadavg": [0.1, 0.1, 0.1], "overlap": []}}
    busy = {"interference": {"loadavg": [2.1, 1.0, 0.5], "overlap": ["b7c9e1"]}}
    add(store, "r1", "native", "requests_per_s", [130000.0, 69500, 70000, 131000, 129000],
        per_rep_prov=[quiet, busy, busy, quiet, quiet])
    add(store, "r1", "runc", "requests_per_s", [120000.0] * 2, per_rep_prov=[quiet, quiet])
    g = groups(store)[0]
    assert names(g, "native") == ["overlap"]
    assert "2 of 5 samples" in detail(g, "native", "overlap") and "b7c9e1" in detail(g, "native", "overlap")
    assert names(g, "runc") == []


def test_disjoint_intervals_are_ranked_not_called_too_spread(tmp_path):
    store = open_store(tmp_path / "r.sqlite")
    begin(store, "r1")
    for p, vals in {"native": [27.9, 22.0, 35.0, 30.1, 25.2], "runc": [67.8, 50.0, 90.0, 60.2, 75.5],
                    "gvisor": [730.0, 600.0, 900.0, 650.0, 800.0],
                    "vm": [5545.0, 4000.0, 7000.0, 5000.0, 6500.0]}.items():
        add(store, "r1", p, "startup_ms", vals, unit="ms", benchmark="cold-start", kind="startup")
    (g,) = groups(store)
    assert g.notes == ["w cold-start startup_ms: native 27.90 < runc 67.80 < gvisor 730.0 < vm 5,545 ms "
                       "(lower is better)"]


def test_inconclusive_ranking_note_gives_repetitions(tmp_path):
    store = open_store(tmp_path / "r.sqlite")
    begin(store, "r1")
    add(store, "r1", "a", "requests_per_s", [100.0, 104, 96])
    add(store, "r1", "b", "requests_per_s", [101.0, 105, 97])
    (g,) = groups(store)
    assert g.notes[0].endswith("(higher is better)") and " ~ " in g.notes[0]
    assert "repetitions per platform would resolve a difference of this size" in g.notes[1]
