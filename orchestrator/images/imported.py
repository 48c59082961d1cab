"""Images users bring: built with a project's own tools, copied into the content-addressed cache.

`testbed images import osv PATH [--name NAME]` (PATH: a directory with loader-stripped.elf and
usr.img, or those two files) and `testbed images import rumprun APP.bin [--name NAME]
[--blk IMAGE:MOUNTPOINT ...]` copy the files in; the cache key is the digest of their bytes, so
every sample of a launch from them records the same image_digest, and re-importing the same
files is a cache hit. An import is looked up later by (kind, name); the newest import of a name
wins.

testbed contains none of these projects' code or binaries: images/osv/README.md and
images/rumprun/README.md say how to build them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, MissingToolError
from .cache import Image, ImageCache, sha256_file, sha256_json

KINDS = ("osv", "rumprun")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
MOUNTPOINT = re.compile(r"^/[A-Za-z0-9._/-]*$")
OSV_KERNEL, OSV_DISK = "loader-stripped.elf", "usr.img"
META_FILE = "import.json"
QEMU_IMG_TIMEOUT = 60.0
ELF_MAGIC = b"\x7fELF"


class ImageMissingError(MissingToolError):
    """A platform's image has not been imported; the message names the import command."""


def import_command(kind: str, name: str | None = None) -> str:
    return f"testbed images import {kind} PATH" + (f" --name {name}" if name else "")


@dataclass(frozen=True)
class BlkSource:
    """A data disk for rumprun, mounted at `mountpoint` in the guest (e.g. data.iso:/data)."""

    path: Path
    mountpoint: str

    @classmethod
    def parse(cls, text: str) -> BlkSource:
        path, sep, mountpoint = text.rpartition(":")
        if not sep or not path or not MOUNTPOINT.match(mountpoint):
            raise ConfigError(f"--blk {text!r}: expected IMAGE:MOUNTPOINT, e.g. images/data.iso:/data")
        return cls(Path(path), mountpoint)


def disk_format(path: Path) -> str:
    """raw or qcow2, from the file's own header (qemu-img info)."""
    if shutil.which("qemu-img") is None:
        raise MissingToolError("qemu-img is not installed; apt-get install qemu-utils")
    try:
        res = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True,
                             timeout=QEMU_IMG_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MissingToolError(f"qemu-img info {path} did not answer within {QEMU_IMG_TIMEOUT:g} s") from exc
    if res.returncode != 0:
        raise ConfigError(f"{path}: not a disk image qemu-img understands: {res.stderr.strip()[:200]}")
    fmt = json.loads(res.stdout).get("format")
    if fmt not in ("raw", "qcow2"):
        raise ConfigError(f"{path}: disk format {fmt!r}; convert it with qemu-img convert -O qcow2")
    return fmt


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == ELF_MAGIC


def osv_sources(paths: list[Path]) -> dict[str, Path]:
    """{'kernel': loader-stripped.elf, 'disk': usr.img} from a directory or the two files."""
    if len(paths) == 1 and paths[0].is_dir():
        d = paths[0]
        kernel, disk = d / OSV_KERNEL, d / OSV_DISK
        if not kernel.is_file():  # OSv's build tree keeps it under build/last/
            for alt in (d / "build" / "last", d / "last"):
                if (alt / OSV_KERNEL).is_file():
                    kernel, disk = alt / OSV_KERNEL, alt / OSV_DISK
                    break
        found = {"kernel": kernel, "disk": disk}
    else:
        found = {}
        for p in paths:
            if p.name.endswith(".elf"):
                found["kernel"] = p
            else:
                found["disk"] = p
    for role, want in (("kernel", OSV_KERNEL), ("disk", OSV_DISK)):
        p = found.get(role)
        if p is None or not p.is_file():
            where = paths[0] if len(paths) == 1 else ", ".join(map(str, paths))
            raise ConfigError(f"OSv import: no {want} in {where}; give the directory holding {OSV_KERNEL} and "
                              f"{OSV_DISK} (OSv's build/last) or the two files")
    if not _is_elf(found["kernel"]):
        raise ConfigError(f"OSv import: {found['kernel']} is not an ELF file (expected OSv's {OSV_KERNEL})")
    return found


