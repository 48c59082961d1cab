"""Simulated lab hosts on this machine, for the two-host tests and benchmarks.

Each host is a network namespace plus a mount namespace of its own, anchored by a holder process:
private /run (so its own /var/run/libvirt, /run/netns and runtime state), /etc/libvirt (a copy),
/var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt, ~/.bashrc (a stock one: bash reads it for
every SSH command) and whatever other paths the caller makes private (TESTBED_HOME, the lab
host's testbed_home). Its sshd, and on a VM host its virtlogd and
libvirtd, run inside both namespaces, so an SSH session on the host sees the host's daemons and
state and none of this machine's: a guest defined there is created by that host's libvirtd, not by
this machine's (which other tests use and this module never touches).

    controller (this network namespace): <prefix>c  SUBNET.254 --+
    host a: eth0 SUBNET.1  (sshd, virtlogd, libvirtd) -----------+-- br0 in netns <prefix>-br
    host b: eth0 SUBNET.2  (sshd) -------------------------------+

Every link, namespace and process is made here and removed by `close()` (also after a failure):
domains the host's libvirtd still runs, containers the runtimes still know, namespaces made on the
host, then every process of the host's namespaces. Needs root, iproute2, util-linux (unshare,
nsenter), openssh-server and, for VM hosts, libvirt-daemon-system.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import yaml

SSHD = "/usr/sbin/sshd"
RUNTIME_ROOTS = {"runc": "/run/testbed-runc", "runsc": "/run/testbed-runsc"}
QEMU_CONF_EXTRA = """
# testbed's simulated lab host: a libvirtd in a private mount namespace, QEMU as root
security_driver = "none"
user = "root"
group = "root"
dynamic_ownership = 0
"""


def sh(*argv: str, timeout: float = 30, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=check, input=input)


@dataclass
class SimHost:
    name: str
    netns: str
    address: str
    dir: Path
    libvirt: bool
    private: dict[str, Path]  # path on this machine -> the host's own directory mounted over it
    holder: subprocess.Popen | None = None
    sshd: subprocess.Popen | None = None

    @property
    def host_pub(self) -> Path:
        return self.dir / "ssh_host_ed25519_key.pub"

    def fingerprint(self) -> str:
        b64 = self.host_pub.read_text().split()[1]
        return "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(b64)).digest()).decode().rstrip("=")

    def known_hosts_line(self) -> str:
        kind, b64 = self.host_pub.read_text().split()[:2]
        return f"{self.address} {kind} {b64}\n"

    # --- inside the host --------------------------------------------------------------------
    def enter(self, argv: Iterable[str]) -> list[str]:
        assert self.holder is not None
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", "--", *argv]

    def run(self, *argv: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        return sh(*self.enter(argv), timeout=timeout, check=check)

    def mount_ns(self) -> str:
        assert self.holder is not None
        return os.readlink(f"/proc/{self.holder.pid}/ns/mnt")

    def namespaces(self) -> list[str]:
        """Network namespaces made on this host (its own /run/netns)."""
        res = self.run("ls", "-1", "/run/netns", check=False)
        return sorted(res.stdout.split()) if res.returncode == 0 else []

    def domains(self) -> list[str]:
        if not self.libvirt:
            return []
        res = self.run("virsh", "-c", "qemu:///system", "list", "--all", "--name", check=False, timeout=30)
        return sorted(res.stdout.split())

    def containers(self) -> list[str]:
        out = []
        for binary, root in RUNTIME_ROOTS.items():
            if shutil.which(binary) is None:
                continue
            res = self.run(binary, "--root", root, "list", "-q", check=False, timeout=30)
            out += [f"{binary}:{c}" for c in res.stdout.split()] if res.returncode == 0 else []
        return sorted(out)

    def processes(self) -> list[str]:
        """Processes in the host's network namespace other than its daemons and the holder."""
        daemons = {"sshd", "libvirtd", "virtlogd", "sleep"}
        out = []
        for pid in sh("ip", "netns", "pids", self.netns, check=False).stdout.split():
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm not in daemons:
                out.append(f"{pid}:{comm}")
        return out

    def leftovers(self) -> list[str]:
        """What a testbed run left on this host (its daemons and caches are not leftovers)."""
        return ([f"netns {n}" for n in self.namespaces()] + [f"domain {d}" for d in self.domains()]
                + [f"container {c}" for c in self.containers()] + [f"process {p}" for p in self.processes()])

    # --- daemons ------------------------------------------------------------------------------
    def start_sshd(self) -> None:
        with open(self.dir / "sshd.log", "ab") as log:
            self.sshd = subprocess.Popen(self.enter([SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")]),
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_port(self.address, 22)

    def kill_sshd(self) -> None:
        """The host's sshd and every SSH session it serves (the host becomes unreachable)."""
        for pid in sh("ip", "netns", "pids", self.netns, check=False).stdout.split():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                    os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                continue
        if self.sshd is not None:
            self.sshd.wait(10)
            self.sshd = None

    def start_libvirt(self) -> None:
        self.run("virtlogd", "-d")
        self.run("libvirtd", "-d")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.run("virsh", "-c", "qemu:///system", "version", check=False, timeout=30).returncode == 0:
                return
            time.sleep(0.3)
        raise TimeoutError(f"libvirtd on simulated host {self.name} did not answer within 60 s")


def wait_port(address: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), 1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{address}:{port} did not open within {timeout} s")


@dataclass
class SimLab:
    dir: Path
    subnet: ipaddress.IPv4Network
    hosts: dict[str, SimHost]
    key: Path  # the controller's private key (authorized on every host)
    known_hosts: Path  # records every host's key
    lab_home: Path  # testbed_home of every host (private to each)
    prefix: str
    controller_address: str
    _netns: list[str] = field(default_factory=list)
    _links: list[str] = field(default_factory=list)

    def host_entry(self, name: str, **extra) -> dict:
        h = self.hosts[name]
        entry = {"name": name, "address": h.address, "user": "root", "identity_file": str(self.key),
                 "known_hosts": str(self.known_hosts), "lab_address": h.address, "connect_timeout": 5,
                 "testbed_home": str(self.lab_home)}
        entry.update(extra)
        return entry

    def write_lab(self, name: str = "lab", **per_host: dict) -> Path:
        path = self.dir / f"{name}.yaml"
        hosts = [self.host_entry(n, **per_host.get(n, {})) for n in self.hosts]
        path.write_text(yaml.safe_dump({"hosts": hosts}, sort_keys=False))
        return path

    def leftovers(self) -> dict[str, list[str]]:
        return {n: h.leftovers() for n, h in self.hosts.items()}

    # --- set-up and teardown -------------------------------------------------------------------
    def _host_dirs(self, h: SimHost) -> None:
        for d in h.private.values():
            d.mkdir(parents=True, exist_ok=True)
        home_rc = Path(os.path.expanduser("~/.bashrc"))
        if home_rc.is_file():  # a lab host's stock shell start-up, not this machine's (whose may take 0.25 s)
            rc = h.dir / "bashrc"
            rc.write_text("# ~/.bashrc of a simulated lab host: Debian's default, nothing run\n")
            h.private[str(home_rc)] = rc
        if h.libvirt:
            etc = h.dir / "etc-libvirt"
            shutil.copytree("/etc/libvirt", etc, symlinks=True)
            for f in (etc / "qemu" / "networks" / "autostart").glob("*"):
                f.unlink()  # no default network (virbr0, dnsmasq) on the simulated host
            with open(etc / "qemu.conf", "a") as fh:
                fh.write(QEMU_CONF_EXTRA)
            cache = h.dir / "var-cache-libvirt"
            if Path("/var/cache/libvirt").is_dir():  # QEMU's capabilities: no re-probe at start
                shutil.copytree("/var/cache/libvirt", cache, symlinks=True)
            for sub in ("var-lib-libvirt", "var-log-libvirt/qemu", "var-cache-libvirt"):
                (h.dir / sub).mkdir(parents=True, exist_ok=True)
            h.private.update({"/etc/libvirt": etc, "/var/lib/libvirt": h.dir / "var-lib-libvirt",
                              "/var/log/libvirt": h.dir / "var-log-libvirt", "/var/cache/libvirt": cache})

    def _start_holder(self, h: SimHost) -> None:
        h.holder = subprocess.Popen(["ip", "netns", "exec", h.netns, "unshare", "--mount", "--propagation", "private",
                                     "--", "sleep", "infinity"], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mine = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if os.readlink(f"/proc/{h.holder.pid}/ns/mnt") != mine and \
                        Path(f"/proc/{h.holder.pid}/comm").read_text().strip() == "sleep":
                    break
            except OSError:
                pass
            time.sleep(0.02)
        else:
            raise TimeoutError(f"simulated host {h.name}: its namespace holder did not start")
        # A private /run: the host's own /var/run/libvirt, /run/netns, sshd and runtime state. The
        # script is fixed text; the paths are its positional arguments ($1..$n sources, then targets).
        n = len(h.private)
        script = "mount -t tmpfs -o mode=755 tbsim-run /run && mkdir -p /run/sshd /run/lock /run/netns"
        for i in range(1, n + 1):
            script += f' && mount --bind "${{{i}}}" "${{{n + i}}}"'
        args = [str(s) for s in h.private.values()] + list(h.private)
        sh(*h.enter(["sh", "-c", script, "sh", *args]), timeout=30)
        # `ip netns exec` gave the holder a sysfs of the host's own network namespace (what libvirt's
        # macvtap lookup needs) without this machine's cgroup mounts under it: mount the same
        # hierarchies again (the same controllers attach to the same hierarchies), as runtimes need them.
        for fstype, target, options in cgroup_mounts():
            sh(*h.enter(["mkdir", "-p", target]), timeout=10, check=False)
            source = "cgroup_root" if fstype == "tmpfs" else fstype
            sh(*h.enter(["mount", "-t", fstype, "-o", options, source, target]), timeout=10)

    def close(self) -> None:
        for h in self.hosts.values():
            if h.holder is None or h.holder.poll() is not None:
                continue
            for d in h.domains():
                h.run("virsh", "-c", "qemu:///system", "destroy", d, check=False, timeout=60)
                h.run("virsh", "-c", "qemu:///system", "undefine", d, check=False, timeout=60)
            for c in h.containers():
                binary, cid = c.split(":", 1)
                flag = "-force" if binary == "runsc" else "--force"
                h.run(binary, "--root", RUNTIME_ROOTS[binary], "delete", flag, cid, check=False, timeout=60)
            for ns in h.namespaces():
                for pid in h.run("ip", "netns", "pids", ns, check=False).stdout.split():
                    _kill(pid)
                h.run("ip", "netns", "del", ns, check=False)
            if h.libvirt:
                pid = h.run("cat", "/run/libvirtd.pid", check=False).stdout.strip()
                if pid.isdigit():
                    os.kill(int(pid), signal.SIGTERM)
                    _wait_gone(int(pid), 15)
        for h in self.hosts.values():
            for pid in sh("ip", "netns", "pids", h.netns, check=False).stdout.split():
                _kill(pid)
            for p in (h.sshd, h.holder):
                if p is not None:
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        p.kill()
        for link in self._links:
            sh("ip", "link", "del", link, check=False)
        for ns in reversed(self._netns):
            sh("ip", "netns", "del", ns, check=False)


def cgroup_mounts() -> list[tuple[str, str, str]]:
    """(fstype, mount point, options) of this machine's mounts at and under /sys/fs/cgroup, in order."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and (parts[1] == "/sys/fs/cgroup" or parts[1].startswith("/sys/fs/cgroup/")):
            out.append((parts[2], parts[1], parts[3]))
    return out


def _kill(pid: str) -> None:
    try:
        os.kill(int(pid), signal.SIGKILL)
    except (ProcessLookupError, ValueError):
        pass


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    _kill(str(pid))


def requirements(subnet: ipaddress.IPv4Network, libvirt: bool) -> str | None:
    """Why the simulation cannot be built here, or None."""
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces)"
    for tool in ("ip", "ssh-keygen", "unshare", "nsenter", *(("libvirtd", "virtlogd", "virsh") if libvirt else ())):
        if shutil.which(tool) is None:
            return f"{tool} missing"
    if not Path(SSHD).exists():
        return "openssh-server missing"
    for line in sh("ip", "-o", "-4", "addr", "show").stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and ipaddress.IPv4Interface(parts[3]).network.overlaps(subnet):
            return f"{subnet} already in use on {parts[1]}"
    return None


def build(directory: Path, subnet: str, *, libvirt_hosts: Iterable[str] = ("a",), names: Iterable[str] = ("a", "b"),
          private_paths: Iterable[Path] = ()) -> SimLab:
    """Build the simulated lab (see the module docstring); call close() on the result, also on failure
    (a failure here closes what was built before raising)."""
    net = ipaddress.IPv4Network(subnet)
    tag = secrets.token_hex(2)
    prefix = f"tbrm{tag}"
    directory.mkdir(parents=True, exist_ok=True)
    hosts_list = list(net.hosts())
    key = directory / "id_ed25519"
    known = directory / "known_hosts"
    lab_home = directory / "labhome"
    lab_home.mkdir(exist_ok=True)
    lab = SimLab(directory, net, {}, key, known, lab_home, prefix, str(hosts_list[-1]))
    try:
        br = f"{prefix}-br"
        sh("ip", "netns", "add", br)
        lab._netns.append(br)
        sh("ip", "-n", br, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", br, "link", "set", "br0", "up")
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "testbed-labsim", "-f", str(key))
        authorized = directory / "authorized_keys"
        authorized.write_text(Path(f"{key}.pub").read_text())
        libvirt_hosts = set(libvirt_hosts)
        for i, name in enumerate(names):
            ns = f"{prefix}-{name}"
            d = directory / f"host-{name}"
            d.mkdir(exist_ok=True)
            private = {str(p): d / f"private-{j}" for j, p in enumerate([lab_home, *private_paths])}
            h = SimHost(name, ns, str(hosts_list[i]), d, name in libvirt_hosts, private)
            lab.hosts[name] = h
            sh("ip", "netns", "add", ns)
            lab._netns.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            inner, outer = f"{prefix}{name}", f"{prefix}p{name}"
            sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
            sh("ip", "link", "set", inner, "netns", ns)
            sh("ip", "-n", ns, "link", "set", inner, "name", "eth0")
            sh("ip", "-n", ns, "addr", "add", f"{h.address}/{net.prefixlen}", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "link", "set", outer, "netns", br)
            sh("ip", "-n", br, "link", "set", outer, "master", "br0", "up")
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "ssh_host_ed25519_key"))
            (d / "sshd_config").write_text(_sshd_config(h, authorized))
            lab._host_dirs(h)
            lab._start_holder(h)
            if h.libvirt:
                h.start_libvirt()
            h.start_sshd()
        ctl, ctl_peer = f"{prefix}c", f"{prefix}pc"
        sh("ip", "link", "add", ctl, "type", "veth", "peer", "name", ctl_peer)
        lab._links.append(ctl)
        sh("ip", "link", "set", ctl_peer, "netns", br)
        sh("ip", "-n", br, "link", "set", ctl_peer, "master", "br0", "up")
        sh("ip", "addr", "add", f"{lab.controller_address}/{net.prefixlen}", "dev", ctl)
        sh("sysctl", "-q", "-w", f"net.ipv6.conf.{ctl}.disable_ipv6=1", check=False)
        sh("ip", "link", "set", ctl, "up")
        known.write_text("".join(h.known_hosts_line() for h in lab.hosts.values()))
        for h in lab.hosts.values():
            wait_port(h.address, 22)
    except BaseException:
        lab.close()
        raise
    return lab


def _sshd_config(h: SimHost, authorized: Path) -> str:
    return f"""\
Port 22
ListenAddress {h.address}
HostKey {h.dir}/ssh_host_ed25519_key
PidFile {h.dir}/sshd.pid
AuthorizedKeysFile {authorized}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
MaxSessions 64
MaxStartups 64
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""
