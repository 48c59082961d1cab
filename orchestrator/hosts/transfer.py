"""Copying trees and files to a lab host: one tar stream, then every file's sha256 checked there.

* `put_tree(host, local, remote)`: the tree at `remote` (per-launch files: a bundle, a config).
* `stage_tree(host, local, name, digest, ledger)`: an image in the host's own cache,
  `<testbed_home>/cache/images/<name>`, copied only when the entry there is missing or is not the
  content `digest` names; a present entry is checked (sha256 of every file, on the host) once per
  process. A copy goes to a temporary directory (in the ledger, so gc removes a half copy), is
  checked, and only then renamed into place, so the cache never holds a copy that was not checked.
* `ship_file(host, local)`: one file of testbed's (a wrapper script, a kernel the suite names) in
  `<testbed_home>/cache/files/`, named by its sha256.

A mismatch is a TransferError naming the file and both digests; the bad copy is removed.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import tarfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from ..digest import sha256_file
from ..errors import CommandTimeout, TransferError
from ..ledger import Reclaimer
from .base import Host

if TYPE_CHECKING:
    from ..ledger import Ledger

log = logging.getLogger(__name__)

DIGEST_MARKER = ".testbed-digest"  # written last into a checked cache entry: the content digest it holds
SKIP = frozenset({".manifest.json"})  # the local cache's stat manifest: meaningless on another host
CHUNK = 1 << 16
PART = ".tbpart-"  # in the names of copies not yet checked
# sha256 of every regular file and the target of every symlink, one per line, sorted: `H <sha> <path>`
# and `L <target> <path>`, paths relative to the tree (names testbed made: no newlines in them).
LISTING_SCRIPT = (
    'cd "$1" || exit 3; '
    "find . -type f ! -name " + DIGEST_MARKER + " ! -path ./.manifest.json -print0 | sort -z | xargs -0r sha256sum -- "
    "| sed 's/^\\\\//' | while read -r h p; do printf 'H %s %s\\n' \"$h\" \"${p#./}\"; done; "
    "find . -type l -printf 'L %l %P\\n' | sort"
)


class StreamHost(Host, Protocol):
    def exec_channel(self, argv: Sequence[str], *, timeout: float): ...


_VERIFIED: set[tuple[str, str, str]] = set()  # (host, remote entry, digest) checked by this process
_LOCK = threading.Lock()


def local_listing(root: Path) -> dict[str, str]:
    """What LISTING_SCRIPT prints for `root`, as {relative path: 'H sha' | 'L target'}."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = f"L {os.readlink(p)}"
            elif p.is_file() and name != DIGEST_MARKER and rel not in SKIP:
                out[rel] = f"H {sha256_file(p)}"
    return out


