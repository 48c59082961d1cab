"""Every platform on a lab host, for real: two simulated lab hosts built on this machine.

orchestrator/testing/labsim.py builds them: host A and host B, each a network namespace plus a
mount namespace of its own (private /run, /var/run/libvirt, /etc/libvirt, /var/lib/libvirt and
TESTBED_HOME, so each has its own daemons and state), each with its own sshd, host A also with its
own virtlogd and libvirtd, joined with the controller by veth links on one bridge in 10.114.0.0/24.
runc, gvisor and linux-vm (and osv / rumprun where an image is imported as it-redis, or as
TESTBED_REMOTE_UNIKERNEL_IMAGE says) are placed on host A and redis-benchmark on host B; after each run
nothing of it is left on either host, on the controller, or in this machine's own libvirtd.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import paths
from orchestrator.ledger import collect_garbage, live_resources
from orchestrator.plan import load_plan
from orchestrator.results.store import Store
from orchestrator.runner import Runner
from orchestrator.testing import labsim

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SUBNET = "10.114.0.0/24"
TESTBED = Path(sys.executable).parent / "testbed"
RUN_IDS: set[str] = set()  # every run these tests made


def real_domains() -> list[str]:
    res = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True, text=True,
                         timeout=60, check=False)
    return sorted(res.stdout.split())


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = labsim.requirements(ipaddress.IPv4Network(SUBNET), libvirt=True)
    for tool in ("runc", "runsc", "redis-server", "redis-benchmark", "qemu-system-x86_64"):
        if reason is None and subprocess.run(["which", tool], capture_output=True, check=False).returncode != 0:
            reason = f"{tool} missing"
    if reason:
        pytest.skip(reason)
    sim = labsim.build(tmp_path_factory.mktemp("remote"), SUBNET, private_paths=[paths.home()])
    try:
        yield sim
    finally:
        sim.close()
        # this machine's own libvirtd (which other tests use) never saw a guest of these runs
        assert not [d for d in real_domains() if any(f"tb-{rid}-" in d for rid in RUN_IDS)]


def write_suite(lab: labsim.SimLab, name: str, platforms: str, *, reps: int = 2, extra: str = "") -> Path:
    lab_file = lab.write_lab()
    path = lab.dir / f"{name}.yaml"
    path.write_text(f"""\
name: {name}
repetitions: {reps}
lab: {{subnet: {SUBNET}, lab_file: {lab_file}}}
placement: {{server_host: a, client_host: b}}
platforms:
{platforms}
workloads:
  redis: {{}}
