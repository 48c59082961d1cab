"""Two lab hosts for real: two simulated hosts, each with its own sshd, reached over SSH.

orchestrator/testing/labsim.py builds them (all removed at the end, also on failure): host A
10.78.0.1 and host B 10.78.0.2, each a network namespace plus a mount namespace of its own
(private /run and testbed_home), the controller (this pytest process) 10.78.0.254, all on one
bridge. The controller talks SSH to both; host B's redis-benchmark reaches host A's redis-server
over the link. 10.78.0.0/24 exists only here. Needs root, ip, ssh-keygen, unshare, nsenter,
/usr/sbin/sshd (openssh-server), redis-server, redis-tools.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest
import yaml

from orchestrator.config.lab import load_lab
from orchestrator.errors import ConfigError
from orchestrator.hosts.ssh import HostKeyError, SshError, SshHost, fingerprint
from orchestrator.ledger import Ledger
from orchestrator.provision.ansible import ProvisionError, provision
from orchestrator.provision.doctor import run_checks
from orchestrator.testing import labsim

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

SUBNET = ipaddress.IPv4Network("10.78.0.0/24")
ADDR_A, ADDR_B = "10.78.0.1", "10.78.0.2"
REPO = Path(__file__).resolve().parents[2]
TESTBED = Path(sys.executable).parent / "testbed"


def sh(*argv: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=check)


def _requirements() -> str | None:
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            return f"{tool} missing"
    return labsim.requirements(SUBNET, libvirt=False)


@dataclass
class Node:
    name: str
    netns: str
    address: str
    dir: Path
    host_pub: Path
    proc: subprocess.Popen | None = None

    def host_key(self) -> paramiko.PKey:
        kind, b64 = self.host_pub.read_text().split()[:2]
        return paramiko.PKey.from_type_string(kind, __import__("base64").b64decode(b64))

    def known_hosts_line(self) -> str:
        kind, b64 = self.host_pub.read_text().split()[:2]
        return f"{self.address} {kind} {b64}\n"


@dataclass
class Lab:
    tmp: Path
    a: Node
    b: Node
    key: Path  # client private key (no passphrase)
    enc_key: Path  # client private key protected by PASSPHRASE
    other_key: Path  # a key that is not authorized
    home: Path  # every host's testbed_home (private to each host)

    def write_lab(self, name: str, hosts: list[dict]) -> Path:
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"hosts": hosts}, sort_keys=False))
        return path

    def host_entry(self, node: Node, known_hosts: Path | None, **extra) -> dict:
        entry = {"name": node.name, "address": node.address, "user": "root", "identity_file": str(self.key),
                 "lab_address": node.address, "connect_timeout": 5, "testbed_home": str(self.home)}
        if known_hosts is not None:
            entry["known_hosts"] = str(known_hosts)
        entry.update(extra)
        return entry


PASSPHRASE = "tb-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("labhosts")
    sim = labsim.build(tmp / "sim", str(SUBNET), libvirt_hosts=())
    try:
        # keys: one more authorized (protected by PASSPHRASE), one that is not
        enc_key, other = tmp / "id_enc", tmp / "id_other"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-C", "testbed-test-enc", "-f", str(enc_key))
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "not-authorized", "-f", str(other))
        with open(sim.dir / "authorized_keys", "a") as fh:
            fh.write(Path(f"{enc_key}.pub").read_text())
        nodes = [Node(h.name, h.netns, h.address, h.dir, h.host_pub, h.sshd) for h in sim.hosts.values()]
        yield Lab(tmp, nodes[0], nodes[1], sim.key, enc_key, other, sim.lab_home)
    finally:
        sim.close()


@pytest.fixture
def known_hosts(lab: Lab, tmp_path: Path) -> Path:
    """A known_hosts file that records host A's key (host B is unknown in it)."""
    path = tmp_path / "known_hosts"
    path.write_text(lab.a.known_hosts_line())
    return path


@pytest.fixture(autouse=True)
def testbed_home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "tbhome"
    home.mkdir()
    monkeypatch.setenv("TESTBED_HOME", str(home))
    monkeypatch.delenv("TESTBED_SSH_KEY_PASSPHRASE", raising=False)
    return home


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    assert "Traceback" not in text
    return text


