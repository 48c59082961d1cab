"""The paper suites' tools without root: ab's parser on captured output, memaslap's execute count and
thread sweep, netperf's stored mean/p50/stddev, python-http's image recipe, the host tmpfs mount in an
OCI bundle, raw output references, the run estimate."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.bench import ab, memcached_load
from orchestrator.bench.base import ClientSide
from orchestrator.hosts.base import CommandResult
from orchestrator.images.oci import HOST_TMPFS_DESTINATION, host_tmpfs_mount, oci_config
from orchestrator.plan import load_plan
from orchestrator.workloads import python_http

FIX = Path(__file__).resolve().parent.parent / "fixtures"


def fixture(tool: str, name: str) -> str:
    return (FIX / tool / name).read_text()


def by_metric(ms):
    return {m.metric: m for m in ms}


# --- ab --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in (FIX / "ab").glob("*.txt") if "non2xx" not in p.name))
def test_ab_fixtures_parse(name):
    text = fixture("ab", name)
    size = {"4k": 4096, "64k": 65536, "1m": 1 << 20, "128k": 128 << 10}[name.split("-")[0]]
    n = int(name.split("-")[1][1:])
    parsed = ab.parse_ab(text)
    out = by_metric(ab.measurements(parsed, {"requests": n}, size))
    assert all(m.status == "ok" for m in out.values()), out
    assert out["requests_per_s"].value > 0 and out["transfer_mib_per_s"].value > 0
    assert out["latency_p50_ms"].value <= out["latency_p90_ms"].value <= out["latency_p99_ms"].value \
        <= out["latency_max_ms"].value
    # transfer rate is ab's KiB/s over 1024: requests/s x (file + ~250 bytes of headers)
    assert abs(out["transfer_mib_per_s"].value / (out["requests_per_s"].value * (size + 250) / (1 << 20)) - 1) < 0.02


def test_ab_percentiles_keep_their_decimals_and_refuse_abs_out_of_range_read():
    parsed = ab.parse_ab(fixture("ab", "4k-n100-c1-native.txt"))
    assert parsed["latency_p50_ms"] != int(parsed["latency_p50_ms"])  # -e's table, not the whole-ms one
    assert ab.percentile_in_range(100, 99) and not ab.percentile_in_range(50, 99)
    small = ab.parse_ab(fixture("ab", "non2xx-n50-c1-loopback.txt"))
    assert "latency_p99_ms" not in small and "latency_p90_ms" in small  # ab 2.3 prints memory for p99 of 50


def test_ab_failures_are_failed_samples_with_counts():
    (m,) = ab.measurements(ab.parse_ab(fixture("ab", "non2xx-n50-c1-loopback.txt")), {"requests": 50}, 335)
    assert m.status == "failed" and m.reason == "0 failed and 50 non-2xx of 50 responses"
    ok = ab.parse_ab(fixture("ab", "4k-n100-c1-native.txt"))
    (short,) = ab.measurements(ok, {"requests": 200}, 4096)
    assert short.reason == "ab completed 100 of 200 requests"
    (size,) = ab.measurements(ok, {"requests": 100}, 1000)
    assert "the server sent 4096 bytes, not the file's 1000" in size.reason
    text = fixture("ab", "4k-n100-c1-native.txt")
    with pytest.raises(ValueError, match="Requests per second"):
        ab.parse_ab(text.split("Requests per second")[0])
    with pytest.raises(ValueError, match="cut short"):
        ab.parse_ab("\n".join(line for line in text.splitlines() if not line.startswith("99,")))


def test_ab_command_line_fresh_connections_or_keepalive():
    opts = ab.AbOptions(files=["4k", "1m"], requests=[1000], concurrency=[1, 8])
    bench = ab.Ab("dl", opts)
    assert [p["file"] for p in bench.points()] == ["4k.bin", "4k.bin", "1m.bin", "1m.bin"]
    assert bench.workload_needs() == {"files": ["4k", "1m"]}
    from orchestrator.bench.base import Target

    argv = bench.argv({"file": "1m.bin", "requests": 1000, "concurrency": 8}, Target("10.0.0.2", 80, "nginx"))
    assert argv[:7] == ["ab", "-q", "-r", "-n", "1000", "-c", "8"] and "-k" not in argv
    assert argv[-1] == "http://10.0.0.2:80/1m.bin" and "/dev/stdout" in argv
    keep = ab.Ab("dl", ab.AbOptions(keepalive=True)).argv({"file": "4k.bin", "requests": 10, "concurrency": 1},
                                                           Target("a", 80, "nginx"))
    assert "-k" in keep
    with pytest.raises(ValueError, match="cannot run 50 requests at a time with only 10"):
        ab.AbOptions(requests=[10], concurrency=[50])


# --- memaslap ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["execute-x20000-t2-c20-loopback.txt", "execute-x20000-t2-c20-linux-vm-tcg.txt"])
def test_memaslap_execute_count_output(name):
    parsed = memcached_load.parse_memaslap(fixture("memcaslap", name))
    assert parsed["ops"] == 20000 and "latency_total" in parsed and "global_total" not in parsed
    out = by_metric(memcached_load.measurements(parsed, {"operations": 20000}))
    assert out["ops_per_s"].value == parsed["tps"] and out["latency_avg_us"].value > 0
    (short,) = memcached_load.measurements(parsed, {"operations": 30000})
    assert short.reason == "memaslap completed 20000 of the 30000 operations asked for"


def test_memaslap_thread_sweep_with_clients_per_thread_and_execute_count():
    opts = memcached_load.MemcachedLoadOptions(threads=[1, 2, 4], clients_per_thread=10, operations=20000)
    bench = memcached_load.MemcachedLoad("mc", opts)
    assert [(p["threads"], p["concurrency"]) for p in bench.points()] == [(1, 10), (2, 20), (4, 40)]
    assert bench.bound_by_count() and bench.expected_seconds(bench.points()[0]) == 1.0
    assert memcached_load.MemcachedLoadOptions(threads=2).threads == [2]  # a number is a one-point sweep
    with pytest.raises(ValueError, match="not both"):
        memcached_load.MemcachedLoadOptions(duration=5, operations=100)
    with pytest.raises(ValueError, match=r"concurrency \(a sweep\) or clients_per_thread"):
        memcached_load.MemcachedLoadOptions(concurrency=[8], clients_per_thread=10)
    with pytest.raises(ValueError, match="concurrency >= threads"):
        memcached_load.MemcachedLoadOptions(threads=[1, 16], concurrency=[8])


class FakeClient(ClientSide):
    def run(self, argv, *, timeout):
        self.argv = list(argv)
        return CommandResult(list(argv), 0, fixture("memcaslap", "execute-x20000-t2-c20-loopback.txt"), "", 0.5)


def test_memaslap_argv_and_raw_output_reference(tmp_path):
    from orchestrator.bench.base import Target
    from orchestrator.testing.fakes import FakeHost

    bench = memcached_load.MemcachedLoad("mc", memcached_load.MemcachedLoadOptions(
        threads=[2], clients_per_thread=10, operations=20000))
    client = FakeClient(FakeHost(), None, [1, 2], tmp_path)
    out = bench.run(bench.points()[0], Target("10.0.0.3", 11211, "memcached"), client)
    assert client.argv[client.argv.index("-x") + 1] == "20000" and "-t" not in client.argv
    assert client.argv[client.argv.index("-c") + 1] == "20" and client.argv[client.argv.index("-T") + 1] == "2"
    assert all(m.status == "ok" and m.raw and Path(m.raw).is_file() for m in out)
    assert out[0].params["threads_used"] == 2 and out[0].params["operations"] == 20000


# --- python-http ---------------------------------------------------------------------------------
def test_python_http_image_holds_the_interpreter_its_modules_and_their_bytecode():
    w = python_http.PythonHttp()
    r = w.image_recipe()
    assert r.binaries == (python_http.PYTHON,)
    assert f"{python_http.STDLIB}/socket.py" in r.files and f"{python_http.STDLIB}/os.py" in r.files
    pycs = [f for f in r.files if f.endswith(".pyc")]
    assert len(pycs) == len([f for f in r.files if f.endswith(".py")]) and all(Path(p).is_file() for p in pycs)
    argv = w.argv("/etc/testbed")
    assert argv[:4] == [python_http.PYTHON, "-S", "-I", "-B"] and argv[-2:] == ["/etc/testbed/http_server.py", "8080"]
    prefix = argv[argv.index("-X") + 1].removeprefix("pycache_prefix=")
    assert all(p.startswith(prefix + python_http.STDLIB) for p in pycs)  # the tree every launch reads


def test_python_http_program_answers_and_the_probe_checks_the_body(tmp_path):
    import socket
    import subprocess
    import time

    w = python_http.PythonHttp()
    w.write_config(tmp_path, config_path=str(tmp_path))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    argv = w.argv(str(tmp_path))
    argv[-1] = str(port)
    proc = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert w.probe(lambda: socket.create_connection(("127.0.0.1", port), 2)) is True
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(5)


# --- host tmpfs in an OCI bundle ---------------------------------------------------------------------
def test_extra_mounts_come_after_testbeds_own(tmp_path):
    base = {"rootfs": "/r", "args": ["x"], "hostname": "h", "netns_path": "/run/netns/n", "config_dir": tmp_path}
    plain = oci_config(**base)
    spec = oci_config(**base, mounts=[host_tmpfs_mount("/dev/shm/testbed-run-runc")])
    assert len(spec["mounts"]) == len(plain["mounts"]) + 1
    assert spec["mounts"][-1] == {"destination": HOST_TMPFS_DESTINATION, "type": "bind",
                                  "source": "/dev/shm/testbed-run-runc", "options": ["rbind", "rw", "nosuid", "nodev"]}


def test_host_tmpfs_reclaimer_only_removes_its_own_directories(tmp_path):
    from orchestrator.errors import TestbedError
    from orchestrator.platforms.host_tmpfs import HostTmpfsReclaimer

    with pytest.raises(TestbedError, match="not a testbed host tmpfs directory"):
        HostTmpfsReclaimer().reclaim("/etc", {})
    with pytest.raises(TestbedError):
        HostTmpfsReclaimer().reclaim("/dev/shm/other", {})


def test_host_tmpfs_directory_is_removed_on_the_host_it_was_made_on():
    from orchestrator.errors import TestbedError
    from orchestrator.platforms.host_tmpfs import remove_host_tmpfs_dir

    class LabHost:  # records commands; `test -L` answers as the host's file system would
        def __init__(self, symlink: bool):
            self.symlink, self.calls = symlink, []

        def run(self, argv, *, timeout, check=True, **kw):
            self.calls.append(list(argv))
            rc = 0 if argv[:2] != ["test", "-L"] or self.symlink else 1
            return CommandResult(list(argv), rc, "", "", 0.0)

    host = LabHost(symlink=False)
    remove_host_tmpfs_dir(host, "/dev/shm/testbed-abc123-runc")
    assert host.calls[-1] == ["rm", "-rf", "--one-file-system", "/dev/shm/testbed-abc123-runc"]
    link = LabHost(symlink=True)
    with pytest.raises(TestbedError, match="not a testbed host tmpfs directory"):
        remove_host_tmpfs_dir(link, "/dev/shm/testbed-abc123-runc")
    assert not any(c[0] == "rm" for c in link.calls)


# --- run --check's estimate ------------------------------------------------------------------------
def test_estimate_counts_launches_runs_and_guest_slowdown(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("""name: e
repetitions: 4
lab: {subnet: 10.106.0.0/24}
platforms: {native: {}, vm: {kind: linux-vm}}
workloads: {nginx: {}}
benchmarks:
  boot: {kind: startup}
  dl: {kind: ab, files: [4k], requests: [3000], concurrency: [1], warmup: 1}
""")
    plan = load_plan(p)
    kvm, tcg = plan.estimate_seconds("kvm"), plan.estimate_seconds("tcg")
    assert plan.has_guests() and tcg > kvm
    native_only = plan.estimate_seconds("kvm", [c for c in plan.cells if c.platform == "native"])
    # native: 4 cold starts + 1 launch + 5 ab runs of ~1 s each
    assert 4 * 0.2 + 0.2 + 5 * 1.0 < native_only < 4 * 0.2 + 0.2 + 5 * 1.5
    assert sum(plan.kept_runs(c) for c in plan.cells) == 16
