"""The resource ledger: everything a run creates is written down before it is created.

Each run appends to its own JSON-lines file; a resource is live while its `acquire`
line has no matching `release` line. On a clean exit every resource is released by
the code that made it; `testbed gc` reclaims what a killed run (SIGKILL, power loss)
left behind by calling the reclaimer registered for the resource's kind: a Reclaimer subclass
beside the code that creates such resources (`class NetnsReclaimer(Reclaimer, kind="netns")`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import time
from abc import abstractmethod
from pathlib import Path
from typing import ClassVar, Collection

from . import paths
from .errors import TestbedError
from .registry import Registered, Registry, UnknownKind

log = logging.getLogger(__name__)

# What a reclaimer may raise for a resource it cannot remove; gc reports it and goes on.
RECLAIM_ERRORS = (TestbedError, OSError, ValueError, KeyError)


class Reclaimer(Registered):
    """Removes a leftover resource of one ledger kind; idempotent (absent is fine)."""

    registry: ClassVar[Registry["Reclaimer"]] = Registry("reclaimer", None)

    @abstractmethod
    def reclaim(self, name: str, meta: dict) -> None: ...


def reclaimer_for(kind: str) -> Reclaimer | None:
    try:
        return Reclaimer.registry.get(kind)()
    except UnknownKind:
        return None


def process_start_time(pid: int) -> int | None:
    """Kernel start time of pid (clock ticks since boot), to tell a pid from its recycled successor."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def boot_id() -> str | None:
    """This boot's random id: a pid recorded before a reboot (power loss) names no process after it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def owner_record(pid: int | None = None) -> dict:
    """Who runs something: host, boot, pid and the pid's start time (so a recycled pid is not the owner)."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "boot_id": boot_id(), "pid": pid, "start": process_start_time(pid)}


def owner_gone(owner: dict) -> bool | None:
    """True when the process `owner` (owner_record) names no longer exists, False while it runs,
    None when this machine cannot tell (recorded on another host, or without a start time)."""
    if owner.get("host") not in (None, socket.gethostname()):
        return None
    recorded_boot = owner.get("boot_id")
    if recorded_boot and boot_id() and recorded_boot != boot_id():
        return True  # the machine rebooted since: nothing of that boot still runs
    pid, start = owner.get("pid"), owner.get("start")
    if not isinstance(pid, int) or start is None:
        return None
    return process_start_time(pid) != start


def ledger_owner(run_id: str, directory: Path | None = None) -> dict | None:
    """The owner a run's ledger recorded when it opened (pid + start time), if the ledger is still there."""
    path = (directory or paths.ledger_dir()) / f"{run_id}.jsonl"
    if not path.is_file():
        return None
    for e in read_entries(path):
        if e.get("op") == "open":
            return {"pid": e.get("pid"), "start": e.get("start")}
    return None