# --- the two-host run -------------------------------------------------------------------
def test_provision_doctor_and_two_host_redis(lab: Lab, known_hosts: Path, tmp_path: Path):
    # A is in known_hosts; B is not, but its fingerprint is pinned in the lab file.
    lab_path = lab.write_lab("lab", [
        lab.host_entry(lab.a, known_hosts, roles=["server"]),
        lab.host_entry(lab.b, known_hosts, roles=["client"], host_key_fingerprint=fingerprint(lab.b.host_key())),
    ])
    markers = tmp_path / "markers"
    events: list[str] = []
    tags = ["testbed_probe", "tuning"]
    first = provision(lab_path, tags=tags, extravars={"testbed_probe_marker_dir": str(markers)}, on_event=events.append)
    assert first.status == "successful"
    assert set(first.hosts) == {"a", "b"}
    assert all(s.failed == 0 and s.unreachable == 0 for s in first.hosts.values())
    assert first.changed >= 2  # the marker of each host (marker dir created once or twice)
    assert (markers / "provisioned-a").read_text() == "provisioned by testbed for a\n"
    assert (markers / "provisioned-b").exists()
    assert any(e == "a: Provisioned marker: changed" for e in events)
    # pinning recorded B's key in known_hosts, so the strict Ansible run could verify it
    assert lab.b.address in known_hosts.read_text()

    second = provision(lab_path, tags=tags, extravars={"testbed_probe_marker_dir": str(markers)})
    assert second.changed == 0, second.summary()
    assert second.failed == 0
    assert {h: s.ok > 0 for h, s in second.hosts.items()} == {"a": True, "b": True}

    # doctor on both lab hosts, over SSH
    lab_cfg = load_lab(lab_path)
    host_a = SshHost.from_lab(lab_cfg.host("a"))
    host_b = SshHost.from_lab(lab_cfg.host("b"))
    try:
        for host in (host_a,):  # host B: through the CLI below (each check is a round trip over SSH)
            checks = {c.name: c for c in run_checks(host)}
            assert checks["tool redis-server"].status == "pass"
            assert checks["kvm device"].status in ("pass", "fail")
            assert checks["disk"].status in ("pass", "warn") and "GiB free" in checks["disk"].detail
            assert checks["cpu cores"].detail.split()[0].isdigit()
            assert "hugepages" in checks and "iommu" in checks and "cpu governor" in checks
            assert not [c for c in checks.values() if "check failed to run" in c.detail]

        if TESTBED.exists():  # the CLI, as a user runs it: `testbed doctor b --lab FILE --format json`
            res = _cli("doctor", "b", "--lab", str(lab_path), "--format", "json", env_home=tmp_path)
            report = __import__("json").loads(res.stdout)
            assert report["host"] == "b"
            names = {c["name"]: c for c in report["checks"]}
            assert names["tool redis-benchmark"]["status"] == "pass"
            assert {"kvm device", "iommu", "sr-iov", "hugepages", "cpu governor", "disk"} <= set(names)
            assert not [c for c in names.values() if "check failed to run" in c["detail"]]
            assert res.returncode == (1 if any(c["status"] == "fail" for c in report["checks"]) else 0)

        _two_host_redis(host_a, host_b, tmp_path)
    finally:
        host_a.close()
        host_b.close()


