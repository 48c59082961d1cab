"""Parsers of the load generators, on output captured from real runs (tests/fixtures/<tool>/).

The fixtures were taken from runs through the runner on this project's lab network (native, runc
and gVisor instances; files named after the platform) and kept verbatim; a few are loopback runs
of the same tools for cases a healthy server never produces (non-2xx answers). Truncated inputs
are made here by cutting those real outputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.bench import memcached_load, netperf, syscalls, wrk

FIX = Path(__file__).resolve().parent.parent / "fixtures"


def fixture(tool: str, name: str) -> str:
    return (FIX / tool / name).read_text()


def by_metric(ms):
    return {m.metric: m for m in ms}


# --- netperf --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in (FIX / "netperf").glob("*.txt")))
def test_netperf_fixtures_parse_by_name(name):
    test, size, _ = name.split("-", 2)
    fields = netperf.parse_keyval(fixture("netperf", name))
    out = by_metric(netperf.measurements(test, int(size), fields, {"test": test}))
    assert all(m.status == "ok" and m.value is not None and m.value > 0 for m in out.values())
    if test in netperf.STREAM_TESTS:
        assert set(out) == {"throughput_mbps"}
        assert out["throughput_mbps"].value == float(fields["THROUGHPUT"])
    else:
        assert set(out) == {"transactions_per_s", "latency_mean_us", "latency_p50_us", "latency_p90_us",
                            "latency_p99_us", "latency_stddev_us"}
        assert out["transactions_per_s"].value == float(fields["TRANSACTION_RATE"])
        assert out["latency_stddev_us"].value == float(fields["STDDEV_LATENCY"])  # mean, p50 and stddev stored
        assert out["latency_p50_us"].value <= out["latency_p90_us"].value <= out["latency_p99_us"].value


def test_netperf_values_come_from_named_fields_not_positions():
    text = fixture("netperf", "TCP_RR-1024-native.txt")
    lines = text.splitlines()
    shuffled = "\n".join([lines[0]] + list(reversed(lines[1:])))
    a = by_metric(netperf.measurements("TCP_RR", 1024, netperf.parse_keyval(text), {}))
    b = by_metric(netperf.measurements("TCP_RR", 1024, netperf.parse_keyval(shuffled), {}))
    assert {k: v.value for k, v in a.items()} == {k: v.value for k, v in b.items()}
    assert netperf.parse_keyval('COMMAND_LINE="netperf -H x"')["COMMAND_LINE"] == "netperf -H x"


def test_netperf_partial_or_mismatched_output_is_refused():
    text = fixture("netperf", "TCP_RR-1024-native.txt")
    cut = text.split("P99_LATENCY")[0]
    with pytest.raises(ValueError, match="printed no (REQUEST_SIZE|P99_LATENCY)"):
        netperf.measurements("TCP_RR", 1024, netperf.parse_keyval(cut), {})
    with pytest.raises(ValueError, match="not 64"):  # the size netperf used is not the one asked for
        netperf.measurements("TCP_RR", 64, netperf.parse_keyval(text), {})
    stream = fixture("netperf", "TCP_STREAM-1024-native.txt")
    with pytest.raises(ValueError, match="10\\^6bits/s"):
        netperf.measurements("TCP_STREAM", 1024, netperf.parse_keyval(stream.replace("10^6bits/s", "10^9bits/s")), {})
    with pytest.raises(ValueError, match="printed no "):
        netperf.measurements("TCP_STREAM", 1024, netperf.parse_keyval(
            "establish control: are you sure there is a netserver listening on 10.77.0.10 at port 12865?"), {})


def test_netperf_argv_uses_selectors_and_sizes():
    b = netperf.Netperf("np", netperf.NetperfOptions(tests=["TCP_MAERTS"], message_sizes=[512]))
    from orchestrator.bench.base import Target

    argv = b.argv({"test": "TCP_MAERTS", "message_size": 512}, Target("10.77.0.10", 12865, "netserver"))
    assert argv[argv.index("-k") + 1].startswith("THROUGHPUT,THROUGHPUT_UNITS")
    assert argv[-2:] == ["-m", ",512"] and "-l" in argv and argv[argv.index("-H") + 1] == "10.77.0.10"
    rr = b.argv({"test": "UDP_RR", "message_size": 64}, Target("10.77.0.10", 12865, "netserver"))
    assert rr[-2:] == ["-r", "64,64"] and "-j" in rr


# --- wrk ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in (FIX / "wrk").glob("*-c*.txt")))
def test_wrk_fixtures(name):
    parsed = wrk.parse_wrk(fixture("wrk", name))
    out = by_metric(wrk.measurements(parsed, {}))
    assert out["requests_per_s"].status == "ok" and out["requests_per_s"].value > 0
    assert out["latency_p50_ms"].value <= out["latency_p75_ms"].value <= out["latency_p90_ms"].value \
        <= out["latency_p99_ms"].value
    assert out["transfer_mib_per_s"].value > 0 and out["socket_errors"].value >= 0


def test_wrk_units_and_non_2xx():
    parsed = wrk.parse_wrk(fixture("wrk", "non2xx-loopback.txt"))
    assert parsed["non_2xx"] == parsed["requests"] > 0
    assert parsed["transfer_mib_per_s"] == pytest.approx(592.59 / 1024)
    assert parsed["latency_p99_ms"] == pytest.approx(7.42)
    out = wrk.measurements(parsed, {"file": "missing.bin"})
    assert len(out) == 1 and out[0].status == "failed" and "not 2xx" in out[0].reason and out[0].value is None
    assert wrk.to_ms("540.00", "us") == pytest.approx(0.54) and wrk.to_ms("1.5", "s") == 1500


def test_wrk_partial_output_is_refused():
    text = fixture("wrk", "non2xx-loopback.txt")
    with pytest.raises(ValueError, match="Requests/sec"):
        wrk.parse_wrk(text.split("Requests/sec")[0])
    with pytest.raises(ValueError, match="latency distribution"):
        wrk.parse_wrk(text.replace("     99%", "     98%"))
    with pytest.raises(ValueError, match="requests in"):
        wrk.parse_wrk("unable to connect to 10.77.0.10:80 Connection refused")


# --- memaslap -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in (FIX / "memcaslap").glob("binary-*.txt")))
def test_memaslap_fixtures(name):
    parsed = memcached_load.parse_memaslap(fixture("memcaslap", name))
    out = by_metric(memcached_load.measurements(parsed, {}))
    assert out["ops_per_s"].value == parsed["tps"] > 0
    # A 1:10 set:get mix: gets are about ten times the sets.
    assert 7 < out["get_ops_per_s"].value / out["set_ops_per_s"].value < 13
    lat = parsed["latency_total"]
    assert sum(lat["log2_dist"]) == lat["events"]
    assert lat["min"] <= lat["avg"] <= lat["max"]
    # The p99 bound is a power of two at or above the true p99 and at most twice the max.
    bound = out["latency_p99_le_us"].value
    assert bound == 2 ** int(bound).bit_length() / 2 and bound <= 2 * lat["max"]


def test_memaslap_log2_buckets():
    # memaslap's bucket i holds [2**(i-1), 2**i) us: min 18 us must land in bucket 5, max 11206 us in 14.
    dist = [0] * 5 + [1] + [0] * 8 + [1]
    assert memcached_load.log2_percentile_bound(dist, 50) == 32
    assert memcached_load.log2_percentile_bound(dist, 99) == 16384
    assert memcached_load.log2_percentile_bound([], 99) is None


def test_memaslap_without_latency_and_partial():
    text = fixture("memcaslap", "no-stat-freq-loopback.txt")
    parsed = memcached_load.parse_memaslap(text)
    out = by_metric(memcached_load.measurements(parsed, {}))
    assert out["ops_per_s"].value == 60327
    assert out["latency_avg_us"].status == "failed"  # no -S: no latency, said so rather than invented
    with pytest.raises(ValueError, match="Run time"):
        memcached_load.parse_memaslap(text.split("Run time")[0])


def test_memaslap_cfg_cmd_mix():
    cfg = memcached_load.cfg_cmd(64, 128, 1, 10)
    assert cfg == "key\n64 64 1\nvalue\n128 128 1\ncmd\n0 0.090909\n1 0.909091\n"


# --- tbsysbench (syscalls) ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in (FIX / "tbsysbench").glob("*-*-*.txt")) +
                         sorted(p.name for p in (FIX / "tbsysbench").glob("gettimeofday-*.txt")))
def test_tbsysbench_fixtures(name):
    parsed = syscalls.parse_results(fixture("tbsysbench", name))
    assert parsed
    for r in parsed.values():
        assert r["ns_per_call"] == pytest.approx(r["total_ns"] / r["calls"], rel=1e-3)
    if name.startswith("gettimeofday"):
        assert set(parsed) == {"gettimeofday_syscall", "gettimeofday_vdso"}


def test_tbsysbench_errors_and_cut_answers():
    with pytest.raises(ValueError, match="where must be rootfs or tmp"):
        syscalls.parse_results(fixture("tbsysbench", "error-answer.txt"))
    with pytest.raises(ValueError, match="cut short"):
        syscalls.parse_results(fixture("tbsysbench", "cut-answer.txt"))
    with pytest.raises(ValueError, match="unexpected line"):
        syscalls.parse_results("result name=x calls=ten\nend\n")
