"""Images users bring: built with a project's own tools, copied into the content-addressed cache.

`testbed images import osv PATH [--name NAME]` (PATH: a directory with loader-stripped.elf and
usr.img, or those two files) and `testbed images import rumprun APP.bin [--name NAME]
[--blk IMAGE:MOUNTPOINT ...]` copy the files in; the cache key is the digest of their bytes, so
every sample of a launch from them records the same image_digest, and re-importing the same
files is a cache hit. An import is looked up later by (kind, name); the newest import of a name
wins; `testbed images remove NAME|DIGEST` removes every import of a name.

At import the files' shape is checked (OSv: an ELF kernel and a non-empty raw/qcow2 usr.img with
OSv's boot sector; rumprun: an ELF with a multiboot header), OSv's build manifest is read to warn
when the application's binary is not in the image, and the application's version is read from the
image's own bytes (never from the host's binary) for provenance. At lookup the cache entry is
verified against its digest; a changed import is refused, not used.

testbed contains none of these projects' code or binaries: images/osv/README.md and
images/rumprun/README.md say how to build them.
"""

from __future__ import annotations

import json
import logging
import mmap
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, MissingToolError
from .boot_files import has_multiboot_header
from .cache import META_FILE as CACHE_META_FILE
from .cache import Image, ImageCache, ImageChangedError, sha256_file, sha256_json

log = logging.getLogger(__name__)

KINDS = ("osv", "rumprun")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
MOUNTPOINT = re.compile(r"^/[A-Za-z0-9._/-]*$")
OSV_KERNEL, OSV_DISK = "loader-stripped.elf", "usr.img"
META_FILE = "import.json"
QEMU_IMG_TIMEOUT = 60.0
ELF_MAGIC = b"\x7fELF"
MBR_SIGNATURE = b"\x55\xaa"  # bytes 510-511 of OSv's boot sector (arch/x64/boot16.S)
MBR_PARTITIONS = slice(0x1BE, 0x1FE)  # scripts/imgedit.py setpartition writes OSv's file system entry here
OSV_MANIFESTS = ("usr.manifest", "bootfs.manifest")  # what OSv's scripts/build put in the image, in build/last

# workload -> the binary an image must carry for it
WORKLOAD_BINARIES = {"redis": "redis-server", "nginx": "nginx", "memcached": "memcached"}
# binary -> (marker the image must contain, version pattern). nginx and memcached embed
# "nginx/1.22.1" and "memcached 1.6.18"; redis has no such literal, only a bare "7.0.15"
# (REDIS_VERSION) among other bare versions (its commands' "since" fields, never newer than the
# release), so for redis the highest bare N.N.N with one-digit major and minor wins.
APP_VERSION_PATTERNS: dict[str, tuple[bytes | None, re.Pattern[bytes], bool]] = {
    "nginx": (None, re.compile(rb"nginx/(\d+\.\d+\.\d+)"), False),
    "memcached": (None, re.compile(rb"memcached (\d+\.\d+\.\d+)"), False),
    "redis-server": (b"redis_version:", re.compile(rb"\x00([2-9]\.\d\.\d{1,2})\x00"), True),
}


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


