"""libvirt connections with a timeout on every call, and the libvirt daemons themselves.

libvirt-python releases the GIL around its C calls, so a call that hangs (a URI whose
daemon never answers, a wedged QEMU monitor) is run on a daemon thread and abandoned
after its timeout with a one-line CommandTimeout.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar
from urllib.parse import urlparse

from ..errors import CommandTimeout, ConfigError, LaunchError, MissingToolError

if TYPE_CHECKING:
    from ..hosts.base import Host
    from ..ledger import Ledger
    from .tunnel import LibvirtTunnel

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_URI = "qemu:///system"
CALL_TIMEOUT = 30.0
DAEMON_START_TIMEOUT = 30.0

try:
    import libvirt

    # libvirt prints every error to stderr by default; testbed reports them itself.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    _LIBVIRT_ERROR: tuple[type[BaseException], ...] = (libvirt.libvirtError,)
except ImportError:  # pragma: no cover - the dependency is in pyproject.toml
    libvirt = None
    _LIBVIRT_ERROR = ()

# What a libvirt call can fail with here: libvirt's own error, our timeout, the socket.
LIBVIRT_ERRORS: tuple[type[BaseException], ...] = (*_LIBVIRT_ERROR, CommandTimeout, OSError)


def require_libvirt():
    if libvirt is None:
        raise MissingToolError("libvirt-python is not installed; pip install libvirt-python (see pyproject.toml)")
    return libvirt


def with_timeout(fn: Callable[..., T], *args, timeout: float, what: str) -> T:
    """fn(*args) on a daemon thread; CommandTimeout if it has not returned after `timeout` s."""
    box: dict = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread, which re-raises it
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"libvirt-{what}", daemon=True).start()
    if not done.wait(timeout):
        raise CommandTimeout(f"libvirt: {what} did not answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def is_local(uri: str) -> bool:
    """True for URIs served by a daemon on this machine (no host part, no remote transport)."""
    p = urlparse(uri)
    return not p.hostname and "+" not in p.scheme.replace("+unix", "")


# --- the daemons ---------------------------------------------------------------------------
def pid1_is_systemd() -> bool:
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd"
    except OSError:
        return False


def _pidfile_alive(path: str) -> int | None:
    try:
        pid = int(Path(path).read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def daemon_state() -> dict[str, int | None]:
    """pids of the local libvirtd and virtlogd (None when not running)."""
    return {"libvirtd": _pidfile_alive("/var/run/libvirtd.pid"), "virtlogd": _pidfile_alive("/var/run/virtlogd.pid")}


def kvm_device_state() -> str | None:
    """Why /dev/kvm is unusable by libvirt's QEMU user (None when fine or absent).

    Debian's udev rule gives /dev/kvm group kvm, mode 0660 (libvirt-qemu is in group kvm).
    Without udev (containers, some lab images) it stays root 0600: QEMU capability probes
    (run as root) see KVM while libvirt's access check for libvirt-qemu fails, so libvirtd
    decides its capability cache is stale and re-probes QEMU on every domain start (~30 s).
    """
    import grp
    import stat as st

    try:
        info = os.stat("/dev/kvm")
    except OSError:
        return None
    try:
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        return None
    if info.st_gid == kvm_gid and info.st_mode & st.S_IRGRP and info.st_mode & st.S_IWGRP:
        return None
    return f"/dev/kvm is mode {st.S_IMODE(info.st_mode):o} gid {info.st_gid}, not group kvm 0660 as Debian's udev rule sets"


def fix_kvm_device() -> str | None:
    """Apply Debian's udev rule for /dev/kvm (group kvm, 0660) when udev did not. Returns what was done."""
    problem = kvm_device_state()
    if problem is None:
        return None
    import grp

    os.chown("/dev/kvm", -1, grp.getgrnam("kvm").gr_gid)
    os.chmod("/dev/kvm", 0o660)
    return f"fixed: {problem}"


def start_daemons(timeout: float = DAEMON_START_TIMEOUT) -> str:
    """Start libvirtd (and virtlogd, which QEMU's console files go through). Returns how."""
    if pid1_is_systemd():
        argvs = [["systemctl", "start", "virtlogd.socket", "libvirtd.socket", "libvirtd.service"]]
        how = "systemctl start libvirtd"
    else:
        for d in ("/var/log/libvirt", "/var/run/libvirt"):
            os.makedirs(d, exist_ok=True)
        argvs = []
        state = daemon_state()
        if state["virtlogd"] is None:
            argvs.append(["virtlogd", "-d"])
        if state["libvirtd"] is None:
            argvs.append(["libvirtd", "-d"])
        how = ("started " + ", ".join(a[0] for a in argvs) if argvs
               else f"libvirtd already running (pid {state['libvirtd']})")
    for argv in argvs:
        if shutil.which(argv[0]) is None:
            raise MissingToolError(f"{argv[0]} is not installed; apt-get install libvirt-daemon-system")
        # Own session and no pipes: the daemon outlives testbed and must not hold our stdout open
        # or receive the SIGINT meant for testbed.
        try:
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=timeout, start_new_session=True, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(f"{' '.join(argv)} did not return within {timeout:g} s") from exc
    return how


