"""TCP retransmission counters around a load run, from `nstat` in the client and server namespaces.

A TCP load run that suffers retransmission timeouts (gVisor serving 64k files: p75 120 ms, p99
215 ms) must say so next to its throughput. The runner reads NSTAT_ARGV in each namespace before
and after a run (absolute counters, history untouched) and stores the deltas as metrics of that
run with `retransmission_measurements`. gVisor's netstack and a guest kernel keep their own TCP
counters: in the server namespace of such a platform these count only the host side.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .base import Measurement

if TYPE_CHECKING:
    from ..hosts.base import Host

# -a absolute values, -z include zero counters, -s do not update nstat's history file
NSTAT_ARGV = ["nstat", "-a", "-z", "-s"]
NSTAT_TIMEOUT = 10.0
LINE = re.compile(r"^([A-Za-z][A-Za-z0-9]*)\s+(\d+)(?:\s+\S+)?\s*$")

# nstat counter -> metric stem (the side is appended: tcp_retrans_segs_client, ..._server)
RETRANSMISSION_COUNTERS = {
    "TcpRetransSegs": "tcp_retrans_segs",
    "TcpExtTCPTimeouts": "tcp_rto_timeouts",
    "TcpExtTCPFastRetrans": "tcp_fast_retrans",
    "TcpExtTCPLostRetransmit": "tcp_lost_retransmit",
    "TcpExtTCPSynRetrans": "tcp_syn_retrans",
}
OUT_SEGMENTS = "TcpOutSegs"


def parse_nstat(text: str) -> dict[str, int]:
    """{'TcpRetransSegs': 8, ...} from `nstat -a -z` output; raises ValueError on anything else."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):  # '#kernel'
            continue
        m = LINE.match(line)
        if not m:
            raise ValueError(f"unexpected nstat line: {line[:80]!r}")
        out[m.group(1)] = int(m.group(2))
    if OUT_SEGMENTS not in out:
        raise ValueError("nstat printed no TcpOutSegs counter (was -z given?)")
    return out


def counter_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """after - before for the counters in both; a counter that went backwards (namespace recreated,
    counter reset) raises ValueError rather than produce a negative count."""
    out = {}
    for name, value in after.items():
        if name not in before:
            continue
        d = value - before[name]
        if d < 0:
            raise ValueError(f"nstat counter {name} went backwards ({before[name]} -> {value}): counters were reset")
        out[name] = d
    return out


def retransmission_measurements(delta: dict[str, int], side: str, params: dict) -> list[Measurement]:
    """Counts per run for one side ('client' or 'server'), plus retransmitted segments as % of segments sent."""
    out = [Measurement(f"{stem}_{side}", float(delta[name]), "count", dict(params))
           for name, stem in RETRANSMISSION_COUNTERS.items() if name in delta]
    sent = delta.get(OUT_SEGMENTS, 0)
    if sent > 0 and "TcpRetransSegs" in delta:
        out.append(Measurement(f"tcp_retrans_pct_{side}", 100.0 * delta["TcpRetransSegs"] / sent, "%", dict(params)))
    return out


class TcpCounters:
    """nstat in each namespace before a load run and after it: the run's retransmission metrics.

    `sides` maps 'client' / 'server' to (the host it is on, a namespace or None for the host's own).
    A side whose counters cannot be read gives one failed sample saying why, never a number."""

    def __init__(self, sides: dict[str, tuple["Host", str | None]]):
        self.sides = sides
        self.before: dict[str, dict[str, int] | str] = {}

    @staticmethod
    def _read(host: "Host", netns: str | None) -> dict[str, int] | str:
        from ..errors import TestbedError

        try:
            res = host.run(NSTAT_ARGV, timeout=NSTAT_TIMEOUT, check=False, netns=netns)
            if not res.ok:
                return f"nstat exited {res.returncode}: {res.tail()}"
            return parse_nstat(res.stdout)
        except (TestbedError, ValueError) as exc:
            return str(exc)

    def start(self) -> "TcpCounters":
        self.before = {side: self._read(host, ns) for side, (host, ns) in self.sides.items()}
        return self

    def measurements(self, params: dict) -> list[Measurement]:
        out: list[Measurement] = []
        for side, (host, ns) in self.sides.items():
            before, after = self.before.get(side, "not read before the run"), self._read(host, ns)
            if isinstance(before, str) or isinstance(after, str):
                reason = before if isinstance(before, str) else after
                out.append(Measurement.failed(f"tcp_retrans_segs_{side}", "count", f"nstat: {reason}", params))
                continue
            try:
                out += retransmission_measurements(counter_delta(before, after), side, params)
            except ValueError as exc:
                out.append(Measurement.failed(f"tcp_retrans_segs_{side}", "count", f"nstat: {exc}", params))
        return out
