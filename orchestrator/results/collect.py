"""`testbed collect`: each lab host's result store, copied over SSH and merged into the controller's.

A lab runs `testbed nightly` on every host (the playbook's nightly role); the controller collects
afterwards. Per host: a consistent snapshot of its store is made on the host (sqlite's online
backup, so a run writing at the same time cannot tear it), its sha256 is read there, the file is
copied with SFTP (host keys verified as for every SSH connection), the copy's sha256 must match,
and the snapshot must pass `PRAGMA integrity_check`; otherwise nothing of that host is merged and
one line says why. Finished runs are merged whole, under the id RUN@HOST (unique per host), with
`collected_from` in their provenance; a run already there is skipped, so collecting twice adds
nothing. Runs still running on the host are left for the next collect.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..digest import sha256_file
from ..errors import TestbedError
from .store import RUN_COLUMNS, SELECT_RUNS, Store

if TYPE_CHECKING:
    from ..hosts.base import Host

DEFAULT_REMOTE_STORE = "/var/lib/testbed/results.sqlite"
SNAPSHOT = ("import sqlite3, sys\n"
            "src = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)\n"
            "dst = sqlite3.connect(sys.argv[2])\n"
            "src.backup(dst)\n"
            "dst.close(); src.close()\n")
COPY_TIMEOUT = 600.0
SAMPLE_COLUMNS = ("measured, platform, workload, benchmark, metric, value, unit, repetition, params, status, reason,"
                  " provenance")


class CollectError(TestbedError):
    """A host's store could not be copied or verified; nothing of that host was merged."""


@dataclass
class Collected:
    host: str
    merged: list[str] = field(default_factory=list)  # collected run ids added now
    skipped: int = 0  # runs already in the store
    unfinished: int = 0  # runs still running on the host

    def line(self) -> str:
        return (f"{self.host}: merged {len(self.merged)} run(s)" + (f" ({', '.join(self.merged)})" if self.merged else "")
                + f"; {self.skipped} already collected" + (f"; {self.unfinished} still running there, left for the "
                                                           f"next collect" if self.unfinished else ""))


def collected_id(run_id: str, host: str) -> str:
    return run_id if run_id.endswith(f"@{host}") else f"{run_id}@{host}"


def copy_store(host: "Host", remote_store: str, dest: Path, *, timeout: float = COPY_TIMEOUT) -> None:
    """A verified local copy of `remote_store` on `host`: snapshot there, checksum there, copy, checksum here."""
    if host.file_sha256(remote_store, timeout=60) is None:
        raise CollectError(f"{host.name}: no result store at {remote_store} (pass --remote-store, or set nightly.store "
                           f"in the lab file)")
    snapshot = f"/tmp/testbed-collect-{secrets.token_hex(4)}.sqlite"
    try:
        res = host.run(["python3", "-c", SNAPSHOT, remote_store, snapshot], timeout=timeout, check=False)
        if not res.ok:
            raise CollectError(f"{host.name}: could not snapshot {remote_store}: {res.tail()}")
        want = host.file_sha256(snapshot, timeout=60)
        host.get(snapshot, dest, timeout=timeout)
    finally:
        host.run(["rm", "-f", "--", snapshot], timeout=30, check=False)
    got = sha256_file(dest)
    if got != want:
        raise CollectError(f"{host.name}: the copy of {remote_store} has sha256 {got[:16]}, the host's snapshot "
                           f"{(want or '?')[:16]}; nothing merged (collect again)")


def merge(target: Store, source: Path, host: str) -> Collected:
    """Every finished run of the store file `source` (from `host`) that `target` lacks."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    out = Collected(host)
    try:
        check = src.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise CollectError(f"{host}: its store fails the integrity check ({check}); nothing merged")
        runs = src.execute(f"{SELECT_RUNS} ORDER BY started").fetchall()
        for row in runs:
            run = dict(zip(RUN_COLUMNS, row))
            if run["status"] == "running":
                out.unfinished += 1
                continue
            new_id = collected_id(run["run_id"], host)
            if target.run_info(new_id) is not None:
                out.skipped += 1
                continue
            run["provenance"] = {**json.loads(run["provenance"]), "collected_from": host,
                                 "collected_at": time.time(), "original_run_id": run["run_id"]}
            samples = [(new_id, *s) for s in src.execute(f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE run_id=? "
                                                         f"ORDER BY id", (run["run_id"],))]
            target.insert_collected({**run, "run_id": new_id}, samples)
            out.merged.append(new_id)
    except sqlite3.DatabaseError as exc:
        raise CollectError(f"{host}: its store cannot be read ({exc}); nothing merged") from None
    finally:
        src.close()
    return out


def collect(host: "Host", remote_store: str, target: Store) -> Collected:
    with tempfile.TemporaryDirectory(prefix="testbed-collect-") as tmp:
        local = Path(tmp) / "store.sqlite"
        copy_store(host, remote_store, local)
        return merge(target, local, host.name)
