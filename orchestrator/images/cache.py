"""Content-addressed image cache.

An image is built from a recipe; the recipe's digest (its JSON plus the versions of the
Debian packages and the bytes of the host files it draws on) is the cache key, so an
image is rebuilt exactly when its inputs change. The built artifact's own digest (over
every file in it) is what samples record as provenance.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .. import paths
from ..digest import sha256_file, sha256_json, tree_digest

__all__ = ["Image", "ImageCache", "sha256_file", "sha256_json", "tree_digest"]


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

    def file(self, role: str) -> Path:
        return self.path / self.files[role]

    def provenance(self) -> dict:
        return {"image_kind": self.kind, "image": self.name, "image_digest": self.digest,
                "recipe_digest": self.recipe_digest}


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
        with self._lock(key):
            meta_file = entry / "image.json"
            if meta_file.exists():
                meta = json.loads(meta_file.read_text())
                return Image(kind, name, recipe_digest, meta["digest"], entry, meta["files"], True,
                             0.0, meta.get("meta", {}))
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
                (tmp / "image.json").write_text(json.dumps(meta, indent=1, default=str))
                shutil.rmtree(entry, ignore_errors=True)
                tmp.rename(entry)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return Image(kind, name, recipe_digest, digest, entry, files, False, seconds)

    def entries(self) -> list[dict]:
        out = []
        for meta_file in sorted(self.root.glob("*/image.json")):
            meta = json.loads(meta_file.read_text())
            out.append({"key": meta_file.parent.name, "digest": meta["digest"],
                        "build_seconds": meta.get("build_seconds"), "path": str(meta_file.parent)})
        return out
