"""nstat parsing and the retransmission deltas, on real `nstat -a -z -s` output (tests/fixtures/nstat)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.bench.nstat import counter_delta, parse_nstat, retransmission_measurements

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nstat"


def test_parse_and_delta_of_a_lossy_transfer():
    before = parse_nstat((FIXTURES / "before.txt").read_text())
    after = parse_nstat((FIXTURES / "after.txt").read_text())
    assert len(before) > 300 and before["TcpOutSegs"] == 0
    d = counter_delta(before, after)
    assert d["TcpOutSegs"] == 228 and d["TcpRetransSegs"] == 8 and d["TcpExtTCPTimeouts"] == 1
    ms = {m.metric: m for m in retransmission_measurements(d, "server", {"file": "64k.bin"})}
    assert ms["tcp_retrans_segs_server"].value == 8 and ms["tcp_rto_timeouts_server"].value == 1
    assert ms["tcp_fast_retrans_server"].value == 6 and ms["tcp_lost_retransmit_server"].value == 1
    assert ms["tcp_retrans_pct_server"].value == pytest.approx(100 * 8 / 228) and ms["tcp_retrans_pct_server"].unit == "%"
    assert ms["tcp_retrans_segs_server"].unit == "count" and ms["tcp_retrans_segs_server"].params == {"file": "64k.bin"}


def test_bad_output_and_reset_counters():
    with pytest.raises(ValueError, match="unexpected nstat line"):
        parse_nstat("#kernel\nCannot open /proc/net/snmp\n")
    with pytest.raises(ValueError, match="TcpOutSegs"):
        parse_nstat("#kernel\nIpInReceives 5 0.0\n")
    with pytest.raises(ValueError, match="went backwards"):
        counter_delta({"TcpOutSegs": 10}, {"TcpOutSegs": 3})
    assert retransmission_measurements({"TcpOutSegs": 0, "TcpRetransSegs": 0}, "client", {})[0].value == 0
