"""testbed's own small C programs, compiled once into the cache and keyed by their inputs.

A workload whose server is a testbed program (the syscall micro-benchmark server) names the
binary this module builds. The cache key is the sha256 of the source, the compiler's version
and the flags, so the binary is rebuilt exactly when one of them changes. Programs are linked
statically: the same file runs as a native process, in a runc or gVisor container and in a
Linux guest without copying libraries.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
from functools import cache
from pathlib import Path

from .. import paths
from ..errors import MissingToolError, TestbedError

CFLAGS = ("-static", "-O2", "-Wall", "-Wextra")
COMPILE_TIMEOUT = 120
# Debian packages the build needs (gcc, and the static glibc in libc6-dev); part of the cache key.
BUILD_PACKAGES = ("gcc", "libc6-dev")
# A binary is copied into images at its host path. Containers mount fresh file systems over these
# directories, which would hide it there, so a cache below one of them compiles to FALLBACK_ROOT instead.
SHADOWED = ("/tmp", "/run", "/dev", "/proc", "/sys", "/etc/testbed")
FALLBACK_ROOT = Path("/var/cache/testbed")


def compile_root() -> Path:
    root = paths.cache_dir().resolve()
    if any(root == Path(s) or Path(s) in root.parents for s in SHADOWED):
        return FALLBACK_ROOT
    return root


def _compiler_version(cc: str) -> str:
    try:
        proc = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except FileNotFoundError:
        raise MissingToolError(f"{cc} is not installed; it compiles testbed's C programs (apt-get install "
                               f"{' '.join(BUILD_PACKAGES)})") from None
    return proc.stdout.split("\n")[0].strip()


def compile_key(source: Path, cc: str = "gcc", cflags: tuple[str, ...] = CFLAGS) -> str:
    h = hashlib.sha256()
    h.update(source.read_bytes())
    h.update(b"\0" + _compiler_version(cc).encode())
    h.update(b"\0" + " ".join(cflags).encode())
    return h.hexdigest()


@cache
def _compiled(source: str, name: str, cache_root: str, cc: str, cflags: tuple[str, ...]) -> Path:
    src = Path(source)
    key = compile_key(src, cc, cflags)
    out_dir = Path(cache_root) / "compiled" / f"{name}-{key[:16]}"
    binary = out_dir / name
    if binary.exists():
        return binary
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{name}-{key[:16]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / f".{name}.tmp"
        argv = [cc, *cflags, "-o", str(tmp), str(src)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise TestbedError(f"compiling {src.name} took more than {COMPILE_TIMEOUT} s") from None
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).split("\n")[-3:]
            hint = " (is libc6-dev installed? static linking needs it)" if "cannot find -lc" in proc.stderr else ""
            raise TestbedError(f"compiling {src.name} failed{hint}: {' | '.join(tail)}")
        (out_dir / "source.sha256").write_text(hashlib.sha256(src.read_bytes()).hexdigest() + "\n")
        os.replace(tmp, binary)  # atomic: a half-written binary never looks finished
    return binary


def compiled_binary(source: Path, name: str, *, cc: str = "gcc", cflags: tuple[str, ...] = CFLAGS) -> Path:
    """The path of `source` compiled with `cc cflags` in the cache (building it the first time)."""
    return _compiled(str(source), name, str(compile_root()), cc, tuple(cflags))