def _two_host_redis(host_a: SshHost, host_b: SshHost, tmp_path: Path) -> None:
    """native redis-server on lab host A, redis-benchmark on lab host B, B -> A over the lab link."""
    from orchestrator.bench.base import ClientSide, Target
    from orchestrator.bench.redis_benchmark import RedisBenchmark, RedisBenchmarkOptions
    from orchestrator.net.labnet import Attachment
    from orchestrator.platforms.base import Timeline
    from orchestrator.platforms.native import Native
    from orchestrator.provenance import host_facts
    from orchestrator.readiness import plain_socket, wait_ready
    from orchestrator.workloads.redis import Redis

    facts = host_facts(host_a)
    assert facts["host"] == "a" and facts["cores"] >= 1 and "facts_error" not in facts

    from orchestrator import paths

    ledger = Ledger("labtest", tmp_path / "ledger")
    native = Native("native", Native.Options(), host_a, ledger, paths.runs_dir() / "labtest" / "native")
    workload = Redis()
    iface = ipaddress.IPv4Interface(f"{host_a.lab_address}/24")
    attachment = Attachment(iface.ip, iface.network, iface.ip, "", nic="host")
    image = native.image(workload, None)
    instance = native.launch(image, workload, attachment, Timeline())
    try:
        assert isinstance(instance.proc.pid, int)
        assert instance.proc.alive()
        wait_ready(instance, workload, plain_socket, 20)
        # the server really is a process in host A's namespace, recorded in the ledger
        kinds = [k for k, _, _ in ledger.live()]
        assert kinds == ["remote-process"]
        bench = RedisBenchmark("setget", RedisBenchmarkOptions(tests=["set", "get"], requests=[2000], clients=[5]))
        client = ClientSide(host_b, None, None, tmp_path)
        assert bench.versions(host_b)["redis-benchmark"].startswith("redis-benchmark ")  # asked over SSH
        target = Target(host_a.lab_address, workload.port, "redis")
        measurements = bench.run({"requests": 2000, "clients": 5}, target, client)
        assert measurements and all(m.status == "ok" for m in measurements), measurements
        rps = [m for m in measurements if m.metric == "requests_per_s"]
        assert {m.params["test"] for m in rps} == {"SET", "GET"}
        assert all(m.value > 0 for m in rps)
    finally:
        instance.stop()
    assert not instance.proc.alive()
    assert ledger.live() == []
    assert "ready" in instance.timeline.marks


# --- host keys and authentication ---------------------------------------------------------
def test_mismatching_host_key_is_refused(lab: Lab, tmp_path: Path):
    kh = tmp_path / "kh"
    kind, b64 = lab.b.host_pub.read_text().split()[:2]
    kh.write_text(f"{lab.a.address} {kind} {b64}\n")  # B's key recorded for A's address
    host = SshHost("a", lab.a.address, identity_file=lab.key, known_hosts=kh, trust_new=True,
                   host_key_fingerprint=fingerprint(lab.a.host_key()))
    with pytest.raises(HostKeyError) as err:
        host.run(["true"], timeout=10)
    msg = _one_line(err.value)
    assert "HOST KEY MISMATCH" in msg and "refusing" in msg and str(kh) in msg


def test_unknown_host_key_refused_unless_pinned_or_trusted(lab: Lab, tmp_path: Path):
    kh = tmp_path / "kh"
    with pytest.raises(HostKeyError) as err:
        SshHost("a", lab.a.address, identity_file=lab.key, known_hosts=kh, connect_timeout=5).run(["true"], timeout=10)
    msg = _one_line(err.value)
    assert "unknown host key" in msg and "--trust-new-host-key" in msg
    assert not kh.exists()

    wrong_pin = fingerprint(lab.b.host_key())
    with pytest.raises(HostKeyError) as err:
        SshHost("a", lab.a.address, identity_file=lab.key, known_hosts=kh,
                host_key_fingerprint=wrong_pin).run(["true"], timeout=10)
    assert "does not match the host_key_fingerprint" in _one_line(err.value)

    with SshHost("a", lab.a.address, identity_file=lab.key, known_hosts=kh,
                 host_key_fingerprint=fingerprint(lab.a.host_key())) as pinned:
        assert pinned.run(["echo", "pinned"], timeout=10).stdout == "pinned\n"
    assert lab.a.address in kh.read_text()  # remembered

    kh2 = tmp_path / "kh2"
    with SshHost("b", lab.b.address, identity_file=lab.key, known_hosts=kh2, trust_new=True) as trusted:
        assert trusted.run(["hostname"], timeout=10).ok
    assert kh2.read_text().split()[0] == lab.b.address
    # afterwards the recorded key suffices without the flag
    with SshHost("b", lab.b.address, identity_file=lab.key, known_hosts=kh2) as again:
        assert again.run(["true"], timeout=10).ok


def test_wrong_key_or_user_fails_cleanly(lab: Lab, known_hosts: Path):
    with pytest.raises(SshError) as err:
        SshHost("a", lab.a.address, identity_file=lab.other_key, known_hosts=known_hosts).run(["true"], timeout=10)
    msg = _one_line(err.value)
    assert "authentication failed for user 'root'" in msg and str(lab.other_key) in msg

    with pytest.raises(SshError) as err:
        SshHost("a", lab.a.address, user="nobody", identity_file=lab.key, known_hosts=known_hosts).run(
            ["true"], timeout=10)
    assert "authentication failed for user 'nobody'" in _one_line(err.value)


