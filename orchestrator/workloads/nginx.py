"""nginx: readiness is HTTP 200 for the index page with the exact body testbed wrote.

The document root holds index.html (the probe's page) and one file per size in the `files`
option (4k.bin, 1m.bin, ...: incompressible-looking bytes), which HTTP load generators fetch.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ..sizes import MAX_STATIC_FILE, parse_size, static_file_name
from ..tools import Tool
from .base import Connect, ImageRecipe, Workload, WorkloadOptions, expect, recv_until

INDEX_BODY = "testbed nginx ready\n"
# The 4K..128K files of the unikernel papers' nginx runs, written unless the suite says otherwise.
DEFAULT_FILES = ("4k", "16k", "64k", "128k")


class NginxOptions(WorkloadOptions):
    workers: int = Field(1, ge=1, le=64)
    files: list[str] = Field(default_factory=lambda: list(DEFAULT_FILES), min_length=1,
                             description="sizes of the static files to serve, e.g. [4k, 1m]")
    # runsc 20221219 (Debian 12) stalls sending a file of 1 MiB with sendfile(2): the first request
    # never completes. A suite comparing large downloads turns it off on every platform alike.
    sendfile: bool = Field(True, description="nginx's sendfile on/off")

    @field_validator("files")
    @classmethod
    def _sizes(cls, values: list[str]) -> list[str]:
        out = []
        for v in values:
            n = parse_size(v)
            if n > MAX_STATIC_FILE:
                raise ValueError(f"{v!r}: at most 1g per file")
            out.append(static_file_name(n).removesuffix(".bin"))
        if len(set(out)) != len(out):
            raise ValueError("a size is listed twice")
        return out

    def file_names(self) -> list[str]:
        return [static_file_name(f) for f in self.files]


class Nginx(Workload, kind="nginx"):
    port = 80
    Options = NginxOptions
    options: NginxOptions
    recipe = ImageRecipe(
        packages=("nginx-light",), binaries=("/usr/sbin/nginx",), files=("/etc/nginx/mime.types",),
        directories=("/tmp", "/var/log/nginx", "/var/lib/nginx"),
    )
    tools = (Tool("nginx", "nginx-light", ("nginx", "-v"), "nginx workload"),)

    def add_needs(self, needs: dict[str, list]) -> None:
        files = [f for f in needs.get("files", []) if f not in self.options.files]
        if files:
            self.options = self.options.model_copy(update={"files": [*self.options.files, *files]})

    def write_config(self, config_dir: Path, *, config_path: str) -> None:
        self.render("nginx.conf.j2", config_dir / "nginx.conf", port=self.port, options=self.options,
                    root=f"{config_path}/www", prefix=config_path)
        write_docroot(config_dir / "www", self.options.files)

    def server_argv(self, config_path: str) -> list[str]:
        return ["/usr/sbin/nginx", "-p", config_path, "-c", f"{config_path}/nginx.conf", "-e", "stderr"]

    def probe(self, connect: Connect) -> bool:
        with connect() as s:
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: testbed\r\n\r\n")
            data = recv_until(s, b"\r\n\r\n")
            head, _, body = data.partition(b"\r\n\r\n")
            length = content_length(head)
            expect(head.startswith(b"HTTP/1.1 200") and length is not None, "GET /index.html", head)
            assert length is not None
            while len(body) < length:
                chunk = s.recv(4096)
                if not chunk:
                    break
                body += chunk
        return expect(body == INDEX_BODY.encode(), "GET /index.html (body)", body)


def content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


def file_bytes(size: int) -> bytes:
    """Deterministic, incompressible-looking content of `size` bytes (a counter pattern)."""
    block = bytes((i * 131 + 7) & 0xFF for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def write_docroot(www: Path, sizes: list[str] | tuple[str, ...] = DEFAULT_FILES) -> list[Path]:
    """The probe's index.html and the static files; also for unikernel images built by hand."""
    www.mkdir(parents=True, exist_ok=True)
    index = www / "index.html"
    index.write_text(INDEX_BODY)
    files = [index]
    for size in sizes:
        path = www / static_file_name(size)
        n = parse_size(size)
        if not (path.exists() and path.stat().st_size == n):
            path.write_bytes(file_bytes(n))
        files.append(path)
    return files
