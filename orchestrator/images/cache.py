"""Content-addressed image cache.

An image is built from a recipe; the recipe's digest (its JSON plus the versions of the
Debian packages and the bytes of the host files it draws on) is the cache key, so an
image is rebuilt exactly when its inputs change. The built artifact's own digest (over
every file in it) is what samples record as provenance.

An entry is verified before it is used, so the digest a sample records is the digest of what
ran: a manifest of every file's (size, mtime, ctime, inode, mode) is checked on each lookup
(stat calls only); on any difference the entry is hashed in full, and an entry whose content
no longer matches its digest is rebuilt (built images) or refused (imports: nothing to rebuild
them from). ctime cannot be set back by touch, so an edit that restores size and mtime is still
noticed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .. import paths
from ..digest import sha256_file, sha256_json, tree_digest, tree_entries
from ..errors import TestbedError

__all__ = ["Image", "ImageCache", "ImageChangedError", "sha256_file", "sha256_json", "tree_digest"]

log = logging.getLogger(__name__)

META_FILE = "image.json"  # what the entry is (digest, files, recipe); written after the digest
MANIFEST_FILE = ".manifest.json"  # stat of every file the digest covers, for the cheap check
NOT_CONTENT = frozenset({META_FILE, MANIFEST_FILE})  # top-level names the digest does not cover


class ImageChangedError(TestbedError):
    """A cached image's files no longer match the digest recorded when it was built or imported."""


@dataclass
class Image:
    kind: str  # host | rootfs | oci | linux-guest | osv | rumprun
    name: str
    recipe_digest: str
    digest: str  # sha256 over the built artifact
    path: Path
    files: dict[str, str] = field(default_factory=dict)  # role -> path relative to `path` (kernel, initrd, rootfs)
    cache_hit: bool = False
    build_seconds: float = 0.0
    meta: dict = field(default_factory=dict)
    file_sha256: dict[str, str] = field(default_factory=dict)  # imports: role -> sha256 of the file as given
    app_versions: dict[str, str] = field(default_factory=dict)  # imports: binary -> version found in the image
    rebuilt_reason: str | None = None  # set when a changed cache entry was found and rebuilt

    def file(self, role: str) -> Path:
        return self.path / self.files[role]

    def provenance(self) -> dict:
        """image_digest: sha256 over testbed's cache entry (every file in it, import.json included);
        image_file_sha256: for imports, each imported file's own sha256 (what `sha256sum` prints
        for the file the user built); image_app_versions: the application versions found in it."""
        out: dict[str, object] = {"image_kind": self.kind, "image": self.name, "image_digest": self.digest,
                                  "recipe_digest": self.recipe_digest}
        if self.file_sha256:
            out["image_file_sha256"] = dict(self.file_sha256)
        if self.app_versions:
            out["image_app_versions"] = dict(self.app_versions)
        return out


def stat_manifest(root: Path) -> dict[str, list[int]]:
    """relative path -> [size, mtime_ns, ctime_ns, inode, mode] of every file the digest covers."""
    return {rel: [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode]
            for rel, _, st in tree_entries(root, NOT_CONTENT)}


def _manifest_difference(old: dict, new: dict) -> str:
    for rel in sorted(old.keys() | new.keys()):
        if rel not in new:
            return f"{rel} is missing"
        if rel not in old:
            return f"{rel} was added"
        if old[rel][0] != new[rel][0]:
            return f"{rel} changed size ({old[rel][0]} -> {new[rel][0]} bytes)"
        if old[rel] != new[rel]:
            return f"{rel} was modified"
    return "its content differs"


