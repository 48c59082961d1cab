"""What placing a server on a lab host rests on, tested without SSH or root: copies by digest and
their checks, the lab network on the host's experiment link, the libvirt tunnel's socket, the
remote console, preflight per host, reclaiming across hosts."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator import errors, paths
from orchestrator.enums import NicKind
from orchestrator.errors import (
    ConfigError,
    LaunchError,
    MissingToolError,
    NotRunnableError,
    ResourceBusyError,
    TransferError,
)
from orchestrator.hosts import transfer
from orchestrator.hosts.base import CommandResult, on_host
from orchestrator.hosts.local import LocalHost
from orchestrator.hosts.ssh import RemoteProcess, SshError, host_for_entry
from orchestrator.ledger import Ledger
from orchestrator.net.labhost import ADD_NAMESPACE, DELETE_NAMESPACE, RemoteLabNet, interface_with
from orchestrator.virt.site import qemu_start_from

ADDRS = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eth0@if149    inet 10.114.0.1/24 scope global eth0\\       valid_lft forever preferred_lft forever
"""


# --- a host that is "remote" but runs its commands here -----------------------------------------
class FakeChannel:
    """paramiko.Channel's surface that transfer, the tunnel and the console use, over a subprocess
    (stdout read straight from its pipe, which select() can wait on, as on a Channel's fileno())."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.err = bytearray()
        self.status_event = threading.Event()
        self._lock = threading.Lock()
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True)]
        for t in self._readers:
            t.start()
        threading.Thread(target=self._wait, daemon=True).start()
        self.closed = False
        self._eof = False

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def _read(self, pipe, buf: bytearray) -> None:
        for chunk in iter(lambda: pipe.read1(65536), b""):
            with self._lock:
                buf += chunk

    def _wait(self) -> None:
        self.proc.wait()
        for t in self._readers:
            t.join()
        self.status_event.set()

    def exit_status_ready(self) -> bool:  # as paramiko: only once the output was read to its end
        return self.status_event.is_set() and not self.recv_ready()

    def sendall(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def shutdown_write(self) -> None:
        self.proc.stdin.close()

    def recv_ready(self) -> bool:
        import select

        return not self._eof and bool(select.select([self.fileno()], [], [], 0)[0])

    def recv(self, n: int) -> bytes:
        data = os.read(self.fileno(), n)
        self._eof = self._eof or not data
        return data

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def recv_stderr(self, n: int) -> bytes:
        with self._lock:
            data, self.err[:] = bytes(self.err[:n]), self.err[n:]
        return data

    def recv_exit_status(self) -> int:
        self.status_event.wait(30)
        return self.proc.returncode

    def close(self) -> None:
        self.closed = True
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class LoopbackHost(LocalHost):
    """A lab host whose 'remote' side is this machine: commands run here, streams are subprocesses."""

    name = "loop"
    is_local = False

    def __init__(self, home: Path):
        self._home = str(home)
        self.channels: list[list[str]] = []

    @property
    def home(self) -> str:  # type: ignore[override]
        return self._home

    def connection_meta(self) -> dict:
        return {"host": "loop", "address": "loop.invalid"}

    def exec_channel(self, argv, *, timeout: float) -> FakeChannel:
        self.channels.append(list(argv))
        return FakeChannel(list(argv))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs-redis-0123"
    (root / "rootfs" / "usr" / "bin").mkdir(parents=True)
    (root / "rootfs" / "usr" / "bin" / "redis-server").write_bytes(os.urandom(5000))
    (root / "rootfs" / "bin").symlink_to("usr/bin")
    (root / "image.json").write_text("{}")
    (root / ".manifest.json").write_text("{}")  # the local cache's stat manifest: not copied
    return root


@pytest.fixture(autouse=True)
def fresh_checks():
    transfer.forget_checks()
    yield
    transfer.forget_checks()


def test_listing_on_the_host_matches_the_local_one(tree: Path):
    got = transfer.remote_listing(LocalHost(), str(tree), timeout=30)
    want = transfer.local_listing(tree)
    assert got == want
    assert want["rootfs/bin"] == "L usr/bin" and want["rootfs/usr/bin/redis-server"].startswith("H ")
    assert ".manifest.json" not in want
    assert transfer.remote_listing(LocalHost(), str(tree / "nope"), timeout=30) is None


def test_first_difference_names_the_file_and_both_digests():
    want = {"a": "H " + "1" * 64, "b": "L x"}
    assert transfer.first_difference(want, want) is None
    assert transfer.first_difference(want, {"b": "L x"}) == "a is missing"
    assert transfer.first_difference(want, {**want, "c": "H 0"}) == "c should not be there"
    assert transfer.first_difference(want, {**want, "a": "H " + "2" * 64}) == \
        f"a has sha256 {'2' * 16}…, expected {'1' * 16}…"
    assert transfer.first_difference(want, {**want, "b": "L y"}) == "b has link target y…, expected x…"


def test_stage_copies_once_checks_and_skips(tree: Path, tmp_path: Path):
    host = LoopbackHost(tmp_path / "labhome")
    ledger = Ledger("stage", tmp_path / "ledger")
    entry = transfer.stage_tree(host, tree, tree.name, "d" * 64, ledger)
    assert entry == f"{tmp_path}/labhome/cache/images/{tree.name}"
    assert transfer.local_listing(Path(entry)) == transfer.local_listing(tree)
    assert os.readlink(f"{entry}/rootfs/bin") == "usr/bin"
    assert Path(entry, transfer.DIGEST_MARKER).read_text().strip() == "d" * 64
    assert not list(Path(entry).parent.glob(".*tbpart*")) and ledger.live() == []
    copies = len(host.channels)
    assert transfer.stage_tree(host, tree, tree.name, "d" * 64, ledger) == entry  # memoized: no command
    transfer.forget_checks()
    assert transfer.stage_tree(host, tree, tree.name, "d" * 64, ledger) == entry  # checked, not copied
    assert len(host.channels) == copies
    # bit rot in the host's cache: checked, found, copied again
    Path(entry, "rootfs/usr/bin/redis-server").write_bytes(b"rotten")
    transfer.forget_checks()
    transfer.stage_tree(host, tree, tree.name, "d" * 64, ledger)
    assert len(host.channels) == copies + 1
    original = (tree / "rootfs/usr/bin/redis-server").read_bytes()
    assert Path(entry, "rootfs/usr/bin/redis-server").read_bytes() == original
    # the local image was rebuilt (another digest): the host's entry is replaced
    (tree / "rootfs/usr/bin/redis-server").write_bytes(b"rebuilt")
    transfer.stage_tree(host, tree, tree.name, "e" * 64, ledger)
    assert Path(entry, "rootfs/usr/bin/redis-server").read_bytes() == b"rebuilt"


def test_a_copy_that_fails_its_check_is_one_line_and_removed(tree: Path, tmp_path: Path, monkeypatch):
    host = LoopbackHost(tmp_path / "labhome")
    ledger = Ledger("stage", tmp_path / "ledger")
    real = transfer.send_tree

    def corrupting(h, local, remote_dir, *, timeout):
        real(h, local, remote_dir, timeout=timeout)
        Path(remote_dir, "rootfs/usr/bin/redis-server").write_bytes(b"flipped")

    monkeypatch.setattr(transfer, "send_tree", corrupting)
    with pytest.raises(TransferError) as err:
        transfer.stage_tree(host, tree, tree.name, "d" * 64, ledger)
    msg = str(err.value)
    assert msg.startswith(f"image {tree.name}: the copy on loop failed its sha256 check: "
                          "rootfs/usr/bin/redis-server has sha256 ") and msg.endswith("the copy was removed")
    assert isinstance(err.value, LaunchError) and "\n" not in msg  # a cell failure, not the run's
    cache = tmp_path / "labhome" / "cache" / "images"
    assert not list(cache.glob(".*")) and not (cache / tree.name).exists()
    assert ledger.live() == []


def test_put_tree_replaces_the_directory(tmp_path: Path):
    host = LoopbackHost(tmp_path / "labhome")
    src = tmp_path / "launch"
    (src / "config").mkdir(parents=True)
    (src / "config" / "redis.conf").write_text("port 6379\n")
    dest = tmp_path / "there" / "launch"
    (dest / "stale").mkdir(parents=True)
    transfer.put_tree(host, src, str(dest), timeout=30)
    assert (dest / "config" / "redis.conf").read_text() == "port 6379\n"
    assert not (dest / "stale").exists() and not list(dest.parent.glob("*tbpart*"))


def test_ship_file_is_kept_by_its_digest(tmp_path: Path):
    host = LoopbackHost(tmp_path / "labhome")
    f = tmp_path / "wrapper.sh"
    f.write_text("#!/bin/sh\n")
    f.chmod(0o755)
    there = transfer.ship_file(host, f)
    assert there.startswith(f"{tmp_path}/labhome/cache/files/") and there.endswith("-wrapper.sh")
    assert Path(there).read_text() == "#!/bin/sh\n"
    assert transfer.ship_file(LocalHost(), f) == str(f)


def test_remote_path_reclaimer_refuses_what_testbed_does_not_make():
    from orchestrator.ledger import reclaimer_for

    with pytest.raises(TransferError, match="not a copy testbed makes"):
        reclaimer_for("remote-path").reclaim("/var/lib/important", {"address": "x"})


# --- paths on a lab host ----------------------------------------------------------------------------
def test_on_host_keeps_the_layout_under_the_hosts_home(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TESTBED_HOME", str(tmp_path / "home"))
    local = paths.runs_dir() / "abcd" / "runc" / "config"
    assert on_host(LocalHost(), local) == str(local)
    assert on_host(LoopbackHost(Path("/srv/testbed")), local) == "/srv/testbed/runs/abcd/runc/config"
    with pytest.raises(errors.TestbedError, match="not under TESTBED_HOME"):
        on_host(LoopbackHost(Path("/srv/testbed")), tmp_path / "elsewhere")


def test_lab_file_testbed_home(tmp_path: Path):
    from orchestrator.config.lab import load_lab

    path = tmp_path / "lab.yaml"
    path.write_text("hosts:\n  - {name: a, address: 192.0.2.1}\n"
                    "  - {name: b, address: 192.0.2.2, testbed_home: /srv/tb/}\n")
    lab = load_lab(path)
    assert lab.host("a").testbed_home == "/var/lib/testbed" and lab.host("b").testbed_home == "/srv/tb"
    path.write_text("hosts:\n  - {name: a, address: 192.0.2.1, testbed_home: srv/tb}\n")
    with pytest.raises(ConfigError) as err:
        load_lab(path)
    assert str(err.value).startswith(f"{path}:2: hosts[0].testbed_home: ") and "absolute path" in str(err.value)


def test_ledger_entries_without_connection_metadata_are_this_machine():
    assert isinstance(host_for_entry({}), LocalHost)


# --- the lab network on a lab host's experiment link ------------------------------------------------
@dataclass
class RecordingHost:
    name: str = "a"
    is_local: bool = False
    lab_address: str | None = "10.114.0.1"
    home: str = "/var/lib/testbed"
    fail: set[str] = field(default_factory=set)  # scripts (ADD/DELETE) that exit non-zero
    unreachable: bool = False
    calls: list[list[str]] = field(default_factory=list)

    def connection_meta(self) -> dict:
        return {"host": self.name, "address": "192.0.2.10"}

    def run(self, argv, *, timeout, check=True, netns=None, input=None, env=None, abort=None) -> CommandResult:
        if self.unreachable:
            raise SshError("ssh a (root@192.0.2.10:22): unreachable: Connection refused")
        argv = list(argv)
        self.calls.append(argv)
        if argv[:3] == ["ip", "-o", "-4"]:
            return CommandResult(argv, 0, ADDRS, "", 0.0)
        script = "ADD" if ADD_NAMESPACE in argv else "DELETE" if DELETE_NAMESPACE in argv else ""
        code = 1 if script in self.fail else 0
        return CommandResult(argv, code, "", "RTNETLINK answers: File exists" if code else "", 0.0)


def test_interface_with_the_lab_address():
    assert interface_with(ADDRS, "10.114.0.1") == ("eth0", ipaddress.IPv4Interface("10.114.0.1/24"))
    assert interface_with(ADDRS, "10.114.0.9") is None


def test_namespaces_are_macvlans_of_the_experiment_interface(tmp_path: Path):
    host = RecordingHost()
    ledger = Ledger("rln", tmp_path / "ledger")
    net = RemoteLabNet(host, "rid1", "10.114.0.0/24", ledger, reserved=["10.114.0.10", "10.114.0.2"])
    net.create()
    assert net.iface == "eth0"
    att = net.namespace("runc")
    assert att.nic == NicKind.MACVLAN and att.netns == "tb-rid1-runc1" and att.gateway is None
    assert str(att.address) == "10.114.0.11"  # .10 is another host's lab_address
    [add] = [c for c in host.calls if ADD_NAMESPACE in c]
    assert add[-4:] == ["tb-rid1-runc1", "eth0", att.mac, "10.114.0.11/24"]
    [(kind, name, meta)] = ledger.live()
    assert (kind, name) == ("netns", "tb-rid1-runc1") and meta["address"] == "192.0.2.10"
    vm = net.bridge_port()
    assert vm.direct == "eth0" and vm.nic == NicKind.VIRTIO and str(vm.address) == "10.114.0.12"
    own = net.host_interface("native")
    assert own.nic == NicKind.HOST and str(own.address) == "10.114.0.1" and own.netns is None
    with pytest.raises(ResourceBusyError, match="already in use"):
        net.host_interface("native")
    with pytest.raises(NotRunnableError, match="SR-IOV on a lab host"):
        net.adopt(NicKind.SRIOV, "52:54:00:00:00:01")
    with pytest.raises(NotRunnableError, match="tap"):
        net.tap("microvm")
    net.destroy()
    assert any(DELETE_NAMESPACE in c and "tb-rid1-runc1" in c for c in host.calls)
    assert ledger.live() == []
    assert str(net.namespace("gvisor").address) == "10.114.0.13"  # released ones go to the back, as in LabNet


def test_a_namespace_that_cannot_be_made_is_a_launch_error(tmp_path: Path):
    host = RecordingHost(fail={"ADD"})
    ledger = Ledger("rln", tmp_path / "ledger")
    net = RemoteLabNet(host, "rid2", "10.114.0.0/24", ledger)
    net.create()
    with pytest.raises(LaunchError, match="host a: cannot make namespace tb-rid2-runc1 on eth0: RTNETLINK"):
        net.namespace("runc")
    assert ledger.live() == []


def test_an_unreachable_host_keeps_the_entry_for_gc(tmp_path: Path):
    host = RecordingHost()
    ledger = Ledger("rln", tmp_path / "ledger")
    net = RemoteLabNet(host, "rid3", "10.114.0.0/24", ledger)
    net.create()
    att = net.namespace("runc")
    host.unreachable = True
    net.release(att)  # no exception: teardown goes on
    assert [n for _, n, _ in ledger.live()] == ["tb-rid3-runc1"]


def test_lab_subnet_must_hold_the_hosts_lab_address(tmp_path: Path):
    ledger = Ledger("rln", tmp_path / "ledger")
    with pytest.raises(ConfigError, match=r"lab.subnet 10.77.0.0/24 does not contain a's lab_address 10.114.0.1"):
        RemoteLabNet(RecordingHost(), "r", "10.77.0.0/24", ledger)
    with pytest.raises(ConfigError, match="lab_address is needed"):
        RemoteLabNet(RecordingHost(lab_address=None), "r", "10.114.0.0/24", ledger)
    net = RemoteLabNet(RecordingHost(lab_address="10.114.0.7"), "r", "10.114.0.0/24", ledger)
    with pytest.raises(ConfigError, match=r"no interface has its lab_address 10\.114\.0\.7"):
        net.create()


# --- processes on a host that stops answering ---------------------------------------------------------
class DeadHost:
    name = "a"

    def run(self, argv, **kw):
        raise SshError("ssh a (root@192.0.2.10:22): unreachable: Connection refused")


def test_a_process_on_an_unreachable_host_is_not_alive_and_stays_in_the_ledger(tmp_path: Path):
    ledger = Ledger("rp", tmp_path / "ledger")
    ledger.acquire("remote-process", "a:redis:1", pid=42, start=7)
    proc = RemoteProcess(DeadHost(), 42, 7, "/x/server.log", "/x/pid", ledger, "a:redis:1")  # type: ignore[arg-type]
    assert proc.alive() is False and "Connection refused" in (proc.unreachable or "")
    assert proc.returncode() == -1 and "log unavailable" in proc.log_tail()
    proc.stop()
    assert [n for _, n, _ in ledger.live()] == ["a:redis:1"]


# --- QEMU's start on a lab host, on this machine's clock ---------------------------------------------
def test_qemu_start_from_the_hosts_proc():
    stat = "4242 (qemu-system-x86) S " + " ".join(["0"] * 18) + " 123400 0 0"
    out = f"5000.00 9000.00\n{stat}\n100\n"
    # the process is 5000 - 1234 s old; read at local monotonic 10000
    assert qemu_start_from(out, 10000.0) == pytest.approx(10000.0 - (5000.0 - 1234.0))
    assert qemu_start_from("garbage", 1.0) is None


# --- the console of a guest on a lab host --------------------------------------------------------------
def test_remote_console_follows_the_file_and_survives_the_host_going_away(tmp_path: Path):
    from orchestrator.virt.console import RemoteConsole

    f = tmp_path / "console.log"
    host = LoopbackHost(tmp_path)
    con = RemoteConsole(host, str(f))
    con.start()  # before the file exists, as before the domain is created
    f.write_text("[    0.5] Linux version 6.1\nTESTBED guest-start uptime=0.90\n")
    events: list = []
    deadline = time.monotonic() + 10
    while len(events) < 2 and time.monotonic() < deadline:
        events += con.poll()
        time.sleep(0.01)
    assert [e.kind for e in events] == ["printk", "marker"]
    assert con.parser.uptime("guest-start") == 0.9
    con.close()
    assert con.poll() == []

    class Gone(LoopbackHost):
        def exec_channel(self, argv, *, timeout):
            raise SshError("ssh a: unreachable: Connection refused")

    lost = RemoteConsole(Gone(tmp_path), str(f))
    assert lost.poll() == [] and "Connection refused" in (lost.error or "")


# --- the libvirt tunnel: a private unix socket, each connection one channel ----------------------------
def test_tunnel_carries_each_connection_over_its_own_channel(tmp_path: Path):
    from orchestrator.virt import tunnel as tunnel_mod
    from orchestrator.virt.tunnel import LibvirtTunnel

    class EchoHost(LoopbackHost):
        def exec_channel(self, argv, *, timeout):
            assert argv == [tunnel_mod.HELPER, "qemu:///system"]
            self.channels.append(list(argv))
            return FakeChannel(["cat"])  # stands in for virt-ssh-helper: echoes the bytes back

    host = EchoHost(tmp_path)
    ledger = Ledger("tun", tmp_path / "ledger")
    t = LibvirtTunnel(host, "qemu:///system", ledger=ledger)  # type: ignore[arg-type]
    try:
        assert t.uri == f"qemu+unix:///system?socket={t.path}"
        assert os.stat(t.dir).st_mode & 0o777 == 0o700 and os.stat(t.path).st_mode & 0o777 == 0o600
        assert len(str(t.path)) < 100  # a unix socket path
        for msg in (b"hello", b"again"):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(str(t.path))
                s.sendall(msg)
                assert s.recv(100) == msg
        assert len(host.channels) == 2
        assert [k for k, _, _ in ledger.live()] == ["tunnel-dir"]
    finally:
        t.close()
    assert not t.dir.exists() and ledger.live() == []


def test_remote_uris_are_refused_with_the_placement_fix(tmp_path: Path):
    from orchestrator.platforms.linux_vm import LinuxVm, LinuxVmOptions
    from orchestrator.virt.connection import Connection

    with pytest.raises(ConfigError, match="keep uri: qemu:///system"):
        Connection.to(LoopbackHost(tmp_path), "qemu+ssh://root@192.0.2.1/system")  # type: ignore[arg-type]
    vm = LinuxVm("vm", LinuxVmOptions(uri="qemu+ssh://root@192.0.2.1/system"), LocalHost(),
                 Ledger("u", tmp_path / "ledger"), tmp_path / "vm")
    [line] = vm.preflight()
    assert "place the server there (placement.server_host) and keep uri: qemu:///system" in line
    remote = LinuxVm("vm", LinuxVmOptions(nic="sriov", sriov_pf="ens1f0"), LoopbackHost(tmp_path),  # type: ignore[arg-type]
                     Ledger("u", tmp_path / "ledger"), tmp_path / "vm")
    assert "sriov on a lab host (loop) is not supported yet" in (remote.not_runnable(None) or "")  # type: ignore[arg-type]
    assert remote.provenance()["libvirt_uri"] == "loop:qemu:///system"


# --- preflight: every tool on the host it is needed on ------------------------------------------------
SUITE = """\
name: pf
repetitions: 1
platforms:
{platforms}
workloads: {{redis: {{}}}}
benchmarks: {{boot: {{kind: startup}}}}
"""


def _check(tmp_path: Path, platforms: str, server) -> dict:
    from orchestrator.placement import resolve
    from orchestrator.plan import load_plan
    from orchestrator.preflight import check_tools
    from orchestrator.testing.fakes import FakeHost

    path = tmp_path / "s.yaml"
    path.write_text(SUITE.format(platforms=platforms))
    plan = load_plan(path)
    ledger = Ledger("pf", tmp_path / "ledger")
    made = {n: e.cls(n, e.options, server, ledger, tmp_path / n) for n, e in plan.platforms.items()}
    placement = resolve(plan.model.placement, server, FakeHost())
    return {str(c): why for c, why in check_tools(plan, placement, made, server.is_local).items()}


def test_a_platform_tool_missing_on_its_host_fails_only_its_cells(tmp_path: Path):
    from orchestrator.testing.fakes import FakeHost

    lab_a = FakeHost(name="a", is_local=False, lab_address="10.114.0.1", missing={"runsc"})
    failed = _check(tmp_path, "  runc: {}\n  gvisor: {}", lab_a)
    assert failed == {"gvisor/redis/boot": "missing: runsc on a (needed by platform gvisor; Debian package runsc); "
                                           "run `testbed provision a` (see `testbed doctor a`)"}
    # a guest platform on a lab host also needs what carries libvirt over SSH there
    lab_a = FakeHost(name="a", is_local=False, lab_address="10.114.0.1", missing={"virt-ssh-helper"})
    failed = _check(tmp_path, "  runc: {}\n  vm: {kind: linux-vm}", lab_a)
    assert list(failed) == ["vm/redis/boot"] and "virt-ssh-helper on a" in failed["vm/redis/boot"]
    # nothing left to run: the run stops at once, with the same one line
    one_line = r"^missing: runsc on localhost .*; run ./setup.sh \(see `testbed doctor`\)$"
    with pytest.raises(MissingToolError, match=one_line):
        _check(tmp_path, "  gvisor: {}", FakeHost(missing={"runsc"}))


def test_runner_fails_the_cells_of_a_platform_whose_tool_is_missing_and_runs_the_rest(tmp_path: Path):
    from orchestrator.plan import load_plan
    from orchestrator.results.store import Store
    from orchestrator.runner import Runner
    from orchestrator.testing.fakes import EVENTS, FakeHost, FakeLabNet

    path = tmp_path / "s.yaml"
    path.write_text("name: partial\nrepetitions: 1\nplatforms: {fake: {}, runc: {}}\nworkloads: {fake-echo: {}}\n"
                    "benchmarks: {boot: {kind: startup}}\n")
    EVENTS.clear()
    store = Store(tmp_path / "r.sqlite")
    r = Runner(load_plan(path), store=store, server_host=FakeHost(missing={"runc"}), client_host=FakeHost(),
               labnet_factory=FakeLabNet)
    out = r.run()
    assert out.status == "failed"
    assert out.failed_cells == ["runc/fake-echo/boot: missing: runc on localhost (needed by platform runc; Debian "
                                "package runc); run ./setup.sh (see `testbed doctor`)"]
    rows = list(store.samples(out.run_id))
    assert {(s.platform, s.status) for s in rows if s.metric in ("startup_ms", "cell")} == {("fake", "ok"),
                                                                                        ("runc", "failed")}
    assert not [w for k, w in EVENTS if k == "launch" and w == "runc"]
