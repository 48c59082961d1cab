"""Byte sizes as suites write them (4k, 16K, 1m, 1.5MiB, 512) and the static file names the nginx
workload writes and HTTP load generators fetch (4k.bin, 1m.bin), shared so that neither side
imports the other."""

from __future__ import annotations

import re

UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
         "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
MAX_STATIC_FILE = 1 << 30


def parse_size(value: str | int) -> int:
    """Bytes for '4k', '1m', '1.5MiB' or 4096; ValueError naming the accepted forms otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        n = value
    else:
        text = str(value)
        if text.endswith(".bin"):  # a file name as the workload writes it
            text = text[:-4]
        m = SIZE.match(text)
        if not m or m.group(2).lower() not in UNITS:
            raise ValueError(f"{value!r} is not a size; write e.g. 512, 4k, 64K, 1m or 2MiB")
        n = int(float(m.group(1)) * UNITS[m.group(2).lower()])
    if n < 1:
        raise ValueError(f"{value!r}: a size must be at least 1 byte")
    return n


def size_label(n: int) -> str:
    """4096 -> '4k', 1048576 -> '1m', 1000 -> '1000' (exact, so labels round-trip)."""
    for suffix, unit in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def static_file_name(size: str | int) -> str:
    """The file nginx serves for a size: '4k' -> '4k.bin'."""
    return f"{size_label(parse_size(size))}.bin"
