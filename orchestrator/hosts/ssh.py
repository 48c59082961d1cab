"""Lab hosts over SSH (paramiko): the Host protocol on another machine.

Security rules, all enforced here:
- key authentication only (no passwords, no keyboard-interactive);
- the server's host key is checked against known_hosts; a key that differs from the one
  recorded there is always refused; an unknown key is refused unless its SHA256
  fingerprint was pinned in the lab file or the caller passed trust_new=True (then it is
  remembered in known_hosts);
- every command has a timeout (per read on the channel and overall);
- argv is quoted with shlex.join before it reaches the remote shell;
- no key material or passphrase is ever logged (the passphrase, if any, comes from
  $TESTBED_SSH_KEY_PASSPHRASE and is only handed to paramiko).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import shlex
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import paramiko

from ..digest import sha256_file
from ..errors import CommandTimeout, HostError, LaunchError, TestbedError
from ..ledger import Reclaimer
from .base import CommandResult
from .local import CommandFailed, netns_argv

if TYPE_CHECKING:
    from ..config.lab import LabHost
    from ..ledger import Ledger
    from .base import Host

log = logging.getLogger(__name__)

PASSPHRASE_ENV = "TESTBED_SSH_KEY_PASSPHRASE"
DEFAULT_HOME = "/var/lib/testbed"  # a lab host's testbed_home unless the lab file says otherwise
ABORT_POLL = 0.25  # seconds between abort checks while a watched command runs
EOF_GRACE = 2.0  # seconds to wait for a command's output to end after its exit status arrived


class SshError(HostError):
    """Connecting to or authenticating with a lab host failed."""

    # Every further command would fail the same way (after its own connect timeout): callers that
    # run many commands (doctor's checks) stop at the first one.
    ends_session = True


class HostKeyError(SshError):
    """The lab host's SSH host key is unknown or does not match known_hosts."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


