"""nginx: readiness is HTTP 200 for the index page with the exact body testbed wrote."""

from __future__ import annotations

from pathlib import Path

from .base import Connect, ImageRecipe, Workload, WorkloadOptions, expect, recv_until

INDEX_BODY = "testbed nginx ready\n"
# Static files for wrk: name -> size in bytes (the 4K..128K files of the unikernel papers' nginx runs).
STATIC_FILES = {"4k.bin": 4 << 10, "16k.bin": 16 << 10, "64k.bin": 64 << 10, "128k.bin": 128 << 10}


class NginxOptions(WorkloadOptions):
    workers: int = 1


class Nginx(Workload):
    name = "nginx"
    port = 80
    Options = NginxOptions
    recipe = ImageRecipe(
        packages=("nginx-light",), binaries=("/usr/sbin/nginx",), files=("/etc/nginx/mime.types",),
        directories=("/tmp", "/var/log/nginx", "/var/lib/nginx"),
    )
    version_argv = ["nginx", "-v"]

    def write_config(self, config_dir: Path, *, config_path: str) -> None:
        self.render("nginx.conf.j2", config_dir / "nginx.conf", port=self.port, options=self.options,
                    root=f"{config_path}/www", prefix=config_path)
        write_docroot(config_dir / "www")

    def server_argv(self, config_path: str) -> list[str]:
        return ["/usr/sbin/nginx", "-p", config_path, "-c", f"{config_path}/nginx.conf", "-e", "stderr"]

    def probe(self, connect: Connect) -> bool:
        with connect() as s:
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: testbed\r\n\r\n")
            data = recv_until(s, b"\r\n\r\n")
            head, _, body = data.partition(b"\r\n\r\n")
            length = content_length(head)
            expect(head.startswith(b"HTTP/1.1 200") and length is not None, "GET /index.html", head)
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


def write_docroot(www: Path) -> list[Path]:
    """The probe's index.html and the files wrk fetches; also for unikernel images built by hand."""
    www.mkdir(parents=True, exist_ok=True)
    index = www / "index.html"
    index.write_text(INDEX_BODY)
    files = [index]
    for name, size in STATIC_FILES.items():
        # Deterministic, incompressible-looking content: bytes of a counter pattern.
        (www / name).write_bytes(bytes((i * 131 + 7) & 0xFF for i in range(size)))
        files.append(www / name)
    return files
