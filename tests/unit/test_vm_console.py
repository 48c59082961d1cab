"""Console parser on console text captured from a TCG boot of the redis guest."""

from __future__ import annotations

from orchestrator.virt.accel import qemu_errors
from orchestrator.virt.console import ConsoleFile, ConsoleParser, parse_text

CAPTURED = (
    "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r\n"
    "Booting from ROM...\r\n"
    "\x1bc\x1b[?7l\x1b[2J[    0.000000] Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org)\r\n"
    "[    0.000000] Command line: console=ttyS0 panic=-1 testbed.ip=10.77.0.10/24 testbed.gw=10.77.0.1\r\n"
    "[    2.017728] Run /init as init process\r\n"
    "TESTBED guest-start uptime=2.08 \r\n"
    "TESTBED modules-loaded uptime=2.31 \r\n"
    "TESTBED net-up uptime=2.40 dev=eth0 ip=10.77.0.10/24\r\n"
    "TESTBED workload-start uptime=2.41 pid=1\r\n"
    "92:M 23 Nov 2026 20:36:23.689 * Ready to accept connections\r\n"
)


def test_parses_markers_and_printk():
    p = parse_text(CAPTURED)
    assert p.first_printk == 0.0 and p.last_printk == 2.017728
    assert p.run_init_at == 2.017728
    assert set(p.markers) == {"guest-start", "modules-loaded", "net-up", "workload-start"}
    assert p.markers["net-up"] == {"uptime": "2.40", "dev": "eth0", "ip": "10.77.0.10/24"}
    g = p.guest_figures()
    assert g["kernel_to_init"] == 2080.0
    assert g["kernel_run_init"] == 2017.728
    assert round(g["init_to_workload"], 3) == 330.0
    assert round(g["init_to_net"], 3) == 320.0
    assert p.tail[-1].endswith("Ready to accept connections")
    assert "SeaBIOS" in p.tail[0] and "\x1b" not in "".join(p.tail)


def test_incremental_feed_splits_lines_anywhere():
    p = ConsoleParser()
    data = CAPTURED.encode()
    events = []
    for i in range(0, len(data), 7):
        events += p.feed(data[i:i + 7])
    assert [e.name for e in events if e.kind == "marker"] == ["guest-start", "modules-loaded", "net-up",
                                                              "workload-start"]
    assert p.markers == parse_text(CAPTURED).markers


def test_missing_markers_give_none():
    g = parse_text("[    0.5] only the kernel\n").guest_figures()
    assert g["kernel_to_init"] is None and g["init_to_workload"] is None
    assert parse_text("").tail_line() == "(console empty)"


def test_console_file_follows_growth(tmp_path):
    path = tmp_path / "console.log"
    cf = ConsoleFile(path)
    assert cf.poll() == []  # not created yet
    path.write_bytes(b"[    1.0] a\nTESTBED guest-")
    assert [e.kind for e in cf.poll()] == ["printk"]
    with open(path, "ab") as fh:
        fh.write(b"start uptime=1.5 \n")
    evs = cf.poll()
    assert evs[0].name == "guest-start" and cf.parser.uptime("guest-start") == 1.5


def test_qemu_errors_keeps_qemu_lines_only():
    msg = ("libvirt could not start x: internal error: qemu unexpectedly closed the monitor: "
           "2026-11-23T20:39:15.085616Z qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69 "
           "qemu-system-x86_64: ../kvm.c:3183: kvm_buf_set_msrs: Assertion `ret' failed.")
    assert qemu_errors(msg) == "failed to set MSR 0x10a to 0x69; ../kvm.c:3183: kvm_buf_set_msrs: Assertion `ret' failed."
