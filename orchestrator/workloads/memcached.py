"""memcached: readiness is a set followed by a get of the same value (text protocol)."""

from __future__ import annotations

from pathlib import Path

from ..tools import Tool
from .base import Connect, ImageRecipe, Workload, WorkloadOptions, expect, recv_until


class MemcachedOptions(WorkloadOptions):
    memory_mb: int = 64
    threads: int = 2


class Memcached(Workload, kind="memcached"):
    port = 11211
    Options = MemcachedOptions
    recipe = ImageRecipe(packages=("memcached",), binaries=("/usr/bin/memcached",))
    tools = (Tool("memcached", "memcached", ("memcached", "-V"), "memcached workload"),)
    options: MemcachedOptions

    def write_config(self, config_dir: Path, *, config_path: str) -> None:
        pass  # memcached takes everything on its command line

    def server_argv(self, config_path: str) -> list[str]:
        o = self.options
        return ["/usr/bin/memcached", "-u", "root", "-l", "0.0.0.0", "-p", str(self.port), "-U", "0",
                "-m", str(o.memory_mb), "-t", str(o.threads), "-c", "1024"]

    def probe(self, connect: Connect) -> bool:
        with connect() as s:
            s.sendall(b"set testbed:probe 0 0 2\r\nok\r\n")
            got = recv_until(s, b"\r\n")
            expect(got == b"STORED\r\n", "set testbed:probe", got)
            s.sendall(b"get testbed:probe\r\n")
            got = recv_until(s, b"END\r\n")
            return expect(got == b"VALUE testbed:probe 0 2\r\nok\r\nEND\r\n", "get testbed:probe", got)
