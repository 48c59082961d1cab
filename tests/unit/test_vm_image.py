"""Guest image pieces that need no VM: cpio writer, per-launch archive, module closure, options."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest
from pydantic import ValidationError

from orchestrator.images.linux import launch_initrd, module_closure, write_cpio
from orchestrator.platforms.base import Platform
from orchestrator.platforms.linux_vm import LinuxVmOptions


def read_newc(data: bytes) -> list[list[tuple[str, int, bytes]]]:
    """Every archive in a (possibly concatenated) newc stream: [(name, mode, data)]."""
    archives, current, off = [], [], 0
    while off < len(data):
        if data[off:off + 6] != b"070701":
            off += 1  # padding between archives
            continue
        fields = [int(data[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = off + 110
        name = data[name_start:name_start + namesize - 1].decode()
        body = name_start + namesize
        body += -body % 4
        content = data[body:body + size]
        off = body + size + (-(body + size) % 4)
        if name == "TRAILER!!!":
            archives.append(current)
            current = []
        else:
            current.append((name, mode, content))
    return archives


def test_cpio_is_readable_by_gnu_cpio(tmp_path):
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "usr" / "bin" / "tool").chmod(0o755)
    (root / "bin").symlink_to("usr/bin")
    (root / "init").write_text("#!/bin/sh\n")
    write_cpio(tmp_path / "a.cpio", root)
    if shutil.which("cpio"):
        out = subprocess.run(["cpio", "-it"], stdin=open(tmp_path / "a.cpio", "rb"), capture_output=True,
                             text=True, timeout=30, check=False).stdout.split()
        assert {"dev", "dev/console", "bin", "init", "usr", "usr/bin", "usr/bin/tool"} <= set(out)
    [entries] = read_newc((tmp_path / "a.cpio").read_bytes())
    names = [e[0] for e in entries]
    assert names.index("usr") < names.index("usr/bin") < names.index("usr/bin/tool")
    assert {n: m for n, m, _ in entries}["usr/bin/tool"] & 0o777 == 0o755
    # deterministic: same tree, same bytes
    write_cpio(tmp_path / "b.cpio", root)
    assert (tmp_path / "a.cpio").read_bytes() == (tmp_path / "b.cpio").read_bytes()


def test_launch_initrd_appends_a_second_archive(tmp_path):
    base = tmp_path / "base.cpio"
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "init").write_text("x")
    write_cpio(base, tmp_path / "r")
    cfg = tmp_path / "config"
    (cfg / "www").mkdir(parents=True)
    (cfg / "redis.conf").write_text("port 6379\n")
    (cfg / "www" / "index.html").write_text("hello\n")
    argv = ["/usr/bin/redis-server", "/testbed/config/redis.conf", "--x", "a b'c"]
    out = launch_initrd(base, tmp_path / "initrd.img", cfg, argv)
    data = out.read_bytes()
    assert data.startswith(base.read_bytes())
    first, second = read_newc(data)
    assert [e[0] for e in first][-1] == "init"
    files = {n: c for n, _, c in second}
    assert shlex.split(files["testbed/argv"].decode()) == argv
    assert files["testbed/config/redis.conf"] == b"port 6379\n"
    assert files["testbed/config/www/index.html"] == b"hello\n"
    assert [n for n, _, _ in second][:3] == ["testbed", "testbed/argv", "testbed/config"]


def test_module_closure(tmp_path):
    (tmp_path / "modules.dep").write_text(
        "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko "
        "kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n"
        "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
        "kernel/net/core/failover.ko:\n"
        "kernel/drivers/virtio/virtio_ring.ko:\n"
        "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n")
    (tmp_path / "modules.builtin").write_text("kernel/drivers/tty/serial/8250/8250.ko\n")
    got = module_closure(tmp_path, ("virtio_pci", "virtio_net", "8250"))
    assert got[0] == "kernel/drivers/virtio/virtio_pci.ko"
    assert len(got) == len(set(got)) == 6
    with pytest.raises(Exception, match="neither built in"):
        module_closure(tmp_path, ("virtio_blk",))


def test_registered_and_options(tmp_path):
    assert Platform.registry.get("linux-vm").Options is LinuxVmOptions
    o = LinuxVmOptions()
    assert (o.uri, o.accel, o.nic, o.ready_timeout, o.machine) == ("qemu:///system", "auto", "virtio", 120.0, "pc")
    with pytest.raises(ValidationError, match="nope does not exist"):
        LinuxVmOptions(kernel=tmp_path / "nope")
    with pytest.raises(ValidationError, match="sriov_pf"):
        LinuxVmOptions(nic="sriov")
    with pytest.raises(ValidationError):
        LinuxVmOptions(accel="hvf")
    with pytest.raises(ValidationError):
        LinuxVmOptions(vcpu=2)  # typo: extra fields are rejected
    assert LinuxVmOptions(nic="sriov", sriov_pf="ens1f0").sriov_pf == "ens1f0"
