"""osv and rumprun without booting: image import, command lines, JSON config, domain XML, consoles.

Domain XML is checked against libvirt's own schema with virt-xml-validate; disks are real qcow2
files made with qemu-img (milliseconds), and OSv's disk-boot command line is read back from the
per-launch overlay to show it sits where OSv's boot loader reads it.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import multiboot_elf, osv_usr_img, run_cli

from orchestrator import paths
from orchestrator.plan import load_plan
from orchestrator.errors import ConfigError
from orchestrator.hosts.local import LocalHost
from orchestrator.images.cache import ImageCache
from orchestrator.images.imported import (
    BlkSource,
    ImageMissingError,
    find_imported,
    import_image,
)
from orchestrator.ledger import Ledger
from orchestrator.net.labnet import Attachment
from orchestrator.platforms.base import Platform
from orchestrator.platforms.osv import (
    CMDLINE_OFFSET,
    Osv,
    OsvOptions,
    osv_cmdline,
    osv_quote,
)
from orchestrator.platforms.osv import default_cmdline as osv_default
from orchestrator.platforms.rumprun import (
    Rumprun,
    RumprunOptions,
    json_object,
    rumprun_config,
)
from orchestrator.platforms.rumprun import default_cmdline as rump_default
from orchestrator.platforms.unikernel_common import UnikernelImagesCheck, UnikernelOptions
from orchestrator.virt.domain import BridgeNic, DomainSpec
from orchestrator.virt.unikernel_console import OsvConsole, RumprunConsole
from orchestrator.virt.unikernel_domain import Disk, UnikernelSpec, unikernel_xml
from orchestrator.workloads.memcached import Memcached
from orchestrator.workloads.nginx import Nginx
from orchestrator.workloads.redis import Redis

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "unikernels"
ATT = Attachment(ipaddress.IPv4Address("10.78.0.5"), ipaddress.IPv4Network("10.78.0.0/24"),
                 ipaddress.IPv4Address("10.78.0.1"), "52:54:00:12:34:56", nic="virtio", bridge="tbabch")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def validate(xml: str, tmp_path: Path) -> None:
    f = tmp_path / "domain.xml"
    f.write_text(xml)
    res = subprocess.run(["virt-xml-validate", str(f), "domain"], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def qcow2(path: Path, size: str = "1M") -> Path:
    return osv_usr_img(path, size)  # import checks a usr.img's boot sector


def fake_elf(path: Path) -> Path:
    return multiboot_elf(path)  # import checks a rumprun image's multiboot header


@pytest.fixture
def cache(tmp_path) -> ImageCache:
    return ImageCache(tmp_path / "cache")


@pytest.fixture
def osv_dir(tmp_path) -> Path:
    d = tmp_path / "osv-build"
    d.mkdir()
    fake_elf(d / "loader-stripped.elf")
    qcow2(d / "usr.img")
    return d


def base_spec(tmp_path: Path, name: str = "tb-abc123-osv-redis-5") -> DomainSpec:
    return DomainSpec(name=name, kernel="", initrd="", cmdline="", console_log=str(tmp_path / "console.log"),
                      nics=[BridgeNic("tbabch", "52:54:00:12:34:56", tap="tbabc123t5")],
                      metadata={"run": "abc123", "workload": "redis", "platform": "osv"})


def platform(cls, tmp_path: Path, **options):
    return cls(cls.kind, cls.Options(**options), LocalHost(), Ledger("unit", tmp_path / "ledger"),
               paths.runs_dir() / f"unit-{tmp_path.name}")


# --- image import -----------------------------------------------------------------------------
def test_osv_import_copies_in_and_is_content_addressed(osv_dir, cache):
    a = import_image("osv", [osv_dir], name="redis", cache=cache)
    assert not a.cache_hit and a.kind == "osv" and len(a.digest) == 64
    assert a.file("kernel").read_bytes() == (osv_dir / "loader-stripped.elf").read_bytes()
    assert a.file("disk").stat().st_size == (osv_dir / "usr.img").stat().st_size
    assert not a.file("disk").samefile(osv_dir / "usr.img")  # a copy, not a reference
    # the same bytes again, given as two files: the same entry and digest
    b = import_image("osv", [osv_dir / "usr.img", osv_dir / "loader-stripped.elf"], name="redis", cache=cache)
    assert b.cache_hit and b.digest == a.digest and b.path == a.path
    found = find_imported("osv", "redis", cache)
    assert found.digest == a.digest and found.meta["formats"] == {"disk": "qcow2"}


def test_osv_import_of_another_build_under_the_same_name_wins(osv_dir, cache):
    first = import_image("osv", [osv_dir], name="redis", cache=cache)
    qcow2(osv_dir / "usr.img", "2M")
    second = import_image("osv", [osv_dir], name="redis", cache=cache)
    assert second.digest != first.digest
    assert find_imported("osv", "redis", cache).digest == second.digest


def test_osv_import_reports_what_is_missing(tmp_path, cache):
    d = tmp_path / "half"
    d.mkdir()
    fake_elf(d / "loader-stripped.elf")
    with pytest.raises(ConfigError, match="no usr.img"):
        import_image("osv", [d], cache=cache)
    (d / "usr.img").write_bytes(b"x" * 1024)
    (d / "loader-stripped.elf").write_bytes(b"not an elf")
    with pytest.raises(ConfigError, match="not an ELF"):
        import_image("osv", [d], cache=cache)


def test_osv_import_finds_osv_build_tree(tmp_path, cache):
    last = tmp_path / "osv" / "build" / "last"
    last.mkdir(parents=True)
    fake_elf(last / "loader-stripped.elf")
    qcow2(last / "usr.img")
    assert import_image("osv", [tmp_path / "osv"], name="x", cache=cache).name == "x"


def test_rumprun_import_with_data_disk(tmp_path, cache):
    app = fake_elf(tmp_path / "nginx.bin")
    iso = tmp_path / "data.iso"
    iso.write_bytes(bytes(64 * 1024))
    img = import_image("rumprun", [app], blk=[BlkSource.parse(f"{iso}:/data")], cache=cache)
    assert img.name == "nginx" and set(img.files) == {"kernel", "blk0", "meta"}
    assert find_imported("rumprun", "nginx", cache).meta["mountpoints"] == {"blk0": "/data"}
    with pytest.raises(ConfigError, match="IMAGE:MOUNTPOINT"):
        BlkSource.parse("data.iso")
    with pytest.raises(ConfigError, match="not an ELF"):
        import_image("rumprun", [iso], cache=cache)


def test_missing_image_is_one_line_naming_the_import_command(tmp_path, cache, osv_dir):
    with pytest.raises(ImageMissingError) as exc:
        platform(Osv, tmp_path).image(Redis(), cache)
    msg = str(exc.value)
    assert "\n" not in msg and "testbed images import osv PATH --name redis" in msg and "images/osv/README.md" in msg
    import_image("osv", [osv_dir], name="other", cache=cache)
    with pytest.raises(ImageMissingError, match="imported osv images: other"):
        platform(Osv, tmp_path).image(Redis(), cache)
    assert platform(Osv, tmp_path, image="other").image(Redis(), cache).name == "other"
    with pytest.raises(ImageMissingError, match="testbed images import rumprun PATH --name redis"):
        platform(Rumprun, tmp_path).image(Redis(), cache)


def test_doctor_reports_unikernels_without_images_as_not_runnable(tmp_path, monkeypatch, osv_dir):
    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path / "doctor-cache"))
    checks = {c.name: c for c in UnikernelImagesCheck().run(LocalHost())}
    assert checks["osv images"].status == "warn" and "not runnable" in checks["osv images"].detail
    assert "testbed images import osv" in checks["osv images"].fix
    assert checks["rumprun images"].status == "warn"
    import_image("osv", [osv_dir], name="redis")
    checks = {c.name: c for c in UnikernelImagesCheck().run(LocalHost())}
    assert checks["osv images"].status == "pass" and "redis" in checks["osv images"].detail


def test_cli_imports(osv_dir, tmp_path):
    res = run_cli("images", "import", "osv", str(osv_dir), "--name", "cli-redis",
                  env={"TESTBED_CACHE": str(tmp_path / "cli-cache"), "TESTBED_HOME": str(tmp_path / "home")})
    assert res.returncode == 0, res.stderr
    assert "imported osv image cli-redis sha256:" in " ".join(res.stdout.split())
    res = run_cli("images", "import", "rumprun", str(osv_dir / "usr.img"),
                  env={"TESTBED_CACHE": str(tmp_path / "cli-cache"), "TESTBED_HOME": str(tmp_path / "home")})
    assert res.returncode == 2 and res.stderr.startswith("testbed: error: rumprun import:")


# --- command lines ------------------------------------------------------------------------------
def test_osv_cmdline_has_static_address_then_app():
    line = osv_cmdline("/usr/bin/redis-server --port 6379", ATT.address, ATT.netmask, ATT.gateway, ["--verbose"])
    assert line == ("--ip=eth0,10.78.0.5,255.255.255.0 --defaultgw=10.78.0.1 --verbose "
                    "/usr/bin/redis-server --port 6379")
    with pytest.raises(ValueError):
        osv_cmdline("/app", "10.78.0.300", ATT.netmask, ATT.gateway)
    with pytest.raises(ConfigError, match="empty"):
        osv_cmdline("  ", ATT.address, ATT.netmask, ATT.gateway)
    with pytest.raises(ConfigError, match="one line"):
        osv_cmdline("/app\n--evil", ATT.address, ATT.netmask, ATT.gateway)


def test_osv_options_are_validated():
    with pytest.raises(ValueError, match="set by testbed"):
        OsvOptions(osv_options=["--ip=eth0,1.2.3.4,255.0.0.0"])
    with pytest.raises(ValueError, match="one word"):
        OsvOptions(osv_options=["--env=A B"])
    with pytest.raises(ValueError, match="sriov_pf"):
        OsvOptions(nic="sriov")
    with pytest.raises(ValueError):
        OsvOptions(boot="pxe")
    with pytest.raises(ValueError):
        UnikernelOptions(cmdline="  ")


def test_default_app_cmdlines_follow_the_workload_options():
    r = osv_default(Redis(options=Redis.Options(maxmemory_mb=64, extra_args=["--hz", "a b"])))
    assert r.startswith("/lib64/ld-linux-x86-64.so.2 /redis-server --bind 0.0.0.0 --port 6379 --protected-mode no "
                        "--save \"\"")
    assert "--maxmemory 64mb" in r and r.endswith('--hz "a b"')
    assert osv_default(Memcached()).startswith("/lib64/ld-linux-x86-64.so.2 --preload /osv-setid.so /memcached "
                                               "-u root -l 0.0.0.0 -p 11211")
    assert osv_default(Nginx()) == ("/lib64/ld-linux-x86-64.so.2 /nginx -p /nginx-conf/ -c /nginx-conf/nginx.conf "
                                    "-e stderr")
    assert rump_default(Redis()).split()[0] == "redis-server" and "--port 6379" in rump_default(Redis())
    assert rump_default(Nginx()) == "nginx -c /data/conf/nginx.conf"
    # both found by booting real images built from Debian's sources (images/rumprun/README.md)
    assert "--protected-mode no" in rump_default(Redis())
    assert rump_default(Memcached()).endswith("-o no_lru_maintainer")
    with pytest.raises(ConfigError, match="spaces"):
        rump_default(Redis(options=Redis.Options(extra_args=["a b"])))
    assert osv_quote('say "hi"') == '"say \\"hi\\""' and osv_quote("") == '""' and osv_quote("x") == "x"


def test_cmdline_option_overrides_the_default(tmp_path):
    p = platform(Osv, tmp_path, cmdline="/redis-server   /etc/redis.conf")
    assert p.app_cmdline(Redis()) == "/redis-server /etc/redis.conf"


def test_rumprun_config_is_rumprun_json_with_repeated_keys():
    text = rumprun_config("nginx -c /data/conf/nginx.conf", ATT.address, ATT.prefixlen, ATT.gateway,
                          blks=[("/dev/ld0a", "blk", "/data"), ("/dev/ld1a", "cd9660", "/etc")],
                          env={"HOME": "/", "TZ": "UTC"})
    pairs = json.loads(text, object_pairs_hook=lambda p: p)
    assert [k for k, _ in pairs] == ["cmdline", "net", "blk", "blk", "env", "env"]
    d = {k: v for k, v in pairs if k in ("cmdline", "net")}
    assert d["cmdline"] == "nginx -c /data/conf/nginx.conf"
    assert dict(d["net"]) == {"if": "vioif0", "type": "inet", "method": "static", "addr": "10.78.0.5",
                              "mask": "24", "gw": "10.78.0.1"}
    assert [dict(v)["mountpoint"] for k, v in pairs if k == "blk"] == ["/data", "/etc"]
    assert [v for k, v in pairs if k == "env"] == ["HOME=/", "TZ=UTC"]
    # values are JSON-encoded, not pasted: a quote in an argument cannot end the string
    assert json.loads(json_object([("cmdline", 'echo "}')]))["cmdline"] == 'echo "}'
    with pytest.raises(ConfigError):
        rumprun_config("   ", ATT.address, 24)
    with pytest.raises(ValueError):
        RumprunOptions(env={"A": "b c"})


# --- domain XML -------------------------------------------------------------------------------
@pytest.mark.parametrize("boot", ["kernel", "disk"])
def test_osv_domain_validates_and_boots_as_asked(tmp_path, osv_dir, cache, boot):
    image = import_image("osv", [osv_dir], name="redis", cache=cache)
    p = platform(Osv, tmp_path, boot=boot)
    workdir = tmp_path / "launch"
    workdir.mkdir()
    spec, _, prov = p.boot_spec(image, Redis(), ATT, base_spec(tmp_path), workdir)
    xml = unikernel_xml(spec)
    validate(xml, tmp_path)
    dom = ET.fromstring(xml)
    os_el = dom.find("os")
    assert os_el.find("initrd") is None
    disk = dom.find("devices/disk")
    assert disk.find("target").get("bus") == "virtio" and disk.find("driver").get("type") == "qcow2"
    overlay = Path(disk.find("source").get("file"))
    assert overlay.parent == workdir and overlay != image.file("disk")  # the cache entry is never written
    assert dom.find("devices/video/model").get("type") == "none"
    assert dom.find("devices/serial").get("type") == "file"
    assert dom.find("devices/interface/source").get("bridge") == "tbabch"
    line = prov["osv_cmdline"]
    assert line.startswith("--ip=eth0,10.78.0.5,255.255.255.0 --defaultgw=10.78.0.1 /lib64/ld-linux-x86-64.so.2 "
                           "/redis-server")
    if boot == "kernel":
        assert os_el.find("kernel").text == str(image.file("kernel")) and os_el.find("cmdline").text == line
        assert os_el.find("boot") is None
    else:
        assert os_el.find("kernel") is None and os_el.find("cmdline") is None
        assert os_el.find("boot").get("dev") == "hd"
        raw = tmp_path / "disk.raw"
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(overlay), str(raw)], check=True, timeout=60)
        data = raw.read_bytes()
        assert data[CMDLINE_OFFSET:CMDLINE_OFFSET + len(line) + 1] == line.encode() + b"\0"
        # the imported disk is untouched
        assert find_imported("osv", "redis", cache).digest == image.digest
        base = tmp_path / "base.raw"
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(image.file("disk")), str(base)], check=True,
                       timeout=60)
        assert base.read_bytes()[CMDLINE_OFFSET:CMDLINE_OFFSET + 16] == bytes(16)


def test_rumprun_domain_validates(tmp_path, cache):
    app = fake_elf(tmp_path / "redis-server.bin")
    iso = tmp_path / "data.iso"
    iso.write_bytes(bytes(64 * 1024))
    image = import_image("rumprun", [app], name="redis", blk=[BlkSource.parse(f"{iso}:/data")], cache=cache)
    p = platform(Rumprun, tmp_path, env={"TZ": "UTC"})
    workdir = tmp_path / "launch"
    workdir.mkdir()
    spec, parser, prov = p.boot_spec(image, Redis(), ATT, base_spec(tmp_path, "tb-abc123-rumprun-redis-5"), workdir)
    xml = unikernel_xml(spec)
    validate(xml, tmp_path)
    dom = ET.fromstring(xml)
    assert dom.find("os/kernel").text == str(image.file("kernel")) and dom.find("os/initrd") is None
    config = json.loads(dom.find("os/cmdline").text, object_pairs_hook=dict)
    assert config["cmdline"].startswith("redis-server ") and config["net"]["addr"] == "10.78.0.5"
    assert config["blk"] == {"source": "dev", "path": "/dev/ld0a", "fstype": "blk", "mountpoint": "/data"}
    assert dom.find("devices/disk/target").get("dev") == "vda"
    assert dom.find("devices/video/model").get("type") == "none"
    assert isinstance(parser, RumprunConsole) and prov["rumprun_config"] == dom.find("os/cmdline").text


def test_unikernel_domain_with_kvm_pins_and_two_disks_validates(tmp_path):
    base = base_spec(tmp_path)
    base.kernel, base.cmdline, base.domain_type = "/k.elf", "x", "kvm"
    base.vcpus, base.vcpu_pins, base.emulator_pins = 2, [1], [0]
    spec = UnikernelSpec(base, disks=[Disk("/a.qcow2"), Disk("/b.img", "raw", readonly=True, serial="data")])
    xml = unikernel_xml(spec)
    validate(xml, tmp_path)
    assert [t.get("dev") for t in ET.fromstring(xml).iter("target") if t.get("bus")] == ["vda", "vdb"]
    with pytest.raises(ValueError):
        UnikernelSpec(base_spec(tmp_path), boot="disk")
    with pytest.raises(ValueError):
        UnikernelSpec(base_spec(tmp_path), boot="kernel")
    with pytest.raises(ValueError):
        Disk("/x", "vmdk")


# --- consoles -----------------------------------------------------------------------------------
def test_osv_console_under_tcg():
    c = OsvConsole()
    obs = c.feed_text(fixture("osv-redis-tcg.console"))
    labels = [o.label for o in obs]
    assert labels[:4] == ["banner", "net_configured", "booted", "cmdline"] and labels[4] == "app_output"
    phases = {p: o.label for o in obs for p in o.phases}
    assert phases["kernel_up"] == "booted" and phases["init_started"] == "app_output"
    assert c.guest == {"boot": None}  # 0.00 ms under TCG: no figure
    assert c.facts["osv_version"] == "v0.57.0-91-g98c90f03" and c.facts["guest_address"] == "10.77.0.5"
    assert c.facts["osv_console_cmdline"].startswith("/usr/bin/redis-server") and not c.finished


def test_real_osv_console_of_debian_redis_under_tcg():
    c = OsvConsole()
    obs = c.feed_text(fixture("osv-real-redis-tcg.console"))
    labels = [o.label for o in obs]
    # OSv's "syscall(): unimplemented system call 334" (glibc's rseq, before main) comes first: the
    # program is running, but the line is OSv's, so the app's own first line is labelled apart.
    assert labels[:6] == ["banner", "net_configured", "booted", "cmdline", "unimplemented_syscall", "app_output"]
    assert obs[4].phases == obs[5].phases == ("init_started",)  # first wins: init_started is the 334 line
    assert "Redis is starting" in c.seen["app_output"]
    assert c.facts["osv_unimplemented_syscalls"] == "334 38"
    assert c.guest == {"boot": None} and not c.finished
    assert c.facts["osv_console_cmdline"].startswith("/lib64/ld-linux-x86-64.so.2 /redis-server")


@pytest.mark.parametrize("name", ["osv-real-nginx-tcg.console", "osv-real-memcached-tcg.console"])
def test_real_osv_console_of_a_silent_debian_server(name):
    """Captured here from the README's images: nginx and memcached print nothing, so init_started
    comes from OSv's line about the program's first unimplemented system call, and no app_output."""
    c = OsvConsole()
    obs = c.feed_text(fixture(name))
    assert [o.label for o in obs] == ["banner", "net_configured", "booted", "cmdline", "unimplemented_syscall"]
    assert obs[-1].phases == ("init_started",) and "app_output" not in c.seen
    assert c.facts["osv_unimplemented_syscalls"] == "334" and not c.finished


def test_osv_console_under_kvm_has_the_guest_figure():
    c = OsvConsole()
    c.feed_text(fixture("osv-nginx-kvm.console"))
    assert c.guest == {"boot": 126.26} and "app_output" in c.seen


def test_osv_console_without_app_output_and_with_crlf():
    c = OsvConsole()
    obs = c.feed_text(fixture("osv-memcached-crlf.console"))
    assert [o.label for o in obs] == ["banner", "net_configured", "booted", "cmdline"]
    assert "init_started" not in {p for o in obs for p in o.phases}


@pytest.mark.parametrize("name,reason", [
    ("osv-abort.console", "OSv: Aborted"),
    ("osv-missing-library.console", "OSv: Failed to load object"),
    # Captured from a real OSv build here: Debian's redis-server started by OSv's built-in linker.
    ("osv-real-symbol-lookup-failure.console", "OSv: /redis-server: failed looking up symbol OPENSSL_init_crypto"),
])
def test_osv_console_notices_a_dead_guest(name, reason):
    c = OsvConsole()
    c.feed_text(fixture(name))
    assert c.finished and c.finish_reason.startswith(reason)


@pytest.mark.parametrize("name", ["rumprun-redis.console",
                                  # captured here: Debian's redis 7.0.15 sources built and baked with rumprun
                                  "rumprun-real-redis7-tcg.console"])
def test_rumprun_console_running(name):
    c = RumprunConsole()
    obs = c.feed_text(fixture(name))
    labels = [o.label for o in obs]
    assert labels[:4] == ["bootstrap", "rump_kernel", "nic_probed", "main_called"]
    main = next(o for o in obs if o.label == "main_called")
    assert main.phases == ("kernel_up", "init_started")
    assert c.facts == {"rump_kernel": "NetBSD 7.99.34 (RUMP-ROAST)", "rumprun_app": "redis-server"}
    assert not c.finished and c.exit_code is None and c.guest == {}


@pytest.mark.parametrize("name,code,reason", [
    ("rumprun-exit.console", 1, 'rumprun: main() of "nginx" returned 1; halted; last output: nginx: [emerg] open() '
                                '"/data/conf/nginx.conf" failed (2: No such file or directory)'),
    # captured here: a baked program whose main() returns 3 (rumprun also prints "ERROR: _exit(3)")
    ("rumprun-real-exit.console", 3, 'rumprun: main() of "hello" returned 3; halted; last output: arg 2=b'),
    # captured here: redis 7 exit()s on a config file it cannot open (an ISO made without Rock Ridge names)
    ("rumprun-real-redis-exit.console", 1, 'rumprun: "redis-server" called _exit(1); halted; last output: 2:C '),
])
def test_rumprun_console_halted(name, code, reason):
    c = RumprunConsole()
    c.feed_text(fixture(name))
    assert c.finished and c.exit_code == code
    assert c.finish_reason.startswith(reason)


def test_rumprun_console_fatal_trap_finishes_the_guest():
    """Captured here: NetBSD's setjmp calls rumprun's sigprocmask with a misaligned stack and an SSE
    store faults. The CPU halts with no "halted" line; the guest is finished all the same."""
    c = RumprunConsole()
    labels = [o.label for o in c.feed_text(fixture("rumprun-real-fatal-trap.console"))]
    assert labels[-2:] == ["main_called", "fatal_trap"]
    assert c.finished and c.exit_code is None
    assert c.finish_reason == "rumprun: FATAL TRAP: general protection at 0x2cfc9f (0x0)"


def test_parsers_fed_through_the_linux_vm_console_reader(tmp_path):
    """The instance reads consoles with virt/console.py's ConsoleFile: escape codes and CR go before parsing."""
    from orchestrator.virt.console import ConsoleFile

    path = tmp_path / "c.log"
    path.write_bytes((FIXTURES / "osv-memcached-crlf.console").read_bytes())
    cf, c = ConsoleFile(path), OsvConsole()
    for ev in cf.poll():
        c.feed_line(ev.text)
    assert c.guest == {"boot": None} and "cmdline" in c.seen