benchmarks:
  cold-start: {{kind: startup, warmup: 0}}
  setget: {{kind: redis-benchmark, tests: [set, get], requests: [2000], clients: [10], warmup: 0, repetitions: 1}}
{extra}""")
    return path


def cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def controller_leftovers(run_id: str) -> list[str]:
    out = [f"{k} {n}" for k, n, _ in live_resources(paths.ledger_dir() / f"{run_id}.jsonl")] \
        if (paths.ledger_dir() / f"{run_id}.jsonl").exists() else []
    out += [f"tunnel {p}" for p in Path("/tmp").glob("tb-virt-*")]
    return out


def run(path: Path, store: Store) -> tuple:
    runner = Runner(load_plan(path), store=store)
    RUN_IDS.add(runner.run_id)
    outcome = runner.run()  # closes the SSH connections it opened
    return outcome, list(store.samples(outcome.run_id))


def unikernel_platforms() -> str:
    """osv and rumprun entries for the images imported as TESTBED_REMOTE_UNIKERNEL_IMAGE (default
    it-redis, what tests/integration/test_unikernel_boot.py imports), where there is one."""
    from orchestrator.images.cache import ImageCache
    from orchestrator.images.imported import ImageMissingError, find_imported

    name = os.environ.get("TESTBED_REMOTE_UNIKERNEL_IMAGE", "it-redis")
    out = ""
    for kind in ("osv", "rumprun"):
        try:
            find_imported(kind, name, ImageCache())
        except ImageMissingError:
            continue
        out += f"  {kind}: {{image: {name}}}\n"
    return out


def test_every_platform_on_host_a_load_from_host_b(lab: labsim.SimLab, tmp_path: Path):
    platforms = "  runc: {}\n  gvisor: {}\n  vm: {kind: linux-vm, memory_mb: 256}\n" + unikernel_platforms()
    path = write_suite(lab, "remote-all", platforms)
    store = Store(tmp_path / "r.sqlite")
    outcome, rows = run(path, store)
    assert outcome.status == "ok", outcome
    names = [line.split(":", 1)[0].strip() for line in platforms.splitlines()]
    for platform in names:
        mine = [r for r in rows if r.platform == platform]
        starts = [r for r in mine if r.metric == "startup_ms" and r.status == "ok"]
        rps = [r for r in mine if r.metric == "requests_per_s" and r.status == "ok"]
        assert len(starts) == 2 and all(r.value > 0 for r in starts), (platform, mine)
        assert {r.params["test"] for r in rps} == {"SET", "GET"}, (platform, mine)
        prov = rps[0].provenance
        # both hosts' facts in every sample, the server's from host A itself
        assert prov["host"]["host"] == "a" and prov["client_host"]["host"] == "b"
        assert prov["placement"]["server_host"] == "a" and prov["placement"]["client_host"] == "b"
        assert ipaddress.IPv4Address(starts[0].provenance.get("address", "10.114.0.10")) in \
            ipaddress.IPv4Network(SUBNET)
    vm = [r for r in rows if r.platform == "vm" and r.status == "ok"]
    assert all(r.provenance["accel"] in ("kvm", "tcg") and r.provenance["accel_reason"] for r in vm)
    assert all(r.provenance["libvirt_uri"] == "a:qemu:///system" for r in vm)
    assert {r.provenance["nic"] for r in rows if r.platform == "runc" and r.status == "ok"} == {"macvlan"}
    assert lab.leftovers() == {"a": [], "b": []}
    assert controller_leftovers(outcome.run_id) == []


# --- a controller killed mid-run, then `testbed gc` -----------------------------------------------
def _ledger_kinds() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in paths.ledger_dir().glob("*.jsonl"):
        out[path.stem] = {k for k, _, _ in live_resources(path)}
    return out


def test_sigkill_mid_run_then_gc_leaves_nothing_on_host_a(lab: labsim.SimLab, tmp_path: Path):
    path = write_suite(lab, "remote-killed", "  runc: {}\n  vm: {kind: linux-vm, memory_mb: 256}\n", reps=3)
    env = {**os.environ, "TESTBED_HOME": str(paths.home())}
    before = set(_ledger_kinds())
    proc = subprocess.Popen([str(TESTBED), "run", str(path), "--store", str(tmp_path / "r.sqlite")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        mine: set[str] = set()
        while time.monotonic() < deadline:  # kill it while a container lives on host A (the probe's done)
            kinds = {k: v for k, v in _ledger_kinds().items() if k not in before}
            RUN_IDS.update(kinds)
            mine = set().union(*kinds.values()) if kinds else set()
            if {"container", "remote-process", "netns"} <= mine:
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.05)
        else:
            pytest.fail("the run never had a container on host A")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    left = lab.leftovers()["a"]
    res = subprocess.run([str(TESTBED), "gc", "--store", str(tmp_path / "r.sqlite")], env=env, capture_output=True,
                         text=True, timeout=180, check=False)
    assert left, "the killed run should have left something on host A"
    assert res.returncode == 0, res.stderr
    assert "reclaimed" in res.stdout, res.stdout
    assert "Traceback" not in res.stderr
    assert lab.leftovers() == {"a": [], "b": []}, res.stdout
    assert set(_ledger_kinds()) <= before  # the killed run's ledger is gone: nothing of it is live anywhere
    assert not list(Path("/tmp").glob("tb-virt-*"))


# --- bad input and faults: failed cells with reasons, the rest go on, one line at the end ---------
def test_host_a_without_runsc_fails_gvisor_cells_only(lab: labsim.SimLab, tmp_path: Path):
    a = lab.hosts["a"]
    hidden = lab.dir / "not-runsc"
    hidden.write_text("")
    hidden.chmod(0o644)  # not executable: `command -v runsc` on host A finds nothing
    runsc = subprocess.run(["which", "runsc"], capture_output=True, text=True, check=True).stdout.strip()
    a.run("mount", "--bind", str(hidden), runsc)
    try:
        path = write_suite(lab, "remote-no-runsc", "  runc: {}\n  gvisor: {}\n", reps=1)
        outcome, rows = run(path, Store(tmp_path / "r.sqlite"))
    finally:
        a.run("umount", runsc)
    assert outcome.status == "failed"
    want = "missing: runsc on a (needed by platform gvisor; Debian package runsc); run `testbed provision a` " \
           "(see `testbed doctor a`)"
    assert sorted(outcome.failed_cells) == [f"gvisor/redis/cold-start: {want}", f"gvisor/redis/setget: {want}"]
    assert "\n" not in (outcome.reason or "")
    assert {(r.metric, r.status, r.reason) for r in rows if r.platform == "runc" and r.status != "ok"} == set()
    assert [r.reason for r in rows if r.platform == "gvisor"] == [want, want]
    assert lab.leftovers() == {"a": [], "b": []}
    assert controller_leftovers(outcome.run_id) == []


def test_image_copy_that_fails_its_checksum(lab: labsim.SimLab, tmp_path: Path, monkeypatch):
    """The copy of runc's rootfs arrives with one byte changed: runc's cells fail with the file and
    both digests, the bad copy is removed from host A's cache, the VM's cells still run."""
    from orchestrator.hosts import transfer

    a = lab.hosts["a"]
    a_cache = a.private[str(lab.lab_home)] / "cache" / "images"
    for entry in a_cache.glob("rootfs-redis-*"):
        subprocess.run(["rm", "-rf", "--", str(entry)], check=True)
    transfer.forget_checks()
    real_send = transfer.send_tree

    def corrupting(host, local, remote_dir, *, timeout):
        real_send(host, local, remote_dir, timeout=timeout)
        if "rootfs-redis" in remote_dir:  # flip a byte of redis-server in the copy on host A
            host.run(["sh", "-c", 'printf X | dd of="$1/rootfs/usr/bin/redis-server" bs=1 seek=100 conv=notrunc '
                      "status=none", "sh", remote_dir], timeout=30)

    monkeypatch.setattr(transfer, "send_tree", corrupting)
    path = write_suite(lab, "remote-bad-copy", "  runc: {}\n  vm: {kind: linux-vm, memory_mb: 256}\n", reps=1)
    outcome, rows = run(path, Store(tmp_path / "r.sqlite"))
    assert outcome.status == "failed"
    runc = [r for r in rows if r.platform == "runc"]
    assert runc and all(r.status == "failed" for r in runc)
    reason = runc[0].reason
    assert "the copy on a failed its sha256 check: rootfs/usr/bin/redis-" in reason and "has sha256" in reason, reason
    assert "the copy was removed" in reason and "\n" not in reason
    assert {r.status for r in rows if r.platform == "vm" and r.metric != "cell"} == {"ok"}
    assert not list(a_cache.glob(".*tbpart-*")) and not list(a_cache.glob("rootfs-redis-*"))
    assert lab.leftovers() == {"a": [], "b": []}
    assert controller_leftovers(outcome.run_id) == []


def test_host_a_sshd_killed_mid_run(lab: labsim.SimLab, tmp_path: Path):
    """sshd on host A (and every session it serves) dies during runc's load cell: that cell and the
    ones after it fail with the SSH reason, the run ends with one line, nothing is left on the
    controller; once sshd is back, gc removes what the run had to leave on host A."""
    import threading

    path = write_suite(lab, "remote-sshd-dies", "  runc: {}\n  gvisor: {}\n", reps=1,
                       extra="matrix: [{platforms: [runc, gvisor], workloads: [redis], benchmarks: [setget]}]\n")
    path.write_text(path.read_text().replace("requests: [2000]", "requests: [200000]"))
    store = Store(tmp_path / "r.sqlite")
    seen: dict = {}

    def kill_when_loaded() -> None:  # runc's container is up and redis-benchmark is loading it
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(b"200000" in cmdline(p.split(":")[0]) for p in lab.hosts["b"].processes()):
                lab.hosts["a"].kill_sshd()
                seen["killed"] = True
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_loaded, daemon=True)
    before = set(_ledger_kinds())
    killer.start()
    try:
        result = run(path, store)  # in the main thread: the runner installs its signal handler
        killer.join(130)
    finally:
        if lab.hosts["a"].sshd is None:
            lab.hosts["a"].start_sshd()
    assert seen.get("killed"), "redis-benchmark never ran on host B"
    outcome, rows = result
    assert outcome.status == "failed"
    assert outcome.reason and "\n" not in outcome.reason
    assert any(c.startswith("gvisor/redis/setget: ") and "ssh a" in c for c in outcome.failed_cells), outcome
    assert [r for r in rows if r.status == "failed"]
    assert not list(Path("/tmp").glob("tb-virt-*"))
    print(outcome.reason)
    # what the run could not remove stays in its ledger; gc removes it now that host A answers
    kinds = {k: v for k, v in _ledger_kinds().items() if k not in before}
    if kinds:
        from orchestrator.hosts.ssh import forget_unreachable

        forget_unreachable()  # this process saw host A refuse a moment ago; `testbed gc` is a new process
        done = collect_garbage(include_live_runs=True)
        assert not [d for d in done if "could not" in d], done
    assert lab.leftovers() == {"a": [], "b": []}


def test_doctor_on_host_a_reaches_its_own_libvirtd(lab: labsim.SimLab):
    from orchestrator.config.lab import load_lab
    from orchestrator.hosts.ssh import SshHost
    from orchestrator.provision.doctor import run_checks

    with SshHost.from_lab(load_lab(lab.write_lab()).host("a")) as host_a:
        checks = {c.name: c for c in run_checks(host_a)}
    assert checks["libvirtd"].status == "pass", checks["libvirtd"]
    assert checks["libvirtd"].detail.startswith("a:qemu:///system reachable over SSH")
    assert checks["accelerator"].status in ("pass", "warn") and "probe" in checks["accelerator"].detail.lower()
    assert checks["tool runsc"].status == "pass" and checks["tool virt-ssh-helper"].status == "pass"
    assert lab.leftovers() == {"a": [], "b": []}
