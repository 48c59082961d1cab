"""Interference: what else was loading the host while a sample was measured.

Two testbed runs on the same CPUs halve each other's numbers without a trace (native SET 130k ->
69.5k req/s), so each sample records the host's load (load average, CPU steal and per-CPU busy
time between two reads of /proc/stat, and the other testbed runs live in the ledger with their
CPUs), and a run refuses to start on CPUs another live run uses unless the user allows it.

The runner owns when this is called (see docs/results.md, "Interference"); this module only
reads and decides. The ledger's `open` entry carries what a run uses (OPEN_META_KEYS).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import ledger as ledger_mod
from . import paths
from .errors import ResourceBusyError
from .hosts.base import Host

READ_TIMEOUT = 5.0
DEFAULT_WINDOW = 0.2  # seconds between the two /proc/stat reads when no earlier snapshot is given

# Keys a run writes into its ledger `open` entry (beside op, pid, start) so that other runs see
# where it runs: hosts by name as the suite's placement names them, CPU lists or None (= every CPU).
OPEN_META_KEYS = ("suite", "server_host", "server_cpus", "client_host", "client_cpus")

STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")


def open_meta(suite: str, server_host: str, server_cpus: Sequence[int] | None, client_host: str,
              client_cpus: Sequence[int] | None) -> dict[str, Any]:
    """The ledger `open` entry's extra keys for a run (what `overlapping_runs` reads)."""
    return {"suite": suite, "server_host": server_host, "server_cpus": list(server_cpus) if server_cpus else None,
            "client_host": client_host, "client_cpus": list(client_cpus) if client_cpus else None}


# --- /proc readings ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative jiffies per CPU line of /proc/stat ('cpu' is the sum), and when they were read."""

    taken: float
    cpus: dict[str, tuple[int, ...]]


def parse_proc_stat(text: str, taken: float | None = None) -> CpuSnapshot:
    cpus: dict[str, tuple[int, ...]] = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0].startswith("cpu"):
            values = tuple(int(v) for v in parts[1:1 + len(STAT_FIELDS)])
            cpus[parts[0]] = values + (0,) * (len(STAT_FIELDS) - len(values))
    if "cpu" not in cpus:
        raise ValueError("no 'cpu' line in /proc/stat")
    return CpuSnapshot(time.monotonic() if taken is None else taken, cpus)


def parse_loadavg(text: str) -> list[float]:
    parts = text.split()
    if len(parts) < 3:
        raise ValueError(f"unexpected /proc/loadavg: {text.strip()!r}")
    return [float(p) for p in parts[:3]]


def _busy_and_total(values: tuple[int, ...]) -> tuple[int, int, int]:
    v = dict(zip(STAT_FIELDS, values))
    # guest time is already counted in user/nice: leave it out of the total
    total = sum(v[k] for k in STAT_FIELDS if k not in ("guest", "guest_nice"))
    idle = v["idle"] + v["iowait"]
    return total - idle, total, v["steal"]


def cpu_load_between(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, Any]:
    """Steal % of all CPUs and busy % per CPU between two snapshots (None where no time passed)."""
    out: dict[str, Any] = {"window_s": round(after.taken - before.taken, 3), "steal_pct": None, "cpu_busy_pct": {}}
    for name, a in after.cpus.items():
        b = before.cpus.get(name)
        if b is None:
            continue
        busy_a, total_a, steal_a = _busy_and_total(a)
        busy_b, total_b, steal_b = _busy_and_total(b)
        total = total_a - total_b
        if total <= 0:
            continue
        if name == "cpu":
            out["steal_pct"] = round(100.0 * (steal_a - steal_b) / total, 2)
            out["busy_pct"] = round(100.0 * (busy_a - busy_b) / total, 1)
        else:
            out["cpu_busy_pct"][name[3:]] = round(100.0 * (busy_a - busy_b) / total, 1)
    return out


def cpu_snapshot(host: Host) -> CpuSnapshot:
    return parse_proc_stat(host.read_text("/proc/stat", timeout=READ_TIMEOUT))


