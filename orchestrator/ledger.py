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
import time
from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

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