def test_no_secrets_in_logs(lab: Lab, known_hosts: Path, caplog, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("TESTBED_SSH_KEY_PASSPHRASE", PASSPHRASE)
    caplog.set_level(logging.DEBUG)
    with SshHost("a", lab.a.address, identity_file=lab.enc_key, known_hosts=known_hosts) as host:
        assert host.run(["echo", "hello"], timeout=10).stdout == "hello\n"
        src = tmp_path / "payload.txt"
        src.write_text("payload\n")
        host.put(src, str(tmp_path / "copied.txt"), timeout=20)
    assert (tmp_path / "copied.txt").read_text() == "payload\n"
    text = caplog.text
    assert "connected" in text  # DEBUG logging really was captured
    private = lab.enc_key.read_text()
    body = "".join(line for line in private.splitlines() if not line.startswith("-----"))
    assert PASSPHRASE not in text
    for chunk in (body[i:i + 24] for i in range(0, len(body) - 24, 24)):
        assert chunk not in text
    for key in (lab.key, lab.other_key):
        k = "".join(line for line in key.read_text().splitlines() if not line.startswith("-----"))
        assert k[20:60] not in text


def test_put_verifies_and_spawn_runs_remote_process(lab: Lab, known_hosts: Path, tmp_path: Path):
    ledger = Ledger("spawn", tmp_path / "ledger")
    with SshHost("a", lab.a.address, identity_file=lab.key, known_hosts=known_hosts) as host:
        log_path = tmp_path / "remote" / "sleep.log"
        proc = host.spawn(["sh", "-c", "echo started; exec sleep 60"], log_path=log_path, ledger=ledger, label="sleep")
        try:
            assert proc.alive()
            deadline = time.monotonic() + 10
            while "started" not in proc.log_tail() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert proc.log_tail() == "started"
            assert [k for k, _, _ in ledger.live()] == ["remote-process"]
            # the process runs in host A's namespace (it sees eth0 with A's address)
            ns_of_pid = os.readlink(f"/proc/{proc.pid}/ns/net")
            assert ns_of_pid != os.readlink("/proc/self/ns/net")
            assert proc.returncode() is None
        finally:
            proc.stop(grace=2)
        assert not proc.alive()
        assert ledger.live() == []
        short = host.spawn(["sh", "-c", "exit 3"], log_path=tmp_path / "remote" / "exit.log", ledger=ledger,
                           label="exit")
        deadline = time.monotonic() + 10
        while short.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert short.returncode() == 3
        short.stop()
        # a timeout on a command is one line
        from orchestrator.errors import CommandTimeout
        with pytest.raises(CommandTimeout) as err:
            host.run(["sleep", "5"], timeout=0.5)
        assert "did not finish within 0.5 s" in _one_line(err.value)
        assert host.run(["printf", "%s", "a b; $(touch /tmp/x)"], timeout=10).stdout == "a b; $(touch /tmp/x)"
        assert host.run(["cat"], timeout=10, input="fed via stdin").stdout == "fed via stdin"


def test_remote_process_reclaimer(lab: Lab, known_hosts: Path, tmp_path: Path):
    """A run killed after spawn: `testbed gc`'s reclaimer reconnects and kills the process group."""
    from orchestrator.ledger import reclaimer_for

    ledger = Ledger("killed", tmp_path / "ledger")
    host = SshHost("a", lab.a.address, identity_file=lab.key, known_hosts=known_hosts)
    proc = host.spawn(["sleep", "60"], log_path=tmp_path / "r" / "s.log", ledger=ledger, label="s")
    host.close()
    try:
        [(kind, name, meta)] = ledger.live()
        assert kind == "remote-process" and meta["pid"] == proc.pid
        assert "passphrase" not in str(meta).lower()
        reclaimer_for(kind).reclaim(name, meta)
        assert not Path(f"/proc/{proc.pid}").exists() or \
            Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1].startswith("Z")
    finally:
        proc.stop(grace=1)
        host.close()


# --- the nightly role: a cron entry (no systemd in the namespaces), idempotent, removable ------
NIGHTLY_CRON = "/etc/cron.d/testbed-nightly"  # the role's default; the test must never write it


