"""redis-server: readiness is PING answered with +PONG and a SET/GET round trip."""

from __future__ import annotations

from pathlib import Path

from ..tools import Tool
from .base import Connect, ImageRecipe, Workload, WorkloadOptions, expect, recv_until


class RedisOptions(WorkloadOptions):
    maxmemory_mb: int = 256
    io_threads: int = 1


class Redis(Workload, kind="redis"):
    port = 6379
    Options = RedisOptions
    recipe = ImageRecipe(packages=("redis-server",), binaries=("/usr/bin/redis-server",), directories=("/tmp",))
    tools = (Tool("redis-server", "redis-server", ("redis-server", "--version"), "redis workload"),)
    options: RedisOptions

    def write_config(self, config_dir: Path, *, config_path: str) -> None:
        self.render("redis.conf.j2", config_dir / "redis.conf", port=self.port, options=self.options,
                    workdir="/tmp")

    def server_argv(self, config_path: str) -> list[str]:
        return ["/usr/bin/redis-server", f"{config_path}/redis.conf"]

    def probe(self, connect: Connect) -> bool:
        with connect() as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            got = recv_until(s, b"\r\n")
            expect(got.startswith(b"+PONG"), "PING", got)  # e.g. -DENIED from a protected-mode server
            s.sendall(b"*3\r\n$3\r\nSET\r\n$13\r\ntestbed:probe\r\n$2\r\nok\r\n")
            got = recv_until(s, b"\r\n")
            expect(got.startswith(b"+OK"), "SET testbed:probe", got)
            s.sendall(b"*2\r\n$3\r\nGET\r\n$13\r\ntestbed:probe\r\n")
            got = recv_until(s, b"ok\r\n")
            return expect(got.endswith(b"$2\r\nok\r\n"), "GET testbed:probe", got)