# --- live testbed runs ------------------------------------------------------------------------
@dataclass
class LiveRun:
    run_id: str
    pid: int | None
    suite: str | None
    server_host: str | None
    server_cpus: list[int] | None  # None: every CPU (or not recorded)
    client_host: str | None
    client_cpus: list[int] | None
    recorded: bool  # False: an older run whose ledger names no placement (assumed to use everything)

    def cpus_on(self, host: str) -> set[int] | None:
        """CPUs this run uses on `host`: a set, None for every CPU, or set() for none."""
        used: set[int] = set()
        for h, cpus in ((self.server_host, self.server_cpus), (self.client_host, self.client_cpus)):
            if not self.recorded or h == host:
                if cpus is None:
                    return None
                used |= set(cpus)
        return used

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def live_runs(ledger_dir: Path, *, exclude_run: str | None = None) -> list[LiveRun]:
    """Testbed runs whose owner process is alive (pid and start time match), from their ledgers."""
    out: list[LiveRun] = []
    if not ledger_dir.is_dir():
        return out
    for path in sorted(ledger_dir.glob("*.jsonl")):
        run_id = path.stem
        if run_id == exclude_run:
            continue
        try:
            if not ledger_mod.owner_alive(path):
                continue
            entries = ledger_mod.read_entries(path)
        except OSError:  # removed while we looked: that run just ended
            continue
        opened = next((e for e in entries if e.get("op") == "open"), {})
        recorded = any(k in opened for k in ("server_cpus", "client_cpus"))
        out.append(LiveRun(run_id, opened.get("pid"), opened.get("suite"), opened.get("server_host"),
                           opened.get("server_cpus"), opened.get("client_host"), opened.get("client_cpus"), recorded))
    return out


def overlapping_runs(ledger_dir: Path, my_cpus: Iterable[int] | None, *, host: str = "localhost",
                     exclude_run: str | None = None) -> list[LiveRun]:
    """Live testbed runs that use any of `my_cpus` on `host` (None: my run uses every CPU)."""
    mine = None if my_cpus is None else set(my_cpus)
    out = []
    for run in live_runs(ledger_dir, exclude_run=exclude_run):
        theirs = run.cpus_on(host)
        if theirs is None or mine is None:
            if theirs is None or theirs:  # every CPU against anything, or mine = every CPU and theirs non-empty
                out.append(run)
        elif theirs & mine:
            out.append(run)
    return out


def cpu_list(cpus: Iterable[int] | None) -> str:
    return "all CPUs" if cpus is None else "CPUs " + ",".join(str(c) for c in sorted(cpus))


def refuse_overlap(overlaps: Sequence[LiveRun], host: str = "localhost") -> None:
    """Raise one line naming the first live run on the same CPUs (the runner calls this before it
    creates anything, unless --allow-overlap)."""
    if not overlaps:
        return
    o = overlaps[0]
    more = f" (and {len(overlaps) - 1} more)" if len(overlaps) > 1 else ""
    where = cpu_list(o.cpus_on(host)) if o.recorded else "unrecorded CPUs"
    raise ResourceBusyError(f"testbed run {o.run_id} (suite {o.suite or '?'}, pid {o.pid}) is live on {host} "
                            f"{where}{more}, which this run would share; wait for it to end, or pass "
                            f"--allow-overlap to measure anyway (every sample is then flagged `overlap`)")


def host_load(host: Host, *, since: CpuSnapshot | None = None, window: float = DEFAULT_WINDOW,
              ledger_dir: Path | None = None, my_run: str | None = None,
              my_cpus: Iterable[int] | None = None) -> dict[str, Any]:
    """What a sample's provenance records under `interference`.

    loadavg [1, 5, 15 min]; steal_pct and busy % (whole host and per CPU) between `since` (e.g. a
    snapshot taken when the trial started) and now, or over `window` seconds when there is none;
    live_runs: other testbed runs live in the ledger with their CPUs; overlap: those of them on
    `my_cpus` (the `overlap` flag reads this list)."""
    out: dict[str, Any] = {"loadavg": parse_loadavg(host.read_text("/proc/loadavg", timeout=READ_TIMEOUT))}
    if since is None:
        since = cpu_snapshot(host)
        time.sleep(window)
    out.update(cpu_load_between(since, cpu_snapshot(host)))
    directory = ledger_dir if ledger_dir is not None else paths.ledger_dir()
    others = live_runs(directory, exclude_run=my_run)
    out["live_runs"] = [r.as_dict() for r in others]
    mine = None if my_cpus is None else set(my_cpus)
    overlap_ids = {r.run_id for r in overlapping_runs(directory, mine, host=host.name, exclude_run=my_run)}
    out["overlap"] = [r.run_id for r in others if r.run_id in overlap_ids]
    return out