def _nightly_lab(lab: Lab, known_hosts: Path, host_nightly: dict) -> Path:
    suites = lab.tmp / "nightly-suites"
    suites.mkdir(exist_ok=True)
    (suites / "quick.yaml").write_text("name: quick\n")
    (suites / "second.yaml").write_text("name: second\n")
    path = lab.tmp / "nightly-lab.yaml"
    path.write_text(yaml.safe_dump({
        "nightly": {"suites": ["nightly-suites/quick.yaml", "nightly-suites/second.yaml"], "at": "02:15"},
        "hosts": [lab.host_entry(lab.a, known_hosts, nightly=host_nightly)]}, sort_keys=False))
    return path


def test_nightly_role_installs_cron_entry_idempotently(lab: Lab, known_hosts: Path, tmp_path: Path):
    """Host A shares this machine's files, so every path the role writes points into tmp_path."""
    etc = tmp_path / "etc"
    (etc / "cron.d").mkdir(parents=True)
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "testbed"  # stands in for `testbed nightly`: records argv and TESTBED_HOME
    fake.write_text(f'#!/bin/sh\necho "$TESTBED_HOME $*" >> {calls}\n')
    fake.chmod(0o755)
    cron_file, log_file = etc / "cron.d" / "testbed-nightly", tmp_path / "nightly.log"
    extravars = {"nightly_config_dir": str(etc / "testbed-nightly"), "nightly_cron_file": str(cron_file),
                 "nightly_unit_dir": str(etc / "units"), "nightly_log_file": str(log_file),
                 "nightly_lock_file": str(tmp_path / "lock" / "nightly.lock"), "nightly_testbed_home": str(tmp_path / "h")}
    cron_before = set(sh("pgrep", "-x", "cron", check=False).stdout.split())
    assert not Path(NIGHTLY_CRON).exists()
    try:
        lab_path = _nightly_lab(lab, known_hosts, {"at": "03:40", "testbed": str(fake)})
        first = provision(lab_path, tags=["nightly"], extravars=extravars)
        assert first.failed == 0 and first.changed >= 4, first.summary()  # suites, script, cron entry
        entry = [line for line in cron_file.read_text().splitlines() if not line.startswith("#")]
        run = etc / "testbed-nightly" / "run"
        job = f"/usr/bin/timeout --kill-after=60 21600 {run} >> {log_file} 2>&1"
        assert entry == [f"40 3 * * * root {job}"]  # the host's at overrides the lab-wide 02:15
        assert "#Ansible: testbed nightly" in cron_file.read_text()
        assert sorted(p.name for p in (etc / "testbed-nightly" / "suites").iterdir()) == ["quick.yaml", "second.yaml"]
        assert not (etc / "units").exists()  # no systemd: no units
        assert sh("pgrep", "-x", "cron", check=False).returncode == 0  # cron runs (the role starts it if need be)

        second = provision(lab_path, tags=["nightly"], extravars=extravars)
        assert second.changed == 0, second.summary()

        # the job exactly as cron runs it: every suite in turn, TESTBED_HOME set, output in the log
        sh("sh", "-c", job, timeout=60)
        suites = etc / "testbed-nightly" / "suites"
        assert calls.read_text().splitlines() == [f"{tmp_path / 'h'} nightly {suites}/quick.yaml",
                                                  f"{tmp_path / 'h'} nightly {suites}/second.yaml"]
        assert "suite second.yaml" in log_file.read_text() and "done, exit 0" in log_file.read_text()

        # the lab file turns it off for host A: the entry, the script and the suites go
        off = _nightly_lab(lab, known_hosts, {"suites": []})
        removed = provision(off, tags=["nightly"], extravars=extravars)
        assert removed.changed >= 2, removed.summary()
        assert not cron_file.exists() and not (etc / "testbed-nightly").exists()
        assert provision(off, tags=["nightly"], extravars=extravars).changed == 0
    finally:
        assert not Path(NIGHTLY_CRON).exists()
        # a cron daemon the role started for host A lives in A's namespace: stop it now
        for pid in set(sh("ip", "netns", "pids", lab.a.netns, check=False).stdout.split()):
            if sh("ps", "-o", "comm=", "-p", pid, check=False).stdout.strip() == "cron" and pid not in cron_before:
                os.kill(int(pid), 15)


