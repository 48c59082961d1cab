"""microvm's QEMU command line and options, without QEMU."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.enums import NicKind
from orchestrator.images.cache import Image
from orchestrator.ledger import Ledger
from orchestrator.net.labnet import Attachment
from orchestrator.platforms.base import Platform
from orchestrator.platforms.microvm import Microvm, MicrovmOptions
from orchestrator.testing.fakes import FakeHost, FakeLabNet
from orchestrator.virt.accel import AccelChoice

ATT = Attachment(ipaddress.IPv4Address("10.97.0.12"), ipaddress.IPv4Network("10.97.0.0/24"),
                 ipaddress.IPv4Address("10.97.0.1"), "52:54:00:aa:bb:cc", nic=NicKind.VIRTIO, bridge="br", tap="tbt3")


def platform(tmp_path: Path, accel: str = "tcg", **options) -> Microvm:
    host = FakeHost()
    host.read_text = lambda path, timeout=10: "cpu MHz\t\t: 2596.120\n"  # type: ignore[method-assign]
    p = Microvm("mvm", MicrovmOptions(accel="tcg", **options), host, Ledger("mvmunit", tmp_path / "l"), tmp_path)
    p.prepare()
    p.accel = AccelChoice(accel, "test", [])
    return p


def image(tmp_path: Path) -> Image:
    return Image("linux-guest", "redis", "r", "d", tmp_path, {"kernel": "vmlinuz", "initrd": "initrd.cpio"})


def test_registered_and_attaches_with_a_tap(tmp_path):
    assert Platform.registry.get("microvm") is Microvm
    att = platform(tmp_path).attach(FakeLabNet())
    assert att.tap and att.bridge


def test_tcg_command_line(tmp_path):
    p = platform(tmp_path, cpus=[1])
    argv = p.argv(image(tmp_path), tmp_path / "initrd.img", ATT, tmp_path / "console.log")
    assert argv[:3] == ["taskset", "-c", "1"]
    q = argv[3:]
    assert q[0] == "qemu-system-x86_64" and q[q.index("-M") + 1] == "microvm,accel=tcg"
    assert q[q.index("-cpu") + 1] == "qemu64"
    append = q[q.index("-append") + 1]
    assert "testbed.ip=10.97.0.12/24" in append and "tsc_early_khz=2596120" in append
    assert q[q.index("-netdev") + 1] == "tap,id=n0,ifname=tbt3,script=no,downscript=no"
    assert q[q.index("-device") + 1] == "virtio-net-device,netdev=n0,mac=52:54:00:aa:bb:cc"
    assert q[q.index("-serial") + 1] == f"file:{tmp_path / 'console.log'}"
    assert p.provenance()["guest_tsc_khz"] == 2596120 and p.provenance()["accel"] == "tcg"


def test_kvm_command_line_uses_the_host_cpu_and_no_tsc_hint(tmp_path):
    p = platform(tmp_path, accel="kvm", machine_options=["rtc=on"])
    q = p.argv(image(tmp_path), tmp_path / "i", ATT, tmp_path / "c")
    assert q[q.index("-M") + 1] == "microvm,accel=kvm,rtc=on" and q[q.index("-cpu") + 1] == "host"
    assert "tsc_early_khz" not in q[q.index("-append") + 1]


@pytest.mark.parametrize("options", [{"machine_options": ["accel=kvm"]}, {"machine_options": ["pit off"]},
                                     {"cpu": "host; rm -rf /"}, {"memory_mb": 16}])
def test_bad_options(options):
    with pytest.raises(ValidationError):
        MicrovmOptions(**options)