def _qemu_img(argv: list[str], path: Path) -> subprocess.CompletedProcess:
    if shutil.which("qemu-img") is None:
        raise MissingToolError("qemu-img is not installed; apt-get install qemu-utils")
    try:
        return subprocess.run(["qemu-img", *argv], capture_output=True, text=True, timeout=QEMU_IMG_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MissingToolError(f"qemu-img {argv[0]} {path} did not answer within {QEMU_IMG_TIMEOUT:g} s") from exc


def disk_info(path: Path) -> tuple[str, int]:
    """(raw or qcow2, virtual size in bytes), from the file's own header (qemu-img info)."""
    res = _qemu_img(["info", "--output=json", str(path)], path)
    if res.returncode != 0:
        raise ConfigError(f"{path}: not a disk image qemu-img understands: {res.stderr.strip()[:200]}")
    info = json.loads(res.stdout)
    fmt = info.get("format")
    if fmt not in ("raw", "qcow2"):
        raise ConfigError(f"{path}: disk format {fmt!r}; convert it with qemu-img convert -O qcow2")
    return fmt, int(info.get("virtual-size") or 0)


def disk_format(path: Path) -> str:
    """raw or qcow2, from the file's own header (qemu-img info)."""
    return disk_info(path)[0]


def first_sector(path: Path, fmt: str) -> bytes:
    """The first 512 bytes the guest sees of a raw or qcow2 disk."""
    if fmt == "raw":
        with open(path, "rb") as fh:
            return fh.read(512)
    with tempfile.TemporaryDirectory(prefix="testbed-sector-") as tmp:
        out = Path(tmp) / "sector0"
        res = _qemu_img(["dd", "-f", fmt, "-O", "raw", "bs=512", "count=1", f"if={path}", f"of={out}"], path)
        if res.returncode != 0:
            raise ConfigError(f"{path}: cannot read its first sector: {res.stderr.strip()[:200]}")
        return out.read_bytes()[:512]


def check_osv_disk(path: Path) -> str:
    """usr.img's format, after checking it has the shape OSv's build gives it: not empty, OSv's
    boot sector (0x55AA signature) and a partition entry for its file system."""
    fmt, size = disk_info(path)
    if path.stat().st_size == 0 or size < 1024:
        raise ConfigError(f"OSv import: {path} is empty ({size} bytes); scripts/build writes usr.img last, so the "
                          f"build did not finish: rebuild it (images/osv/README.md)")
    sector = first_sector(path, fmt)
    if sector[510:512] != MBR_SIGNATURE or not any(sector[MBR_PARTITIONS]):
        raise ConfigError(f"OSv import: {path} is a {fmt} disk without OSv's boot sector and partition table; "
                          f"expected the usr.img OSv's scripts/build writes")
    return fmt


def check_rumprun_kernel(path: Path) -> None:
    """An ELF with a multiboot header: what `rumprun-bake hw_virtio` writes (and QEMU boots with -kernel)."""
    if not _is_elf(path):
        raise ConfigError(f"rumprun import: {path} is not an ELF file (expected rumprun-bake's output)")
    with open(path, "rb") as fh:
        head = fh.read(32768)
    if not has_multiboot_header(head):
        raise ConfigError(f"rumprun import: {path} is an ELF file without a multiboot header, so it is not a baked "
                          f"rumprun unikernel; give the file `rumprun-bake hw_virtio OUT.bin PROGRAM` wrote")


def scan_app_versions(files: list[Path]) -> dict[str, str]:
    """binary -> version, read from the image's own bytes (APP_VERSION_PATTERNS); binaries not found are left out."""
    found: dict[str, str] = {}
    for path in files:
        if path.stat().st_size == 0:
            continue
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for binary, (marker, pattern, highest) in APP_VERSION_PATTERNS.items():
                if binary in found or (marker is not None and data.find(marker) < 0):
                    continue
                if highest:
                    versions = {m.group(1).decode() for m in pattern.finditer(data)}
                    if versions:
                        found[binary] = max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))
                else:
                    m = pattern.search(data)
                    if m:
                        found[binary] = m.group(1).decode()
    return found


def binaries_for(name: str) -> list[str]:
    """The binaries an image named `name` is meant to carry: its workload's when the name says it
    (redis, it-redis, nginx-1.22), else any testbed knows."""
    tokens = set(re.split(r"[-_.+]", name))
    named = [b for w, b in WORKLOAD_BINARIES.items() if w in tokens or b in tokens]
    return named or list(WORKLOAD_BINARIES.values())


def manifest_guest_names(manifest: Path) -> set[str]:
    """Base names of the guest paths an OSv manifest (`guest path: host path` lines) lists."""
    names = set()
    for line in manifest.read_text(errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("["):
            continue
        guest = line.split(":", 1)[0].strip()
        names.add(guest.rstrip("/").rsplit("/", 1)[-1])
    return names


def osv_manifest_warning(disk: Path, name: str) -> str | None:
    """One line when OSv's build manifest beside usr.img lacks the workload's binary, or is absent."""
    manifests = [disk.parent / m for m in OSV_MANIFESTS if (disk.parent / m).is_file()]
    wanted = binaries_for(name)
    if not manifests:
        return (f"OSv import: no {' or '.join(OSV_MANIFESTS)} beside {disk}, so testbed could not check that the "
                f"image carries {' or '.join(wanted)}; import from OSv's build/last to have it checked")
    names: set[str] = set()
    for m in manifests:
        names |= manifest_guest_names(m)
    if any(b in names for b in wanted):
        return None
    return (f"OSv import: {manifests[0]} lists no {' or '.join(wanted)}, so this image boots without the application "
            f"(was build/last/append.manifest written before scripts/build ran? see images/osv/README.md)")


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
        found: dict[str, Path] = {"kernel": kernel, "disk": disk}
    else:
        found = {}
        for p in paths:
            if p.name.endswith(".elf"):
                found["kernel"] = p
            else:
                found["disk"] = p
    for role, want in (("kernel", OSV_KERNEL), ("disk", OSV_DISK)):
        given = found.get(role)
        if given is None or not given.is_file():
            where = paths[0] if len(paths) == 1 else ", ".join(map(str, paths))
            raise ConfigError(f"OSv import: no {want} in {where}; give the directory holding {OSV_KERNEL} and "
                              f"{OSV_DISK} (OSv's build/last) or the two files")
    if not _is_elf(found["kernel"]):
        raise ConfigError(f"OSv import: {found['kernel']} is not an ELF file (expected OSv's {OSV_KERNEL})")
    return found


def import_image(kind: str, paths: list[Path], *, name: str | None = None, blk: list[BlkSource] | None = None,
                 cache: ImageCache | None = None, warn: Callable[[str], None] | None = None) -> Image:
    """Copy a user-built image into the cache; returns it (cache_hit when the same bytes were imported).
    `warn` gets one line per doubt about the image that does not stop the import (default: logged)."""
    cache = cache or ImageCache()
    warn = warn or log.warning
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
        formats = {"disk": check_osv_disk(sources["disk"])}
        scanned = [sources["kernel"], sources["disk"]]
    elif kind == "rumprun":
        if len(paths) != 1 or not paths[0].is_file():
            raise ConfigError("rumprun import: give one baked unikernel (the ELF rumprun-bake wrote, e.g. nginx.bin)")
        check_rumprun_kernel(paths[0])
        sources = {"kernel": paths[0]}
        scanned = [paths[0]]
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
    if kind == "osv":
        doubt = osv_manifest_warning(sources["disk"], name)
        if doubt:
            warn(doubt)
    digests = {role: sha256_file(p) for role, p in sources.items()}
    # What the artifact is, from its contents only (no source paths: the digest must not depend on them).
    app_versions = scan_app_versions(scanned)
    meta = {"kind": kind, "formats": formats, "source_names": {r: p.name for r, p in sources.items()},
            "mountpoints": {f"blk{i}": b.mountpoint for i, b in enumerate(blk)}, "app_versions": app_versions}
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
    image.file_sha256, image.app_versions = digests, app_versions
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
                         meta.get("meta", {}), file_sha256=dict(recipe.get("inputs") or {}),
                         app_versions=dict((recipe.get("layout") or {}).get("app_versions") or {})))
    out.sort(key=lambda i: _imported_at(i.path), reverse=True)
    return out


