"""Content digests (sha256) shared by the image cache, hosts and provenance."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any, Iterator


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def sha256_file(path: Path | str, h: Any = None) -> str:
    h = h or hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return str(h.hexdigest())


def tree_entries(root: Path, exclude: frozenset[str] = frozenset()) -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative path, path, lstat) of every file and symlink under root, in sorted order;
    `exclude` names top-level entries to skip. Plain strings, not Paths: this runs per lookup."""
    top_dir = os.fspath(root)
    cut = len(os.path.join(top_dir, ""))
    for dirpath, dirnames, filenames in os.walk(top_dir):
        dirnames.sort()
        top = dirpath == top_dir
        if top and exclude:
            dirnames[:] = [d for d in dirnames if d not in exclude]
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            if top and name in exclude:
                continue
            full = os.path.join(dirpath, name)
            yield full[cut:], full, os.lstat(full)


def tree_digest(root: Path, exclude: frozenset[str] = frozenset()) -> str:
    """sha256 over (relative path, mode, content or link target) of every entry, in sorted order."""
    h = hashlib.sha256()
    for rel, p, st in tree_entries(root, exclude):
        h.update(f"{rel}\0{st.st_mode:o}\0".encode())
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(p).encode())
        elif stat.S_ISREG(st.st_mode):
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()