def parse_listing(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        value, _, rel = rest.partition(" ")
        if kind in ("H", "L") and rel:
            out[rel] = f"{kind} {value}"
    return out


def remote_listing(host: Host, root: str, *, timeout: float) -> dict[str, str] | None:
    """The listing of `root` on the host (None when it does not exist)."""
    res = host.run(["sh", "-c", LISTING_SCRIPT, "sh", root], timeout=timeout, check=False)
    if res.returncode == 3:
        return None
    if not res.ok:
        raise TransferError(f"{host.name}: cannot list {root}: {res.tail()}")
    return parse_listing(res.stdout)


def first_difference(want: dict[str, str], got: dict[str, str]) -> str | None:
    for rel in sorted(want.keys() | got.keys()):
        if rel not in got:
            return f"{rel} is missing"
        if rel not in want:
            return f"{rel} should not be there"
        if want[rel] != got[rel]:
            w, g = want[rel].split(" ", 1)[1], got[rel].split(" ", 1)[1]
            what = "sha256" if want[rel][0] == "H" else "link target"
            return f"{rel} has {what} {g[:16]}…, expected {w[:16]}…"
    return None


def _filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if info.name in SKIP:
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


class _ChannelWriter(io.RawIOBase):
    def __init__(self, chan):
        self.chan = chan

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.chan.sendall(bytes(b))
        return len(b)


def send_tree(host: StreamHost, local: Path, remote_dir: str, *, timeout: float) -> None:
    """Unpack the tree `local` into `remote_dir` (made if missing) over one SSH channel."""
    chan = host.exec_channel(["sh", "-c", 'mkdir -p -- "$1" && exec tar -x -f - -C "$1"', "sh", remote_dir],
                             timeout=timeout)
    try:
        out = io.BufferedWriter(_ChannelWriter(chan), CHUNK)
        with tarfile.open(fileobj=out, mode="w|") as tar:
            for entry in sorted(local.iterdir()):
                tar.add(entry, arcname=entry.name, filter=_filter)
        out.flush()  # tarfile leaves a given file object open, and its last blocks in the buffer
        chan.shutdown_write()
        err = b""
        deadline = time.monotonic() + timeout
        while not chan.exit_status_ready() or chan.recv_stderr_ready():
            if chan.recv_stderr_ready():
                err += chan.recv_stderr(CHUNK)
            elif chan.recv_ready():
                chan.recv(CHUNK)
            elif time.monotonic() > deadline:
                raise CommandTimeout(f"{host.name}: tar did not finish unpacking into {remote_dir} within "
                                     f"{timeout:g} s")
            else:
                chan.status_event.wait(0.05)
        code = chan.recv_exit_status()
    except OSError as exc:  # the channel's timeout (socket.timeout) or a dropped connection
        raise CommandTimeout(f"{host.name}: copying {local} to {remote_dir} stalled: {exc or type(exc).__name__}") \
            from None
    finally:
        chan.close()
    if code != 0:
        raise TransferError(f"{host.name}: unpacking {local} into {remote_dir} failed ({code}): "
                            f"{err.decode(errors='replace').strip()[-200:]}")


def _send_checked(host: StreamHost, local: Path, want: dict, part: str, dest: str, *, timeout: float,
                  failed: Callable[[str], str], digest: str | None = None) -> None:
    """Copy `local` to `part` on the host, compare it there with `want`, then put it in place of
    `dest` (first writing `digest` into its marker file, for a cache entry). The partial copy is
    removed when anything fails; after the rename there is nothing left to remove."""
    try:
        send_tree(host, local, part, timeout=timeout)
        problem = first_difference(want, remote_listing(host, part, timeout=timeout) or {})
        if problem:
            raise TransferError(failed(problem))
        script, args = 'rm -rf -- "$2" && mv -T -- "$1" "$2"', [part, dest]
        if digest is not None:
            script, args = 'printf "%s\\n" "$3" > "$1/' + DIGEST_MARKER + '" && ' + script, [*args, digest]
        host.run(["sh", "-c", script, "sh", *args], timeout=timeout)
    except BaseException:
        host.run(["rm", "-rf", "--", part], timeout=timeout, check=False)
        raise


def put_tree(host: StreamHost, local: Path, remote: str, *, timeout: float) -> None:
    """`local` at `remote` on the host, checked there; what was at `remote` before is replaced."""
    part = f"{remote.rstrip('/')}{PART}{secrets.token_hex(4)}"
    _send_checked(host, local, local_listing(local), part, remote, timeout=timeout,
                  failed=lambda problem: f"{host.name}: copy of {local} to {remote} failed its check: {problem}")


def cache_root(host: Host) -> str:
    return str(PurePosixPath(host.home) / "cache" / "images")


def stage_tree(host: StreamHost, local: Path, name: str, digest: str, ledger: "Ledger", *,
               timeout: float = 600) -> str:
    """The host's copy of the cache entry `local` (content `digest`): its path there. Copied only
    when missing or different; checked file by file against `local` before it is used."""
    if host.is_local:
        return str(local)
    entry = f"{cache_root(host)}/{name}"
    key = (host.name, entry, digest)
    with _LOCK:
        if key in _VERIFIED:
            return entry
    want = local_listing(local)
    marker = host.run(["cat", f"{entry}/{DIGEST_MARKER}"], timeout=timeout, check=False)
    if marker.ok and marker.stdout.strip() == digest:
        problem = first_difference(want, remote_listing(host, entry, timeout=timeout) or {})
        if problem is None:
            with _LOCK:
                _VERIFIED.add(key)
            return entry
        log.warning("%s: cached image %s changed since it was copied (%s); copying it again", host.name, entry,
                    problem)
    part = f"{cache_root(host)}/.{name}{PART}{secrets.token_hex(4)}"
    ledger.acquire("remote-path", part, **host.connection_meta())
    try:
        _send_checked(host, local, want, part, entry, timeout=timeout, digest=digest,
                      failed=lambda problem: f"image {name}: the copy on {host.name} failed its sha256 check: "
                                             f"{problem}; the copy was removed")
    finally:
        ledger.release("remote-path", part)
    with _LOCK:
        _VERIFIED.add(key)
    return entry


_SHIPPED: dict[tuple[str, str], str] = {}


def ship_file(host: Host, local: Path, *, timeout: float = 120) -> str:
    """A file of this machine's at a path on the host (`put` checks its sha256 there)."""
    if host.is_local:
        return str(local)
    digest = sha256_file(local)
    key = (host.name, digest)
    if key not in _SHIPPED:
        remote = str(PurePosixPath(host.home) / "cache" / "files" / f"{digest[:16]}-{local.name}")
        host.run(["mkdir", "-p", "--", str(PurePosixPath(remote).parent)], timeout=timeout)
        host.put(local, remote, timeout=timeout)
        _SHIPPED[key] = remote
    return _SHIPPED[key]


def forget_checks() -> None:
    """Check every cache entry again on its next use (tests; a long-lived process)."""
    with _LOCK:
        _VERIFIED.clear()
    _SHIPPED.clear()


class RemotePathReclaimer(Reclaimer, kind="remote-path"):
    """A half copy a killed run left in a lab host's cache."""

    def reclaim(self, name: str, meta: dict) -> None:
        if PART not in PurePosixPath(name).name:
            raise TransferError(f"refusing to remove {name}: not a copy testbed makes")
        from .ssh import host_from_meta

        host_from_meta(meta).run(["rm", "-rf", "--", name], timeout=120, check=False)


__all__ = ["forget_checks", "local_listing", "put_tree", "remote_listing", "send_tree", "ship_file", "stage_tree"]