class Ledger:
    def __init__(self, run_id: str, directory: Path | None = None, info: dict | None = None):
        self.run_id = run_id
        self.directory = directory or paths.ledger_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{run_id}.jsonl"
        # `info` says what the run holds beyond its resources (its hosts and CPUs), for overlap checks.
        self._write({"op": "open", "pid": os.getpid(), "start": process_start_time(os.getpid()), **(info or {})})

    def _write(self, entry: dict, durable: bool = True) -> None:
        entry["t"] = time.time()
        with open(self.path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            if durable:
                os.fsync(fh.fileno())

    def acquire(self, kind: str, name: str, **meta) -> None:
        """Record a resource that is about to be created (on disk before this returns)."""
        self._write({"op": "acquire", "kind": kind, "name": name, "meta": meta})

    def note(self, kind: str, name: str, **meta) -> None:
        """Add facts learnt after creation (e.g. a pid) to a recorded resource, without an fsync: the
        durable acquire entry already lets gc find the resource if these facts are lost."""
        self._write({"op": "acquire", "kind": kind, "name": name, "meta": meta}, durable=False)

    def release(self, kind: str, name: str) -> None:
        self._write({"op": "release", "kind": kind, "name": name})

    def live(self) -> list[tuple[str, str, dict]]:
        return live_resources(self.path)

    def reclaim_live(self) -> list[str]:
        """Safety net after teardown: reclaim anything of this run still live (e.g. a launch
        interrupted between creating a resource and handing it back)."""
        done = []
        for kind, name, meta in reversed(self.live()):
            r = reclaimer_for(kind)
            if r is None:
                continue
            try:
                r.reclaim(name, meta)
                done.append(f"{kind} {name}")
            except RECLAIM_ERRORS as exc:
                log.warning("could not reclaim %s %s: %s", kind, name, exc)
                continue
            self.release(kind, name)
        return done

    def close(self) -> None:
        """Called after teardown; a ledger with nothing live is removed."""
        if not self.live():
            self.path.unlink(missing_ok=True)


def read_entries(path: Path) -> list[dict]:
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # a run killed mid-write leaves a torn last line
            continue
    return entries


def live_resources(path: Path) -> list[tuple[str, str, dict]]:
    live: dict[tuple[str, str], dict] = {}
    for e in read_entries(path):
        if e.get("op") == "acquire":  # a later entry for the same resource adds to its facts
            live.setdefault((e["kind"], e["name"]), {}).update(e.get("meta", {}))
        elif e.get("op") == "release":
            live.pop((e["kind"], e["name"]), None)
    return [(k, n, m) for (k, n), m in live.items()]


def owner_alive(path: Path) -> bool:
    for e in read_entries(path):
        if e.get("op") == "open":
            pid, start = e.get("pid"), e.get("start")
            return pid is not None and process_start_time(pid) == start and pid != os.getpid()
    return False


def collect_garbage(directory: Path | None = None, *, include_live_runs: bool = False) -> list[str]:
    """Reclaim resources of runs whose process is gone. Returns one line per reclaimed resource."""
    directory = directory or paths.ledger_dir()
    done: list[str] = []
    if not directory.exists():
        return done
    for path in sorted(directory.glob("*.jsonl")):
        if owner_alive(path) and not include_live_runs:
            continue
        # Release in reverse order of creation: containers before the namespaces they sit in.
        for kind, name, meta in reversed(live_resources(path)):
            r = reclaimer_for(kind)
            if r is None:
                done.append(f"{path.stem}: no reclaimer for {kind} {name}; remove it by hand")
                continue
            try:
                r.reclaim(name, meta)
                done.append(f"{path.stem}: reclaimed {kind} {name}")
            except RECLAIM_ERRORS as exc:  # keep going: one stuck resource must not strand the rest
                done.append(f"{path.stem}: could not reclaim {kind} {name}: {exc}")
                continue
            with open(path, "a") as fh:
                fh.write(json.dumps({"op": "release", "kind": kind, "name": name, "t": time.time()}) + "\n")
        if not live_resources(path):
            path.unlink(missing_ok=True)
    return done


RUN_DIR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'7d', '12h', '30m', '90s', '2w' -> seconds; ValueError with the accepted forms otherwise."""
    m = DURATION.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration; use a number and a unit, e.g. 7d, 12h, 30m (s m h d w)")
    return float(m.group(1)) * DURATION_UNITS[m.group(2)]


def _newest_mtime(directory: Path) -> float:
    """The directory's own mtime and its direct children's: what a run last wrote there."""
    newest = directory.lstat().st_mtime
    with os.scandir(directory) as it:
        for e in it:
            try:
                newest = max(newest, e.stat(follow_symlinks=False).st_mtime)
            except OSError:
                continue
    return newest


def remove_old_run_dirs(older_than: float, *, live_runs: Collection[str] = frozenset(), now: float | None = None,
                        runs_dir: Path | None = None, ledger_directory: Path | None = None) -> list[str]:
    """Remove TESTBED_HOME/runs/<id> directories untouched for `older_than` seconds whose run is
    not live (its ledger's owner still runs, or it is in `live_runs`). One line per directory removed."""
    root = runs_dir or paths.runs_dir()
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    ledger_directory = ledger_directory or paths.ledger_dir()
    done = []
    for d in sorted(root.iterdir()):
        if not RUN_DIR_NAME.match(d.name) or d.is_symlink() or not d.is_dir():
            continue  # not a directory testbed made: leave it
        owner = ledger_owner(d.name, ledger_directory)
        if d.name in live_runs or (owner is not None and owner_gone(owner) is not True):
            continue  # live, or its owner cannot be judged: keep
        try:
            age = now - _newest_mtime(d)
        except OSError:
            continue
        if age < older_than:
            continue
        target = paths.inside_home(d)  # a run directory symlinked or moved out of home is never removed
        size = sum(os.lstat(os.path.join(dp, f)).st_size for dp, _, files in os.walk(target) for f in files)
        shutil.rmtree(target)
        done.append(f"removed run directory {target} ({size / 1e6:.1f} MB, untouched for {age / 86400:.1f} days)")
    return done