def _write_json_atomic(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def verify_entry(entry: Path, digest: str) -> None:
    """Raise ImageChangedError unless the files under `entry` still have `digest`.

    Cheap when nothing changed (one stat per file against the manifest); a full hash only when
    the manifest is missing (entries from older testbeds) or differs. A full hash that matches
    (the cache was copied, files touched) refreshes the manifest.
    """
    manifest_file = entry / MANIFEST_FILE
    try:
        recorded = json.loads(manifest_file.read_text())
    except (OSError, json.JSONDecodeError):
        recorded = None
    current = stat_manifest(entry)
    if recorded == current:
        return
    if tree_digest(entry, NOT_CONTENT) != digest:
        what = _manifest_difference(recorded, current) if recorded else "its content no longer matches its digest"
        raise ImageChangedError(f"cached image {entry}: {what} since it was made")
    try:
        _write_json_atomic(manifest_file, current)
    except OSError as exc:  # a read-only cache still works, at the price of a full hash per lookup
        log.debug("cannot refresh %s: %s", manifest_file, exc)


class ImageCache:
    def __init__(self, root: Path | None = None):
        self.root = root or paths.cache_dir() / "images"
        self.root.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        with open(self.root / f".{key}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def ensure(self, kind: str, name: str, recipe: dict, build: Callable[[Path], dict]) -> Image:
        """Return the cached image for `recipe`, building it with build(dest_dir) -> {role: relative path}.

        `build` writes into a temporary directory that becomes the cache entry only when it
        succeeds, so an interrupted build never leaves a half image that looks whole.
        """
        recipe_digest = sha256_json({"kind": kind, "name": name, **recipe})
        key = f"{kind}-{name}-{recipe_digest[:16]}"
        entry = self.root / key
        rebuilt_reason = None
        with self._lock(key):
            meta_file = entry / META_FILE
            if meta_file.exists():
                try:
                    meta = json.loads(meta_file.read_text())
                    verify_entry(entry, meta["digest"])
                    return Image(kind, name, recipe_digest, meta["digest"], entry, meta["files"], True,
                                 0.0, meta.get("meta", {}))
                except ImageChangedError as exc:
                    rebuilt_reason = str(exc)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    rebuilt_reason = f"cached image {entry}: unreadable {META_FILE} ({exc})"
                log.warning("%s; rebuilding it", rebuilt_reason)
            tmp = self.root / f".{key}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            start = time.monotonic()
            try:
                files = build(tmp)
                digest = tree_digest(tmp)
                seconds = time.monotonic() - start
                meta = {"digest": digest, "files": files, "recipe": recipe, "build_seconds": seconds,
                        "built": time.time(), "meta": {}}
                (tmp / META_FILE).write_text(json.dumps(meta, indent=1, default=str))
                # Renaming the directory changes no file's ctime, so the manifest stays true.
                (tmp / MANIFEST_FILE).write_text(json.dumps(stat_manifest(tmp)))
                shutil.rmtree(entry, ignore_errors=True)
                tmp.rename(entry)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return Image(kind, name, recipe_digest, digest, entry, files, False, seconds, rebuilt_reason=rebuilt_reason)

    def verify(self, image: Image) -> None:
        """ImageChangedError unless `image`'s cache entry still matches its digest (see verify_entry)."""
        with self._lock(image.path.name):
            verify_entry(image.path, image.digest)

    def remove(self, entry: Path) -> None:
        """Delete one cache entry (under its lock) and testbed's bookkeeping beside it. An entry
        that resolves outside the cache (a symlink) is refused, not followed."""
        resolved = entry.resolve()
        if resolved.parent != self.root.resolve():
            raise TestbedError(f"{entry} resolves to {resolved}, outside the image cache {self.root}; remove it by hand")
        with self._lock(entry.name):
            shutil.rmtree(resolved)
        (self.root / ".imports" / entry.name).unlink(missing_ok=True)
        (self.root / f".{entry.name}.lock").unlink(missing_ok=True)

    def entries(self) -> list[dict]:
        out = []
        for meta_file in sorted(self.root.glob(f"*/{META_FILE}")):
            meta = json.loads(meta_file.read_text())
            out.append({"key": meta_file.parent.name, "digest": meta["digest"],
                        "build_seconds": meta.get("build_seconds"), "path": str(meta_file.parent)})
        return out