def open_connection(uri: str = DEFAULT_URI, *, timeout: float = CALL_TIMEOUT, start: bool = True,
                    local: bool | None = None):
    """A libvirt connection to `uri`; starts the local daemons when they are down. local=False: the
    daemon is not this machine's (a tunnel's socket), so nothing here is fixed or started."""
    lv = require_libvirt()
    local = is_local(uri) if local is None else local
    start = start and local
    if local:
        try:
            fixed = fix_kvm_device()
            if fixed:
                log.warning("%s", fixed)
        except OSError as exc:
            log.warning("cannot set /dev/kvm to group kvm 0660: %s", exc)
    try:
        return with_timeout(lv.open, uri, timeout=timeout, what=f"connect {uri}")
    except lv.libvirtError as exc:
        if not start:
            raise LaunchError(f"libvirt: cannot connect to {uri}: {one_line(exc)}") from exc
        first = exc
    how = start_daemons()
    log.info("libvirt daemons: %s", how)
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while True:
        try:
            return with_timeout(lv.open, uri, timeout=timeout, what=f"connect {uri}")
        except lv.libvirtError as exc:
            if time.monotonic() > deadline:
                raise LaunchError(f"libvirt: {uri} still refuses connections {DAEMON_START_TIMEOUT:g} s after "
                                  f"{how}: {one_line(exc)} (first error: {one_line(first)})") from exc
            time.sleep(0.3)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class Connection:
    """One libvirt connection; every call goes through call() with a timeout.

    `Connection.to(host, uri)` is the libvirtd of the host a platform is placed on: this machine's,
    or a lab host's through a LibvirtTunnel over its SshHost (virt/tunnel.py)."""

    def __init__(self, uri: str = DEFAULT_URI, *, timeout: float = CALL_TIMEOUT, start: bool = True,
                 tunnel: "LibvirtTunnel | None" = None, host_name: str | None = None):
        self.uri = uri  # what libvirt dials (a tunnel's local socket for a lab host)
        self.timeout = timeout
        self.tunnel = tunnel
        self.host_meta: dict = {}  # how `testbed gc` reaches the host again (lab hosts)
        # The daemon as users name it: `qemu:///system` here, `lab-a:qemu:///system` on a lab host.
        self.where = f"{host_name}:{tunnel.remote_uri}" if tunnel is not None else uri
        self.conn = open_connection(uri, timeout=timeout, start=start, local=None if tunnel is None else False)

    @classmethod
    def to(cls, host: "Host", uri: str = DEFAULT_URI, *, timeout: float = CALL_TIMEOUT,
           ledger: "Ledger | None" = None) -> "Connection":
        """The libvirtd at `uri` on `host` (a lab host: its own qemu:///system, over SSH)."""
        if host.is_local:
            return cls(uri, timeout=timeout)
        if not is_local(uri):
            raise ConfigError(f"libvirt uri {uri}: with the server on lab host {host.name}, keep uri: "
                              f"qemu:///system (testbed reaches that host's libvirtd over its SSH connection)")
        from .tunnel import LibvirtTunnel

        tunnel = LibvirtTunnel(host, uri, ledger=ledger)  # type: ignore[arg-type]
        try:
            conn = cls(tunnel.uri, timeout=timeout, start=False, tunnel=tunnel, host_name=host.name)
        except LaunchError as exc:
            tunnel.close()
            raise LaunchError(f"libvirt on {host.name} ({uri} over SSH): {exc}; is libvirtd running there? "
                              f"(`testbed provision {host.name}`, `testbed doctor {host.name}`)") from None
        except BaseException:
            tunnel.close()
            raise
        conn.host_meta = host.connection_meta()
        return conn

    def ledger_meta(self) -> dict:
        """What a `domain` ledger entry records to find this daemon again."""
        if self.tunnel is None:
            return {"uri": self.uri}
        return {"uri": self.tunnel.remote_uri, **self.host_meta}

    def call(self, fn: Callable[..., T], *args, what: str, timeout: float | None = None) -> T:
        return with_timeout(fn, *args, timeout=timeout or self.timeout, what=what)

    def ensure_alive(self) -> None:
        """Reopen the connection if libvirtd dropped it (daemon restarted)."""
        try:
            if self.call(self.conn.isAlive, what="isAlive", timeout=10):
                return
        except LIBVIRT_ERRORS:
            pass  # a dead connection: reopened below
        log.warning("libvirt connection to %s was lost; reconnecting", self.where)
        self.conn = open_connection(self.uri, timeout=self.timeout, local=None if self.tunnel is None else False)

    def lookup(self, name: str):
        """The domain called `name`, or None."""
        lv = require_libvirt()
        self.ensure_alive()
        try:
            return self.call(self.conn.lookupByName, name, what=f"lookup {name}")
        except lv.libvirtError as exc:
            if exc.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def destroy(self, name: str) -> None:
        """Destroy and undefine `name` if it exists; absent is fine."""
        lv = require_libvirt()
        dom = self.lookup(name)
        if dom is None:
            return
        for op, what in ((dom.destroy, "destroy"), (dom.undefine, "undefine")):
            try:
                self.call(op, what=f"{what} {name}")
            except lv.libvirtError:
                pass  # not running / transient: already gone

    def versions(self) -> dict[str, str]:
        def fmt(v: int) -> str:
            return f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"

        return {"libvirt": fmt(self.call(self.conn.getLibVersion, what="getLibVersion")),
                "qemu": fmt(self.call(self.conn.getVersion, what="getVersion"))}

    def host_info(self) -> tuple[int, int]:
        """(memory MiB, logical CPUs) of the hypervisor host."""
        info = self.call(self.conn.getInfo, what="getInfo")
        return int(info[1]), int(info[2])

    def close(self) -> None:
        try:
            with_timeout(self.conn.close, timeout=self.timeout, what="close")
        except LIBVIRT_ERRORS:
            pass  # closing a connection libvirtd already dropped
        if self.tunnel is not None:
            self.tunnel.close()