# --- registry and suite ----------------------------------------------------------------------------
def test_platforms_registered_and_suite_loads():
    assert Platform.registry.get("osv") is Osv and Platform.registry.get("rumprun") is Rumprun
    suite = load_plan(ROOT / "suites" / "unikernels.yaml")
    assert {c.platform for c in suite.cells} == {"native", "runc", "gvisor", "linux-vm", "osv", "rumprun"}
    assert {(c.platform, c.workload, c.benchmark) for c in suite.cells if c.platform == "rumprun"} == {
        ("rumprun", "redis", "cold-start"), ("rumprun", "redis", "setget"),
        ("rumprun", "nginx", "cold-start"), ("rumprun", "nginx", "static-http"),
        ("rumprun", "memcached", "cold-start"), ("rumprun", "memcached", "kv")}


def test_webroot_command_writes_what_the_probe_and_wrk_fetch(tmp_path):
    """Image builders get nginx's document root from testbed itself (images/*/README.md)."""
    from orchestrator.workloads.nginx import INDEX_BODY

    res = run_cli("images", "webroot", str(tmp_path / "data" / "www"))
    assert res.returncode == 0, res.stderr
    www = tmp_path / "data" / "www"
    assert (www / "index.html").read_text() == INDEX_BODY
    assert {p.name: p.stat().st_size for p in www.glob("*.bin")} == {
        "4k.bin": 4 << 10, "16k.bin": 16 << 10, "64k.bin": 64 << 10, "128k.bin": 128 << 10}
    (tmp_path / "afile").write_text("x")
    res = run_cli("images", "webroot", str(tmp_path / "afile"))
    assert res.returncode == 2 and "afile" in res.stderr and "Traceback" not in res.stderr
