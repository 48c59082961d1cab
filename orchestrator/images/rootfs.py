"""Minimal root filesystems assembled from the host's installed Debian packages.

A workload's binaries are copied with the shared libraries ldd resolves for them (and the
dynamic loader), plus the files its recipe names. The same tree is the rootfs of an OCI
bundle and the userland of a Linux guest's initramfs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import MissingToolError, TestbedError
from .recipe import ImageRecipe

LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")
BASE_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    "etc/hosts": "127.0.0.1 localhost\n",
}


def package_versions(packages: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Installed versions of Debian packages; a missing package is a clear error."""
    out: dict[str, str] = {}
    for pkg in packages:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}|${Version}", pkg], capture_output=True, text=True,
                              timeout=20, check=False)
        status, _, version = proc.stdout.partition("|")
        if proc.returncode != 0 or "installed" not in status.split():
            raise MissingToolError(f"Debian package {pkg} is not installed; run ./setup.sh (or apt-get install {pkg})")
        out[pkg] = version
    return out


def shared_libraries(binary: str) -> list[str]:
    """Absolute paths of every shared object `binary` loads, the dynamic loader included."""
    proc = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=20, check=False)
    if proc.returncode != 0:
        if "not a dynamic executable" in proc.stdout + proc.stderr:
            return []
        raise TestbedError(f"ldd {binary} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    libs = []
    for line in proc.stdout.splitlines():
        if "not found" in line:
            raise TestbedError(f"{binary} needs a library that is not installed: {line.strip()}")
        m = LDD_LINE.search(line)
        if m:
            libs.append(m.group(1))
    return libs


def copy_into(root: Path, path: str) -> None:
    """Copy a host file to the same path under root, recreating symlink chains as they are."""
    src = Path(path)
    if not src.exists():
        raise TestbedError(f"{path} does not exist on this host; is its package installed?")
    dest = root / src.relative_to("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        target = os.readlink(src)
        if not dest.exists() and not dest.is_symlink():
            dest.symlink_to(target)
        copy_into(root, str((src.parent / target).resolve()) if not os.path.isabs(target) else target)
    elif src.is_dir():
        shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
    elif not dest.exists():
        shutil.copy2(src, dest)


def recipe_inputs(recipe: ImageRecipe) -> dict:
    """Everything a rootfs depends on, for the cache key: package versions and file identities."""
    files = {}
    for path in recipe.binaries + recipe.files:
        p = Path(path)
        if p.exists():
            st = p.stat()
            files[path] = [st.st_size, int(st.st_mtime)]
    return {"packages": package_versions(recipe.packages), "binaries": list(recipe.binaries),
            "files": list(recipe.files), "directories": list(recipe.directories), "file_stats": files}


def build_rootfs(root: Path, recipe: ImageRecipe) -> None:
    package_versions(recipe.packages)
    # Merged-/usr layout like Debian 12, so /lib64/ld-linux... and /usr/lib64 resolve alike.
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc/testbed", "proc", "sys", "dev", "tmp", "run", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        if not (root / link).exists():
            (root / link).symlink_to(target)
    os.chmod(root / "tmp", 0o1777)
    for rel, text in BASE_FILES.items():
        (root / rel).write_text(text)
    for binary in recipe.binaries:
        copy_into(root, binary)
        for lib in shared_libraries(binary):
            copy_into(root, lib)
    for path in recipe.files:
        copy_into(root, path)
    for d in recipe.directories:
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
