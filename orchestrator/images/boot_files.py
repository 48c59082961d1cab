"""Checks that a file given as a guest kernel or initrd is one (placeholder; see the hardening work)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError

ELF = b"\x7fELF"


def check_kernel(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(0x210)
    if head[:4] != ELF and head[0x202:0x206] != b"HdrS":
        raise ConfigError(f"{path}: not a kernel (no bzImage header and not an ELF file)")


def check_initrd(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(6)
    magics = (b"070701", b"070702", b"\x1f\x8b", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd", b"\x02\x21\x4c\x18", b"BZh")
    if not any(head.startswith(m) for m in magics):
        raise ConfigError(f"{path}: not an initramfs (neither a cpio archive nor a compressed one)")