def import_image(kind: str, paths: list[Path], *, name: str | None = None, blk: list[BlkSource] | None = None,
                 cache: ImageCache | None = None) -> Image:
    """Copy a user-built image into the cache; returns it (cache_hit when the same bytes were imported)."""
    cache = cache or ImageCache()
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise ConfigError(f"{kind} import: {p} does not exist")
    blk = list(blk or [])
    sources: dict[str, Path]
    if kind == "osv":
        if blk:
            raise ConfigError("--blk is for rumprun images; OSv keeps its files in usr.img")
        sources = osv_sources(paths)
        default_name = paths[0].resolve().name if paths[0].is_dir() else "osv"
        formats = {"disk": disk_format(sources["disk"])}
    elif kind == "rumprun":
        if len(paths) != 1 or not paths[0].is_file():
            raise ConfigError("rumprun import: give one baked unikernel (the ELF rumprun-bake wrote, e.g. nginx.bin)")
        if not _is_elf(paths[0]):
            raise ConfigError(f"rumprun import: {paths[0]} is not an ELF file (expected rumprun-bake's output)")
        sources = {"kernel": paths[0]}
        formats = {}
        for i, b in enumerate(blk):
            if not b.path.is_file():
                raise ConfigError(f"--blk: {b.path} does not exist")
            sources[f"blk{i}"] = b.path
            formats[f"blk{i}"] = disk_format(b.path)
        default_name = paths[0].name.split(".")[0]
    else:
        raise ConfigError(f"images import: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    name = name or default_name
    if not NAME.match(name):
        raise ConfigError(f"image name {name!r}: use letters, digits, '.', '_', '+', '-' (at most 64)")
    digests = {role: sha256_file(p) for role, p in sources.items()}
    # What the artifact is, from its contents only (no source paths: the digest must not depend on them).
    meta = {"kind": kind, "formats": formats, "source_names": {r: p.name for r, p in sources.items()},
            "mountpoints": {f"blk{i}": b.mountpoint for i, b in enumerate(blk)}}
    recipe = {"import_name": name, "inputs": digests, "layout": meta}

    def build(dest: Path) -> dict[str, str]:
        files = {}
        for role, src in sources.items():
            target = f"{role}-{src.name}"
            shutil.copyfile(src, dest / target)
            if sha256_file(dest / target) != digests[role]:
                raise ConfigError(f"{src} changed while it was being imported; import it again")
            files[role] = target
        (dest / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
        files["meta"] = META_FILE
        return files

    image = cache.ensure(kind, name, recipe, build)
    # The newest import of a name wins at lookup, a re-import of older bytes included. Kept beside
    # the entry, not in it: the entry's files are exactly what its digest covers.
    stamps = cache.root / ".imports"
    stamps.mkdir(exist_ok=True)
    (stamps / image.path.name).write_text(f"{time.time():.6f}\n")
    return image


def _imported_at(path: Path) -> float:
    try:
        return float((path.parent / ".imports" / path.name).read_text().strip())
    except (OSError, ValueError):
        return 0.0


def imported_images(kind: str, cache: ImageCache | None = None) -> list[Image]:
    """Every imported image of `kind`, newest import first."""
    cache = cache or ImageCache()
    out = []
    for meta_file in cache.root.glob(f"{kind}-*/image.json"):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        recipe = meta.get("recipe") or {}
        if "import_name" not in recipe:
            continue
        name = recipe["import_name"]
        recipe_digest = sha256_json({"kind": kind, "name": name, **recipe})  # as ImageCache.ensure computed it
        out.append(Image(kind, name, recipe_digest, meta["digest"], meta_file.parent, meta["files"], True, 0.0,
                         meta.get("meta", {})))
    out.sort(key=lambda i: _imported_at(i.path), reverse=True)
    return out


def find_imported(kind: str, name: str, cache: ImageCache | None = None) -> Image:
    """The newest import of (kind, name); ImageMissingError naming the import command otherwise."""
    for img in imported_images(kind, cache):
        if img.name == name:
            img.meta = layout(img)
            return img
    cache = cache or ImageCache()
    others = sorted({i.name for i in imported_images(kind, cache)})
    have = f" (imported {kind} images: {', '.join(others)})" if others else ""
    readme = f"images/{kind}/README.md"
    raise ImageMissingError(f"no {kind} image named {name!r} in {cache.root}{have}; build one ({readme}) and run "
                            f"`{import_command(kind, name)}`")


def layout(image: Image) -> dict:
    """The import's description (formats, original file names, rumprun mountpoints)."""
    try:
        return json.loads(image.file("meta").read_text())
    except (KeyError, OSError, json.JSONDecodeError):
        return {}