class _VerifyPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only when known_hosts has no key of the offered type for the host."""

    def __init__(self, host: "SshHost"):
        self.host = host

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        h = self.host
        fp = fingerprint(key)
        recorded = client.get_host_keys().lookup(hostname)
        if recorded:  # known with another key type: treat as a changed key
            raise HostKeyError(
                f"ssh {h.name} ({h.address}:{h.port}): host key {key.get_name()} {fp} does not match the "
                f"{', '.join(recorded.keys())} key recorded in {h.known_hosts}; refusing to connect (if the host was "
                f"reinstalled, remove its old entry with ssh-keygen -R)")
        if h.pinned_fingerprint and fp == h.pinned_fingerprint:
            log.info("ssh %s: host key %s matches the fingerprint pinned in the lab file", h.name, fp)
        elif h.pinned_fingerprint:
            raise HostKeyError(
                f"ssh {h.name} ({h.address}:{h.port}): host key fingerprint {fp} does not match the "
                f"host_key_fingerprint {h.pinned_fingerprint} pinned in the lab file; refusing to connect")
        elif h.trust_new:
            log.warning("ssh %s: trusting new host key %s (--trust-new-host-key)", h.name, fp)
        else:
            raise HostKeyError(
                f"ssh {h.name} ({h.address}:{h.port}): unknown host key {key.get_name()} {fp} (not in "
                f"{h.known_hosts}); verify it and pin it as host_key_fingerprint in the lab file, or pass "
                f"--trust-new-host-key")
        h._remember_key(hostname, key)


class SshHost:
    """A lab host reached over SSH. Connects lazily; one connection shared by all calls."""

    is_local = False

    def __init__(self, name: str, address: str, *, port: int = 22, user: str = "root",
                 identity_file: str | Path | None = None, known_hosts: str | Path | None = None,
                 host_key_fingerprint: str | None = None, lab_address: str | None = None,
                 trust_new: bool = False, connect_timeout: float = 10.0, home: str = DEFAULT_HOME):
        self.name = name
        self.home = home
        self.address = address
        self.port = port
        self.user = user
        self.identity_file = str(identity_file) if identity_file else None
        self.known_hosts = Path(os.path.expanduser(str(known_hosts or "~/.ssh/known_hosts")))
        self.pinned_fingerprint = host_key_fingerprint
        self.lab_address = lab_address
        self.trust_new = trust_new
        self.connect_timeout = connect_timeout
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_lab(cls, cfg: "LabHost", *, trust_new: bool = False) -> "SshHost":
        return cls(cfg.name, cfg.address, port=cfg.port, user=cfg.user, identity_file=cfg.identity_path,
                   known_hosts=cfg.known_hosts_path, host_key_fingerprint=cfg.host_key_fingerprint,
                   lab_address=cfg.lab_address, trust_new=trust_new, connect_timeout=cfg.connect_timeout,
                   home=cfg.testbed_home)

    def __repr__(self) -> str:
        return f"SshHost({self.name!r}, {self.user}@{self.address}:{self.port})"

    def connection_meta(self) -> dict:
        """What a reclaimer needs to reconnect (paths and names only, never secrets)."""
        return {"host": self.name, "address": self.address, "port": self.port, "user": self.user,
                "identity_file": self.identity_file, "known_hosts": str(self.known_hosts),
                "host_key_fingerprint": self.pinned_fingerprint, "connect_timeout": self.connect_timeout,
                "home": self.home}

    # --- connection ------------------------------------------------------------------
    def _remember_key(self, hostname: str, key: paramiko.PKey) -> None:
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        fd = os.open(self.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(line)

    def _where(self) -> str:
        return f"ssh {self.name} ({self.user}@{self.address}:{self.port})"

    def connect(self) -> paramiko.SSHClient:
        with self._lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return self._client
                self._client.close()
                self._client = None
            client = paramiko.SSHClient()
            if self.known_hosts.exists():
                try:
                    client.load_host_keys(str(self.known_hosts))
                except (OSError, paramiko.SSHException) as exc:
                    raise HostKeyError(f"{self._where()}: cannot read known_hosts {self.known_hosts}: {exc}") from None
            client.set_missing_host_key_policy(_VerifyPolicy(self))
            if self.identity_file and not Path(self.identity_file).exists():
                raise SshError(f"{self._where()}: identity_file {self.identity_file} does not exist")
            passphrase = os.environ.get(PASSPHRASE_ENV) or None
            try:
                client.connect(
                    self.address, port=self.port, username=self.user,
                    key_filename=self.identity_file, passphrase=passphrase,
                    look_for_keys=self.identity_file is None, allow_agent=False,
                    timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                    auth_timeout=self.connect_timeout, channel_timeout=self.connect_timeout,
                )
            except HostKeyError:
                client.close()
                raise
            except paramiko.BadHostKeyException as exc:
                client.close()
                raise HostKeyError(
                    f"{self._where()}: HOST KEY MISMATCH: the server offered {exc.key.get_name()} "
                    f"{fingerprint(exc.key)} but {self.known_hosts} records {fingerprint(exc.expected_key)}; "
                    f"refusing to connect (possible man-in-the-middle; if the host was reinstalled, "
                    f"remove its old entry with ssh-keygen -R)") from None
            except paramiko.PasswordRequiredException:
                client.close()
                raise SshError(f"{self._where()}: the key {self.identity_file} is encrypted; set "
                               f"{PASSPHRASE_ENV} or use an ssh key without passphrase") from None
            except paramiko.AuthenticationException:
                client.close()
                key = self.identity_file or "the default keys in ~/.ssh"
                raise SshError(f"{self._where()}: authentication failed for user {self.user!r} with key {key} "
                               f"(key authentication only)") from None
            except TimeoutError:
                client.close()
                raise SshError(f"{self._where()}: unreachable: no answer within {self.connect_timeout:g} s") from None
            except paramiko.ssh_exception.NoValidConnectionsError as exc:
                client.close()
                reason = "; ".join(sorted({getattr(e, "strerror", None) or str(e) for e in exc.errors.values()}))
                raise SshError(f"{self._where()}: unreachable: {reason}") from None
            except (paramiko.SSHException, OSError, EOFError) as exc:
                client.close()
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                raise SshError(f"{self._where()}: cannot connect: {reason}") from None
            transport = client.get_transport()
            if transport is not None:
                transport.set_keepalive(15)
                # Without it Nagle holds paramiko's second segment of a small packet until the server's
                # delayed ACK (40 ms): every channel open took 42 ms instead of 0.6 ms (measured).
                try:
                    transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
                except (OSError, AttributeError):
                    pass
            self._client = client
            log.debug("%s: connected", self._where())
            return client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> "SshHost":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _session(self, timeout: float) -> paramiko.Channel:
        client = self.connect()
        try:
            transport = client.get_transport()
            if transport is None or not transport.is_active():
                raise SshError(f"{self._where()}: connection lost")
            return transport.open_session(timeout=min(timeout, self.connect_timeout))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise SshError(f"{self._where()}: cannot open a channel: {exc or type(exc).__name__}") from None

    def exec_channel(self, argv: Sequence[str], *, timeout: float) -> paramiko.Channel:
        """A session channel running argv (quoted, never a shell string), for streams: a tree copied
        as tar, a console followed, a libvirt connection carried. The caller reads, writes and closes
        it; `timeout` bounds every read and write on it."""
        chan = self._session(timeout)
        try:
            chan.settimeout(timeout)
            chan.exec_command(shlex.join(list(argv)))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            chan.close()
            raise SshError(f"{self._where()}: cannot start {argv[0]}: {exc or type(exc).__name__}") from None
        return chan

    # --- Host protocol ---------------------------------------------------------------
    def run(self, argv: Sequence[str], *, timeout: float, check: bool = True, netns: str | None = None,
            input: str | None = None, env: dict[str, str] | None = None,
            abort: Callable[[], str | None] | None = None) -> CommandResult:
        full = netns_argv(netns, argv)
        if env:
            full = ["env", *(f"{k}={v}" for k, v in env.items()), *full]
        command = shlex.join(full)
        log.debug("%s: run %s", self._where(), command)
        start = time.monotonic()
        deadline = start + timeout
        chan = self._session(timeout)
        out, err = bytearray(), bytearray()
        reason: str | None = None
        exited: float | None = None
        next_abort_check = start + ABORT_POLL
        try:
            chan.settimeout(min(timeout, 5.0))
            chan.exec_command(command)
            if input is not None:
                chan.sendall(input.encode())
            chan.shutdown_write()
            while True:
                if chan.recv_ready():
                    out += chan.recv(65536)
                    continue
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    continue
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    # The exit status can arrive before the last output: done at the output's EOF (or
                    # soon after the status, should a background child of the command hold it open).
                    exited = exited or time.monotonic()
                    if chan.eof_received or chan.closed or time.monotonic() - exited > EOF_GRACE:
                        break
                if time.monotonic() > deadline:
                    raise CommandTimeout(f"{self.name}: {' '.join(full)} did not finish within {timeout:g} s")
                if abort is not None and time.monotonic() > next_abort_check:
                    next_abort_check = time.monotonic() + ABORT_POLL
                    reason = abort()
                    if reason:  # closing the channel hangs up the remote command
                        break
                if chan.closed and not chan.exit_status_ready():
                    raise SshError(f"{self._where()}: channel closed before {full[0]} finished")
                chan.status_event.wait(0.005)  # woken at once by the exit status
            # drain what arrived with the exit status
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            code = chan.recv_exit_status() if reason is None else -9
            if code == -1 and reason is None:  # closed without an exit status: the session was killed
                raise SshError(f"{self._where()}: the connection was lost while {full[0]} ran")
        except TimeoutError:
            raise CommandTimeout(f"{self.name}: {' '.join(full)} stalled (no data within the channel timeout)") from None
        finally:
            chan.close()
        result = CommandResult(full, code, out.decode(errors="replace"), err.decode(errors="replace"),
                               time.monotonic() - start, aborted=reason)
        if code == 127 and "not found" in result.stderr:
            from ..errors import MissingToolError
            raise MissingToolError(f"{full[0]} is not installed on {self.name}; run `testbed provision {self.name}` "
                                   f"or `testbed doctor {self.name}`")
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def which(self, tool: str) -> str | None:
        res = self.run(["sh", "-c", 'command -v "$1"', "sh", tool], timeout=15, check=False)
        path = res.stdout.strip()
        return path if res.ok and path else None

    def put(self, local: Path, remote: str, *, timeout: float) -> None:
        """Copy a file with SFTP (to a temporary name, then renamed into place) and verify its
        sha256 on the remote side. A remote file that already has the same content is left alone."""
        local = Path(local)
        want = sha256_file(local)
        if self._sha256(remote, timeout) == want:
            return
        part = f"{remote}.tbpart-{secrets.token_hex(4)}"
        try:
            with self._sftp(timeout) as sftp:
                sftp.put(str(local), part)
                sftp.chmod(part, local.stat().st_mode & 0o7777)
        except (OSError, paramiko.SSHException) as exc:
            self.run(["rm", "-f", "--", part], timeout=30, check=False)
            raise SshError(f"{self._where()}: copying {local} to {remote} failed: {exc}") from None
        got = self._sha256(part, timeout)
        if got != want:
            self.run(["rm", "-f", "--", part], timeout=30, check=False)
            raise SshError(f"{self._where()}: {remote} has sha256 {got or '?'} after the copy, expected {want}")
        self.run(["mv", "-f", "--", part, remote], timeout=30)

    def get(self, remote: str, local: Path, *, timeout: float) -> None:
        """Copy a file from the host with SFTP; the caller compares checksums (the remote file may be
        the one thing that differs between two reads)."""
        try:
            with self._sftp(timeout) as sftp:
                sftp.get(remote, str(local))
        except (OSError, paramiko.SSHException) as exc:
            raise SshError(f"{self._where()}: copying {remote} from the host failed: {exc}") from None

    @contextmanager
    def _sftp(self, timeout: float) -> Iterator[paramiko.SFTPClient]:
        """An SFTP session on the open connection whose every read and write times out after `timeout` s."""
        sftp = self.connect().open_sftp()
        try:
            channel = sftp.get_channel()
            assert channel is not None, "an open SFTP session has a channel"
            channel.settimeout(timeout)
            yield sftp
        finally:
            sftp.close()

    def _sha256(self, path: str, timeout: float) -> str | None:
        res = self.run(["sha256sum", "--", path], timeout=timeout, check=False)
        fields = res.stdout.split()
        return fields[0] if res.ok and fields else None

    def read_text(self, path: str, *, timeout: float = 10) -> str:
        res = self.run(["cat", "--", path], timeout=timeout, check=False)
        if not res.ok:
            if "No such file" in res.stderr:
                raise FileNotFoundError(2, f"{self.name}: {res.stderr.strip()}", path)
            raise OSError(f"{self.name}: cannot read {path}: {res.tail()}")
        return res.stdout

    def put_tree(self, local: Path, remote: str, *, timeout: float) -> None:
        """The tree `local` at `remote` (files, modes, symlinks), sent as one tar stream and checked
        file by file with sha256sum on the host (orchestrator/hosts/transfer.py)."""
        from .transfer import put_tree

        put_tree(self, Path(local), remote, timeout=timeout)

    def file_sha256(self, path: str, *, timeout: float = 60) -> str | None:
        return self._sha256(path, timeout)

    def spawn(self, argv: Sequence[str], *, log_path: Path | str, ledger: "Ledger", label: str,
              before_start: Callable[[], object] | None = None) -> "RemoteProcess":
        """Start argv in its own session on the remote host, output to log_path there."""
        log_path = str(log_path)
        token = secrets.token_hex(4)
        pidfile = f"{log_path}.{token}.pid"
        name = f"{self.name}:{label}:{token}"
        ledger.acquire("remote-process", name, pidfile=pidfile, **self.connection_meta())
        try:
            self.run(["mkdir", "-p", str(Path(log_path).parent)], timeout=30)
            inner = 'exec > "$0" 2>&1 < /dev/null; "$@"; echo $? > "$0.rc"'
            # One round trip: start it, then its pid and its /proc stat (the start time is the fork's,
            # there at once), so `process_started` is one SSH command after `requested`.
            outer = ('pidfile=$1; inner=$2; log=$3; shift 3; rm -f "$log.rc"; '
                     'setsid sh -c "$inner" "$log" "$@" & p=$!; echo $p > "$pidfile"; echo $p; '
                     'cat "/proc/$p/stat" 2>/dev/null || echo')
            if before_start is not None:
                before_start()
            res = self.run(["sh", "-c", outer, "sh", pidfile, inner, log_path, *argv], timeout=30)
            lines = res.stdout.strip("\n").splitlines()
            pid = int(lines[0])
        except (TestbedError, ValueError, IndexError) as exc:
            ledger.release("remote-process", name)
            raise LaunchError(f"could not start {argv[0]} on {self.name}: {exc}") from None
        start = _start_ticks(lines[1] if len(lines) > 1 else "")
        if start is None:
            start = _remote_start_time(self, pid)
        # Without an fsync, as for local processes: the durable entry above finds it by its pidfile.
        ledger.note("remote-process", name, pid=pid, start=start)
        log.debug("%s: spawned %s as pid %d", self._where(), argv[0], pid)
        return RemoteProcess(self, pid, start, log_path, pidfile, ledger, name)


def _start_ticks(stat: str) -> int | None:
    """The start time field of a /proc/PID/stat line (None: no line)."""
    try:
        return int(stat.rsplit(")", 1)[1].split()[19]) if stat.strip() else None
    except (IndexError, ValueError):
        return None


def _remote_start_time(host: SshHost, pid: int, *, strict: bool = False) -> int | None:
    """The kernel start time of `pid` on the host (None: no such process). strict: an unreachable
    host raises instead of answering None."""
    try:
        return _start_ticks(host.run(["cat", f"/proc/{pid}/stat"], timeout=10, check=False).stdout)
    except HostError:
        if strict:
            raise
        return None
    except TestbedError:
        return None


class RemoteProcess:
    """A process started by SshHost.spawn; pid is its session and process-group leader.

    When the host cannot be reached any more, the process counts as not alive (its exit reason says
    why) and stop() leaves its ledger entry live, so `testbed gc` kills it once the host is back."""

    def __init__(self, host: SshHost, pid: int, start: int | None, log_path: str, pidfile: str,
                 ledger: "Ledger", ledger_name: str):
        self.host = host
        self.pid = pid
        self.start = start
        self.log_path = log_path
        self.pidfile = pidfile
        self.ledger = ledger
        self.ledger_name = ledger_name
        self._stopped = False
        self.unreachable: str | None = None  # why the host stopped answering, once it did

    def alive(self) -> bool:
        if self.start is None or self.unreachable:
            return False
        try:
            return _remote_start_time(self.host, self.pid, strict=True) == self.start
        except HostError as exc:
            self.unreachable = str(exc)
            return False

    def returncode(self) -> int | None:
        if self.alive():
            return None
        if self.unreachable:
            return -1
        try:
            res = self.host.run(["cat", f"{self.log_path}.rc"], timeout=10, check=False)
        except HostError as exc:
            self.unreachable = str(exc)
            return -1
        try:
            return int(res.stdout.strip())
        except ValueError:
            return -1  # killed before its wrapper could record the status

    def log_tail(self, lines: int = 3) -> str:
        if self.unreachable:
            return f"(log unavailable: {self.unreachable})"
        try:
            res = self.host.run(["tail", "-n", str(lines), self.log_path], timeout=10, check=False)
        except TestbedError:
            return ""
        return " | ".join(line.strip() for line in res.stdout.strip().splitlines())

    def stop(self, grace: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.alive():
                self.host.run(["kill", "-TERM", "--", f"-{self.pid}"], timeout=10, check=False)
                deadline = time.monotonic() + grace
                while self.alive() and time.monotonic() < deadline:
                    time.sleep(0.1)
            if self.unreachable:
                raise SshError(self.unreachable)
            self.host.run(["kill", "-KILL", "--", f"-{self.pid}"], timeout=10, check=False)
            self.host.run(["rm", "-f", self.pidfile], timeout=10, check=False)
        except HostError as exc:  # the entry stays live: gc reconnects and kills the group later
            log.warning("%s: cannot stop pid %d (%s); `testbed gc` reclaims it once the host answers",
                        self.host.name, self.pid, exc)
            return
        self.ledger.release("remote-process", self.ledger_name)


class RemoteProcessReclaimer(Reclaimer, kind="remote-process"):
    def reclaim(self, name: str, meta: dict) -> None:
        _reclaim_remote_process(name, meta)


# Hosts reclaimers reconnected to, by connection; an unreachable one is remembered for a while so
# that gc (or the runner's safety net) does not wait a connect timeout per leftover of a dead host.
_RECLAIM_HOSTS: dict[tuple, SshHost] = {}
_UNREACHABLE: dict[tuple, tuple[float, SshError]] = {}
UNREACHABLE_FOR = 30.0


def host_from_meta(meta: dict) -> "SshHost":
    """The lab host a ledger entry's connection metadata (SshHost.connection_meta) names, connected:
    known_hosts or the pinned key only, never trusting a new key."""
    key = (meta["address"], meta.get("port", 22), meta.get("user", "root"), meta.get("identity_file"),
           meta.get("known_hosts"))
    failed = _UNREACHABLE.get(key)
    if failed and time.monotonic() - failed[0] < UNREACHABLE_FOR:
        raise failed[1]
    host = _RECLAIM_HOSTS.get(key)
    if host is None:
        host = SshHost(meta.get("host", meta["address"]), meta["address"], port=meta.get("port", 22),
                       user=meta.get("user", "root"), identity_file=meta.get("identity_file"),
                       known_hosts=meta.get("known_hosts"), host_key_fingerprint=meta.get("host_key_fingerprint"),
                       connect_timeout=meta.get("connect_timeout", 10.0), home=meta.get("home", DEFAULT_HOME))
    try:
        host.connect()
    except SshError as exc:
        _UNREACHABLE[key] = (time.monotonic(), exc)
        _RECLAIM_HOSTS.pop(key, None)
        raise
    _UNREACHABLE.pop(key, None)
    _RECLAIM_HOSTS[key] = host
    return host


def forget_unreachable() -> None:
    """Try every lab host again at once (a long-lived process, tests: the host is back)."""
    _UNREACHABLE.clear()


def host_for_entry(meta: dict) -> "Host":
    """The host a ledger entry was made on: this machine, or the lab host its connection metadata names."""
    from .local import LocalHost

    if meta.get("address"):
        return host_from_meta(meta)
    return LocalHost()


def _reclaim_remote_process(name: str, meta: dict) -> None:
    """Reconnect (known_hosts or the pinned key only, never trusting a new key) and kill the group."""
    host = host_from_meta(meta)
    pid, start = meta.get("pid"), meta.get("start")
    if pid is None:
        res = host.run(["cat", meta["pidfile"]], timeout=10, check=False)
        if not res.ok or not res.stdout.strip().isdigit():
            return  # never started
        pid = int(res.stdout.strip())
        start = _remote_start_time(host, pid, strict=True)
    if start is not None and _remote_start_time(host, pid, strict=True) == start:
        host.run(["kill", "-KILL", "--", f"-{pid}"], timeout=10, check=False)
    host.run(["rm", "-f", meta["pidfile"]], timeout=10, check=False)