def find_imported(kind: str, name: str, cache: ImageCache | None = None) -> Image:
    """The newest import of (kind, name), verified against its digest; ImageMissingError naming the
    import command when there is none, ImageChangedError when its files changed since the import."""
    cache = cache or ImageCache()
    for img in imported_images(kind, cache):
        if img.name == name:
            try:
                cache.verify(img)
            except ImageChangedError as exc:
                raise ImageChangedError(f"{exc}; it is not used: import it again (`{import_command(kind, name)}`) "
                                        f"or remove it (`testbed images remove {name}`)") from None
            img.meta = layout(img)
            return img
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


def imported_app_version(image: Image, binary: str | None = None) -> str:
    """The version of `binary` (default: the image's workload's, from its name) the image itself
    carries, as found at import; "unknown" when it was not found or the import predates the scan.
    Provenance records this for unikernels, never the version of the host's binary."""
    versions = image.app_versions or (image.meta or {}).get("app_versions") or layout(image).get("app_versions") or {}
    if binary is None:
        named = [b for b in binaries_for(image.name) if b in versions]
        if len(named) != 1:
            return "unknown"
        binary = named[0]
    return versions.get(binary, "unknown")


def remove_images(ref: str, *, kind: str | None = None, cache: ImageCache | None = None) -> list[str]:
    """Remove cache entries named by `ref`: an import name (every import of it, so an older one is
    never silently used instead), a cache key from `testbed images list`, or a digest prefix (at
    least 8 hex digits). Returns one line per removed entry; ConfigError when nothing or more than
    one kind matches."""
    cache = cache or ImageCache()
    hexref = ref.lower().removeprefix("sha256:")
    matches: list[tuple[Path, str | None, str]] = []
    for meta_file in sorted(cache.root.glob(f"*/{CACHE_META_FILE}")):
        entry = meta_file.parent
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError):
            meta = {}
        recipe = meta.get("recipe") or {}
        import_kind = (recipe.get("layout") or {}).get("kind") if "import_name" in recipe else None
        if kind is not None and import_kind != kind:
            continue
        digest = str(meta.get("digest", ""))
        by_name = import_kind is not None and recipe.get("import_name") == ref
        by_digest = len(hexref) >= 8 and re.fullmatch(r"[0-9a-f]+", hexref) is not None and digest.startswith(hexref)
        if by_name or by_digest or entry.name == ref:
            label = f"{import_kind} image {recipe['import_name']}" if import_kind else f"image {entry.name}"
            matches.append((entry, import_kind, f"{label} sha256:{digest[:16]}"))
    if not matches:
        raise ConfigError(f"images remove: no image named {ref!r} or with that digest in {cache.root}"
                          f"{f' (kind {kind})' if kind else ''}; see `testbed images list`")
    kinds = {k for _, k, _ in matches if k}
    if kind is None and len(kinds) > 1:
        raise ConfigError(f"images remove: {ref!r} names imported images of kinds {', '.join(sorted(kinds))}; "
                          f"add --kind {'|'.join(sorted(kinds))}")
    done = []
    for entry, _, label in matches:
        cache.remove(entry)
        done.append(f"removed {label} ({entry})")
    return done
