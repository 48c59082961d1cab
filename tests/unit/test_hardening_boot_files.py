"""Kernels and initrds named in suites: resolved against the suite, recognised by their headers."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import struct
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.images.boot_files import (
    check_initrd,
    check_kernel,
    has_multiboot_header,
    initrd_format,
    kernel_format,
    resolve_suite_path,
)

from helpers import multiboot_elf

NEWC = b"070701" + b"0" * 104 + b"TRAILER!!!\0"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def bzimage(path: Path) -> Path:
    data = bytearray(4096)
    data[0x1FE:0x200] = b"\x55\xaa"
    data[0x202:0x206] = b"HdrS"
    return write(path, bytes(data))


def elf(path: Path, e_type: int) -> Path:
    return write(path, b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<H", e_type) + bytes(200))


def multiboot2(path: Path) -> Path:
    magic, arch, length = 0xE85250D6, 0, 16
    header = struct.pack("<IIII", magic, arch, length, (-(magic + arch + length)) & 0xFFFFFFFF)
    return write(path, bytes(1024) + header + bytes(64))


def test_kernels_are_recognised(tmp_path):
    assert kernel_format(bzimage(tmp_path / "bz").read_bytes()) == "bzImage"
    assert kernel_format(elf(tmp_path / "vmlinux", 2).read_bytes()) == "ELF"
    assert kernel_format(multiboot2(tmp_path / "mb2").read_bytes()) == "multiboot"
    assert has_multiboot_header(multiboot_elf(tmp_path / "rump.bin").read_bytes())
    for name in ("bz", "vmlinux", "mb2", "rump.bin"):
        check_kernel(tmp_path / name)


@pytest.mark.parametrize("content", [
    b"root:$y$j9T$abc:19000:0:99999:7:::\n",  # what kernel: ../../etc/shadow would have read
    b"",
    b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<H", 3) + bytes(200),  # ET_DYN: a PIE program, not a kernel
    b"\x7fELF",  # truncated
    struct.pack("<III", 0x1BADB002, 0, 0) + bytes(100),  # multiboot magic with a wrong checksum
])
def test_non_kernels_are_refused_with_one_line(tmp_path, content):
    p = write(tmp_path / "k", content)
    with pytest.raises(ConfigError) as exc:
        check_kernel(p)
    msg = str(exc.value)
    assert "\n" not in msg and str(p) in msg and "not a kernel" in msg
    assert "root:" not in msg  # nothing of the file's content is echoed


def test_kernel_that_is_missing_or_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        check_kernel(tmp_path / "nope")
    with pytest.raises(ConfigError, match="not a regular file"):
        check_kernel(tmp_path)


def test_the_real_guest_kernel_passes_if_cached():
    cache = Path(os.environ.get("TESTBED_CACHE", "/var/cache/testbed-tests")) / "images"
    kernels = sorted(cache.glob("linux-kernel-*/vmlinuz"))
    if not kernels:
        pytest.skip("no cached Debian guest kernel")
    check_kernel(kernels[0])


def test_initrds_are_recognised(tmp_path):
    cases = {
        "plain": NEWC,
        "crc": b"070702" + NEWC[6:],
        "gz": gzip.compress(NEWC),
        "xz": lzma.compress(NEWC),
        "bz2": bz2.compress(NEWC),
        "zst": b"\x28\xb5\x2f\xfd" + bytes(20),
        "lz4": b"\x02\x21\x4c\x18" + bytes(20),
        "microcode-then-gz": NEWC + gzip.compress(NEWC),
    }
    for name, data in cases.items():
        p = write(tmp_path / name, data)
        check_initrd(p)
        assert initrd_format(data) is not None, name


@pytest.mark.parametrize("content", [
    b"root:x:0:0:root:/root:/bin/bash\n",
    gzip.compress(b"root:x:0:0:root:/root:/bin/bash\n"),  # compressed, but not a cpio inside
    lzma.compress(b"not a cpio archive"),
    b"\x1f\x8b" + b"garbage" * 10,  # a broken gzip stream
    b"",
])
def test_non_initrds_are_refused_with_one_line(tmp_path, content):
    p = write(tmp_path / "i", content)
    with pytest.raises(ConfigError) as exc:
        check_initrd(p)
    assert "\n" not in str(exc.value) and "not an initramfs" in str(exc.value) and str(p) in str(exc.value)


def test_paths_resolve_against_the_suite_not_the_working_directory(tmp_path, monkeypatch):
    suites = tmp_path / "repo" / "suites"
    suites.mkdir(parents=True)
    (tmp_path / "repo" / "kernels").mkdir()
    suite = suites / "s.yaml"
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    assert resolve_suite_path(suite, "../kernels/vmlinuz") == tmp_path / "repo" / "kernels" / "vmlinuz"
    assert resolve_suite_path(suite, "/abs/vmlinuz") == Path("/abs/vmlinuz")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_suite_path(suite, "~/k") == tmp_path / "k"
    # A relative suite path is taken from the working directory, then the value from the suite's directory.
    (elsewhere / "s2.yaml").write_text("")
    assert resolve_suite_path("s2.yaml", "k") == elsewhere / "k"


def test_a_symlink_is_resolved_then_checked(tmp_path):
    secret = write(tmp_path / "secret", b"password=hunter2\n")
    link = tmp_path / "suites" / "vmlinuz"
    link.parent.mkdir()
    link.symlink_to(secret)
    p = resolve_suite_path(tmp_path / "suites" / "s.yaml", "vmlinuz")
    assert p == secret
    with pytest.raises(ConfigError, match="not a kernel"):
        check_kernel(p)
