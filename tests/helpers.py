"""Helpers for tests: run the CLI, find what a run left behind."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTBED = str(Path(sys.executable).with_name("testbed"))


def run_cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([TESTBED, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "160", **(env or {})}, check=False)


def leftovers(run_id: str) -> list[str]:
    """Everything testbed could have left of a run: namespaces, links, containers, processes."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for ns in netns.split("\n"):
        if ns.startswith(f"tb-{run_id}-"):
            found.append(f"netns {ns.split()[0]}")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False).stdout
    for line in links.split("\n"):
        parts = line.split(": ")
        if len(parts) > 1 and parts[1].startswith(f"tb{run_id}"):
            found.append(f"link {parts[1]}")
    # runc spells its quiet flag -q, Debian's runsc only -quiet; a list that fails is itself a finding.
    for binary, root, quiet in (("runc", "/run/testbed-runc", "-q"), ("runsc", "/run/testbed-runsc", "-quiet")):
        res = subprocess.run([binary, "--root", root, "list", quiet], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            found.append(f"{binary} list failed: {res.stderr.strip()[:200]}")
        found += [f"{binary} {c}" for c in res.stdout.split() if f"-{run_id}-" in c]
    procs = subprocess.run(["pgrep", "-af", f"/runs/{run_id}/"], capture_output=True, text=True, check=False).stdout
    found += [f"process {p}" for p in procs.strip().split("\n") if p and "pgrep" not in p]
    return found


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def osv_usr_img(path: Path, size: str = "1M", fmt: str = "qcow2") -> Path:
    """A disk with the shape OSv's scripts/build gives usr.img (boot signature 0x55AA, one partition
    entry), so `testbed images import osv` accepts it; the rest is zeros."""
    raw = path.with_name(path.name + ".raw")
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(raw), size], check=True, timeout=30)
    with open(raw, "r+b") as fh:
        fh.seek(0x1CE)  # partition 2, as imgedit.py setpartition writes it
        fh.write(bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + (1).to_bytes(4, "little") + (16).to_bytes(4, "little"))
        fh.seek(0x1FE)
        fh.write(b"\x55\xaa")
    if fmt == "raw":
        raw.rename(path)
    else:
        subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", fmt, str(raw), str(path)], check=True,
                       timeout=30)
        raw.unlink()
    return path


def multiboot_elf(path: Path, extra: bytes = b"") -> Path:
    """An ELF64 executable header followed by a multiboot 1 header: what rumprun-bake's output starts with."""
    magic, flags = 0x1BADB002, 0x00010003
    header = b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little") + bytes(46)  # e_type ET_EXEC
    mb = magic.to_bytes(4, "little") + flags.to_bytes(4, "little") + ((-(magic + flags)) & 0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(header + mb + bytes(180) + extra)
    return path


def store_runs(store: Path) -> list[tuple]:
    """(run_id, status, reason, samples) of every run in a result store, oldest first, read with plain sqlite3."""
    db = sqlite3.connect(store)
    try:
        return db.execute("SELECT run_id, status, reason, (SELECT COUNT(*) FROM samples s WHERE s.run_id=r.run_id)"
                          " FROM runs r ORDER BY started").fetchall()
    finally:
        db.close()


# --- headless Chromium (reports opened in a real browser) ------------------------------------------
CHROMIUM_TIMEOUT = 120


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    if binary is None:
        raise AssertionError("chromium is not installed (playbooks/roles/build installs it; `apt-get install chromium`)")
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--disable-extensions", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT, check=False)


def distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as img:
        return len(img.convert("RGB").getcolors(maxcolors=1 << 24) or [])
