"""Kernels and initrds a suite names: resolved against the suite file, and checked by their headers.

QEMU reads them as root and their digests become provenance, so a path in a suite must name
what it claims to: `kernel: ../../etc/shadow` is refused before anything reads it as a kernel.
Only the first bytes are read (and, for gzip/xz/bzip2, decompressed), never the whole file.
"""

from __future__ import annotations

import bz2
import lzma
import os
import struct
import zlib
from pathlib import Path

from ..errors import ConfigError

BZIMAGE_MAGIC_OFFSET, BZIMAGE_MAGIC = 0x202, b"HdrS"  # Linux x86 boot protocol header
ELF_MAGIC = b"\x7fELF"
ET_EXEC = 2  # kernels are linked executables; programs are mostly PIE (ET_DYN), objects ET_REL
MULTIBOOT1_MAGIC, MULTIBOOT1_SEARCH = 0x1BADB002, 8192  # within the first 8 KiB, 4-byte aligned
MULTIBOOT2_MAGIC, MULTIBOOT2_SEARCH = 0xE85250D6, 32768  # within the first 32 KiB, 8-byte aligned
CPIO_MAGICS = (b"070701", b"070702")  # newc, and newc with checksums: what the kernel unpacks
HEAD_BYTES = MULTIBOOT2_SEARCH

# Compressed-cpio magics the kernel's initramfs decompressors accept.
GZIP, XZ, BZIP2 = b"\x1f\x8b", b"\xfd7zXZ\x00", b"BZh"
COMPRESSED_ONLY_BY_MAGIC = {  # no stdlib decompressor: trust the magic
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\x02\x21\x4c\x18": "lz4 (legacy)",
    b"\x04\x22\x4d\x18": "lz4",
    b"\x89LZO": "lzo",
    b"\x5d\x00\x00": "lzma",
}


def resolve_suite_path(suite_path: Path | str, value: Path | str) -> Path:
    """`value` as the suite means it: `~` expanded, relative paths taken from the suite file's
    directory (not the working directory), symlinks resolved."""
    p = Path(os.path.expanduser(str(value)))
    if not p.is_absolute():
        p = Path(suite_path).resolve().parent / p
    return p.resolve()


def _head(path: Path, role: str, n: int = HEAD_BYTES) -> bytes:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{role} {p}: no such file")
    if not p.is_file():
        raise ConfigError(f"{role} {p}: not a regular file; give the {role} file itself")
    try:
        with open(p, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise ConfigError(f"{role} {p}: cannot read: {exc.strerror}") from None


def has_multiboot_header(head: bytes) -> bool:
    """A multiboot 1 or 2 header (magic and checksum) where a boot loader looks for it."""
    for off in range(0, min(len(head), MULTIBOOT1_SEARCH) - 11, 4):
        magic, flags, checksum = struct.unpack_from("<III", head, off)
        if magic == MULTIBOOT1_MAGIC and (magic + flags + checksum) & 0xFFFFFFFF == 0:
            return True
    for off in range(0, min(len(head), MULTIBOOT2_SEARCH) - 15, 8):
        magic, arch, length, checksum = struct.unpack_from("<IIII", head, off)
        if magic == MULTIBOOT2_MAGIC and (magic + arch + length + checksum) & 0xFFFFFFFF == 0:
            return True
    return False


def kernel_format(head: bytes) -> str | None:
    """bzImage, ELF executable or multiboot, from a file's first bytes; None for anything else."""
    if head[BZIMAGE_MAGIC_OFFSET:BZIMAGE_MAGIC_OFFSET + 4] == BZIMAGE_MAGIC:
        return "bzImage"
    if head[:4] == ELF_MAGIC and len(head) >= 18:
        e_type = struct.unpack_from("<H" if head[5] == 1 else ">H", head, 16)[0]
        return "ELF" if e_type == ET_EXEC else None
    if has_multiboot_header(head):
        return "multiboot"
    return None


def check_kernel(path: Path | str) -> None:
    """ConfigError (one line) unless `path` is a Linux bzImage, an ELF kernel or a multiboot image."""
    if kernel_format(_head(Path(path), "kernel")) is None:
        raise ConfigError(f"kernel {path}: not a kernel (no bzImage 'HdrS' header at 0x202, no multiboot "
                          f"header, not an ELF executable); give a vmlinuz/bzImage or an ELF kernel")


def _decompressed_head(head: bytes) -> bytes | None:
    """The first bytes of a gzip/xz/bzip2 stream's content, or None when `head` is not one of them."""
    try:
        if head.startswith(GZIP):
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 16)
        if head.startswith(XZ):
            return lzma.LZMADecompressor().decompress(head, max_length=16)
        if head.startswith(BZIP2):
            return bz2.BZ2Decompressor().decompress(head, max_length=16)
    except (zlib.error, lzma.LZMAError, OSError, EOFError):
        return b""
    return None


def initrd_format(head: bytes) -> str | None:
    """cpio, or the compression of a compressed cpio, from a file's first bytes; None otherwise."""
    if head[:6] in CPIO_MAGICS:
        return "cpio"  # also an early-microcode cpio followed by a compressed one
    inner = _decompressed_head(head)
    if inner is not None:
        kind = "gzip" if head.startswith(GZIP) else "xz" if head.startswith(XZ) else "bzip2"
        return f"{kind} cpio" if inner[:6] in CPIO_MAGICS else None
    for magic, kind in COMPRESSED_ONLY_BY_MAGIC.items():
        if head.startswith(magic):
            return f"{kind} (by magic)"
    return None


def check_initrd(path: Path | str) -> None:
    """ConfigError (one line) unless `path` is a newc cpio archive or a compressed one."""
    if initrd_format(_head(Path(path), "initrd", 1 << 16)) is None:
        raise ConfigError(f"initrd {path}: not an initramfs (neither a newc cpio archive nor a gzip/xz/zstd/lz4/"
                          f"bzip2-compressed one); give the initrd file the kernel unpacks")
