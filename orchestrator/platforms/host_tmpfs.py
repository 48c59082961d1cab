"""host_tmpfs: true on an OCI platform: a directory of the host's tmpfs bind-mounted into the container.

The gVisor study compares open/close on the container's own tmpfs (/tmp: in runc a kernel
tmpfs of its mount namespace, in gVisor a tmpfs inside the Sentry) with a tmpfs of the host
mounted in (which gVisor reaches through its Gofer). The platform makes one directory per run on
the host's /dev/shm (checked to be a tmpfs), puts the marker file tbsysbench looks for in it, and
mounts it at /mnt/host-tmpfs in every container it launches. The directory is in the ledger
before it exists and is removed when the platform closes (or by `testbed gc`).

The mount reaches the bundle through OciPlatform.mounts(), which the shared driver passes to
oci_config.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..errors import LaunchError, TestbedError
from ..images.oci import HOST_TMPFS_MARKER, host_tmpfs_mount
from ..ledger import Reclaimer

if TYPE_CHECKING:
    from ..hosts.base import Host

HOST_TMPFS_ROOT = "/dev/shm"
PREFIX = "testbed-"
LEDGER_KIND = "host-tmpfs-dir"


def fs_type(host: Host, path: str) -> str:
    res = host.run(["stat", "-f", "-c", "%T", path], timeout=10, check=False)
    return res.stdout.strip() if res.ok else f"unknown ({res.tail()})"


def host_tmpfs_problem(host: Host) -> str | None:
    """Why host_tmpfs cannot work on this host, or None."""
    kind = fs_type(host, HOST_TMPFS_ROOT)
    if kind != "tmpfs":
        return f"host_tmpfs: {HOST_TMPFS_ROOT} on {host.name} is {kind}, not a tmpfs; mount one there"
    return None


class HostTmpfsMounts:
    """Mixin for OciPlatform subclasses whose Options have `host_tmpfs: bool`."""

    options: Any
    host: Host
    ledger: Any
    name: str
    workdir: Path
    _host_tmpfs: str | None = None

    def preflight(self) -> list[str]:
        errors: list[str] = super().preflight()  # type: ignore[misc]
        if self.options.host_tmpfs:
            problem = host_tmpfs_problem(self.host)
            if problem:
                errors.append(problem)
        return errors

    def host_tmpfs_dir(self) -> str:
        """This run's directory on the host tmpfs (made at the first launch, with its marker)."""
        if self._host_tmpfs is None:
            path = f"{HOST_TMPFS_ROOT}/{PREFIX}{self.workdir.parent.name}-{self.name}"
            self.ledger.acquire(LEDGER_KIND, path, **{"host": self.host.name, **self.host.connection_meta()})
            try:
                self.host.run(["mkdir", "-p", "-m", "0755", path], timeout=10)
                self.host.run(["touch", f"{path}/{HOST_TMPFS_MARKER}"], timeout=10)
            except TestbedError as exc:
                raise LaunchError(f"{self.name}: cannot make the host tmpfs directory {path}: {exc}") from exc
            self._host_tmpfs = path
        return self._host_tmpfs

    def mounts(self) -> list[dict]:
        mounts: list[dict] = super().mounts()  # type: ignore[misc]
        if self.options.host_tmpfs:
            mounts.append(host_tmpfs_mount(self.host_tmpfs_dir()))
        return mounts

    def provenance(self) -> dict:
        prov: dict = super().provenance()  # type: ignore[misc]
        if self.options.host_tmpfs:
            prov["host_tmpfs"] = self._host_tmpfs or f"{HOST_TMPFS_ROOT}/{PREFIX}..."
        return prov

    def close(self) -> None:
        try:
            if self._host_tmpfs is not None:
                remove_host_tmpfs_dir(self.host, self._host_tmpfs)
                self.ledger.release(LEDGER_KIND, self._host_tmpfs)
                self._host_tmpfs = None
        finally:
            super().close()  # type: ignore[misc]


def remove_host_tmpfs_dir(host: Host, name: str) -> None:
    """Remove one of testbed's host tmpfs directories on `host`; anything else is refused."""
    path = PurePosixPath(name)
    if path.parent != PurePosixPath(HOST_TMPFS_ROOT) or not path.name.startswith(PREFIX) or \
            host.run(["test", "-L", name], timeout=10, check=False).ok:
        raise TestbedError(f"{name}: not a testbed host tmpfs directory; left alone")
    host.run(["rm", "-rf", "--one-file-system", name], timeout=30, check=False)


class HostTmpfsReclaimer(Reclaimer, kind=LEDGER_KIND):
    def reclaim(self, name: str, meta: dict) -> None:
        from ..hosts.ssh import host_for_entry

        remove_host_tmpfs_dir(host_for_entry(meta), name)  # on a lab host: reconnected by its entry