def test_nightly_without_testbed_on_the_host_is_one_line(lab: Lab, known_hosts: Path, tmp_path: Path):
    lab_path = _nightly_lab(lab, known_hosts, {"testbed": str(tmp_path / "no" / "testbed")})
    with pytest.raises(ProvisionError) as err:
        provision(lab_path, tags=["nightly"], extravars={"nightly_config_dir": str(tmp_path / "cfg"),
                                                          "nightly_cron_file": str(tmp_path / "cron")})
    msg = _one_line(err.value)
    assert msg.startswith("provision failed on a at task 'Testbed is installed where the nightly run calls it': "
                          f"{tmp_path / 'no' / 'testbed'} is not an executable file on a: install testbed"), msg
    assert not (tmp_path / "cron").exists()


# --- bad input: one clear line, non-zero exit -----------------------------------------------
def _cli(*args: str, env_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TESTBED_HOME": str(env_home)}
    return subprocess.run([str(TESTBED), *args], capture_output=True, text=True, timeout=180, env=env, check=False)


def _error_lines(res: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in res.stderr, res.stderr
    return [line for line in res.stderr.splitlines() if line.startswith("testbed: error:")]


def test_unreachable_host(lab: Lab, known_hosts: Path, testbed_home: Path):
    # nothing listens on port 2222 of host A
    lab_path = lab.write_lab("unreach", [lab.host_entry(lab.a, known_hosts, port=2222)])
    with pytest.raises(SshError) as err:
        provision(lab_path, tags=["testbed_probe"])
    msg = _one_line(err.value)
    assert "ssh a (root@10.78.0.1:2222): unreachable" in msg
    if TESTBED.exists():
        res = _cli("provision", "--lab", str(lab_path), "a", "--tags", "testbed_probe", env_home=testbed_home)
        assert res.returncode != 0
        lines = _error_lines(res)
        assert len(lines) == 1 and "ssh a" in lines[0] and "unreachable" in lines[0]


def test_host_missing_from_inventory(lab: Lab, known_hosts: Path, testbed_home: Path):
    lab_path = lab.write_lab("missing", [lab.host_entry(lab.a, known_hosts)])
    with pytest.raises(ConfigError) as err:
        provision(lab_path, hosts=["c"], tags=["testbed_probe"])
    assert "no host named 'c'" in _one_line(err.value) and "known hosts: a" in str(err.value)
    if TESTBED.exists():
        for args in (["provision", "--lab", str(lab_path), "c"], ["doctor", "c", "--lab", str(lab_path)]):
            res = _cli(*args, env_home=testbed_home)
            assert res.returncode == ConfigError.exit_code
            lines = _error_lines(res)
            assert len(lines) == 1 and "no host named 'c'" in lines[0]


def test_lab_file_with_missing_nightly_suite(lab: Lab, known_hosts: Path, testbed_home: Path):
    path = lab.write_lab("nightly-missing", [lab.host_entry(lab.a, known_hosts, nightly={"suites": ["nosuch.yaml"]})])
    with pytest.raises(ConfigError) as err:
        provision(path, tags=["nightly"])
    assert "hosts[0].nightly.suites[0]: nosuch.yaml: no such suite file" in _one_line(err.value)
    if TESTBED.exists():
        res = _cli("provision", "--lab", str(path), "--tags", "nightly", env_home=testbed_home)
        assert res.returncode == ConfigError.exit_code
        lines = _error_lines(res)
        assert len(lines) == 1 and "nosuch.yaml: no such suite file" in lines[0], res.stderr


def test_playbook_task_failure(lab: Lab, known_hosts: Path, tmp_path: Path, testbed_home: Path):
    lab_path = lab.write_lab("fail", [lab.host_entry(lab.a, known_hosts)])
    with pytest.raises(ProvisionError) as err:
        provision(lab_path, tags=["testbed_probe"], extravars={"testbed_probe_marker_dir": str(tmp_path / "m"),
                                                                "testbed_probe_fail": True})
    msg = _one_line(err.value)
    assert msg == ("provision failed on a at task 'Deliberate failure': failing on purpose because "
                   "testbed_probe_fail is set")
    # through the CLI: an SR-IOV count for a NIC that does not exist fails the tuning role
    bad = lab.write_lab("fail-sriov", [lab.host_entry(lab.a, known_hosts, sriov={"nosuchnic0": 2})])
    if TESTBED.exists():
        res = _cli("provision", "--lab", str(bad), "a", "--tags", "tuning", env_home=testbed_home)
        assert res.returncode == 1
        lines = _error_lines(res)
        assert len(lines) == 1
        assert "provision failed on a at task 'SR-IOV VFs per physical function'" in lines[0]
        assert "nosuchnic0 has no SR-IOV capability" in lines[0]


# --- the runner's placement option: server on host A, load generator on host B -------------
def test_runner_places_server_and_client_on_two_lab_hosts(lab: Lab, known_hosts: Path, tmp_path: Path):
    from orchestrator.plan import load_plan
    from orchestrator.results.store import Store
    from orchestrator.runner import Runner

    lab.write_lab("runner-lab", [
        lab.host_entry(lab.a, known_hosts),
        lab.host_entry(lab.b, known_hosts, host_key_fingerprint=fingerprint(lab.b.host_key())),
    ])
    suite_path = lab.tmp / "two-host.yaml"
    suite_path.write_text(f"""\
name: two-host
repetitions: 1
lab: {{subnet: 10.78.0.0/24, lab_file: {lab.tmp / 'runner-lab.yaml'}}}
placement: {{server_host: a, client_host: b}}
platforms: {{native: {{}}}}
workloads: {{redis: {{}}}}
benchmarks:
  setget: {{kind: redis-benchmark, tests: [set, get], requests: [2000], clients: [5], repetitions: 1}}
matrix: [{{platforms: [native], workloads: [redis], benchmarks: [setget]}}]
""")
    store = Store(tmp_path / "results.sqlite")
    runner = Runner(load_plan(suite_path), store=store)
    outcome = runner.run()  # closes the SSH connections it opened
    assert outcome.status == "ok", outcome
    rows = list(store.samples(outcome.run_id))
    rps = [r for r in rows if r.metric == "requests_per_s"]
    assert rps and all(r.value > 0 for r in rps)
    prov = rps[0].provenance
    assert prov["placement"]["server_host"] == "a" and prov["placement"]["client_host"] == "b", prov


def test_collect_merges_both_hosts_stores_once(lab: Lab, known_hosts: Path, tmp_path: Path):
    """`testbed collect` over SSH from the two test hosts (they share this machine's files, so each
    host's "store" is its own file here): both merged, as RUN@HOST; a second collect adds nothing."""
    from orchestrator.results.store import Store

    stores = {}
    for node in (lab.a, lab.b):
        path = tmp_path / f"store-{node.name}.sqlite"
        s = Store(path)
        s.begin_run(f"run{node.name}01", "quickstart", "suites/quickstart.yaml", "h" * 64, "rev",
                    {"server": {"host": node.name}})
        s.add_sample(f"run{node.name}01", platform="native", workload="redis", benchmark="boot", metric="startup_ms",
                     value=12.5, unit="ms", repetition=0, params={}, status="ok", reason=None,
                     provenance={"host": {"host": node.name}, "testbed_rev": "rev", "suite_hash": "h" * 64,
                                 "image_digest": "d"})
        s.end_run(f"run{node.name}01", "ok")
        s.close()
        stores[node.name] = path
    lab_path = lab.write_lab("collect", [
        lab.host_entry(lab.a, known_hosts, nightly={"suites": [], "store": str(stores["a"])}),
        lab.host_entry(lab.b, known_hosts, host_key_fingerprint=fingerprint(lab.b.host_key()),
                       nightly={"suites": [], "store": str(stores["b"])})])
    target = tmp_path / "controller.sqlite"
    res = run_cli_here("collect", "--lab", str(lab_path), "--store", str(target))
    assert res.returncode == 0, res.stderr
    assert "a: merged 1 run(s) (runa01@a)" in res.stdout and "b: merged 1 run(s) (runb01@b)" in res.stdout
    again = run_cli_here("collect", "--lab", str(lab_path), "--store", str(target))
    assert again.returncode == 0 and "merged 0 run(s)" in again.stdout
    assert sorted(r["run_id"] for r in Store(target).runs()) == ["runa01@a", "runb01@b"]
    shown = run_cli_here("results", "runa01@a", "--store", str(target))
    assert shown.returncode == 0 and "startup_ms" in shown.stdout


def run_cli_here(*args: str):
    return subprocess.run([str(TESTBED), *args], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "COLUMNS": "200"}, check=False)
