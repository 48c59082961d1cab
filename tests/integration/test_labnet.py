"""The lab network is isolated: lab addresses live only in testbed's namespaces, nothing routes out,
and everything is gone afterwards; the ledger and gc reclaim what a dead run left."""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers import leftovers
from orchestrator.ledger import Ledger, collect_garbage
from orchestrator.net.labnet import LabNet
from orchestrator.net.netns import NetnsExecutor

pytestmark = pytest.mark.slow


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=20).stdout


def test_topology_is_isolated_and_removed(tmp_path):
    ledger = Ledger("t0a1b2", tmp_path)
    net = LabNet("t0a1b2", "10.77.3.0/24", ledger)
    with net:
        inst = net.namespace("x")
        vm = net.bridge_port()
        # Addresses exist only inside the namespaces; the host bridge for VMs has none.
        assert "10.77.3." not in sh("ip", "-o", "addr")
        assert json.loads(sh("ip", "-j", "addr", "show", "dev", vm.bridge))[0]["addr_info"] == []
        # The lab namespace does not forward, and has no link but the bridge and its ports.
        assert sh("ip", "netns", "exec", net.lab_ns, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "0"
        links = {l["ifname"] for l in json.loads(sh("ip", "-n", net.lab_ns, "-j", "link"))}
        assert links == {"lo", "br0", "hostlink", "tbt0a1b2c", inst.host_links[0]}
        # The client reaches the instance over the bridge (a listener inside the instance namespace).
        server = NetnsExecutor(inst.netns)
        client = NetnsExecutor(net.client_ns)
        try:
            import socket

            lsock = server.call(lambda: socket.create_server((str(inst.address), 5555)))
            conn = client.connect(str(inst.address), 5555, 2)
            peer, _ = lsock.accept()
            conn.sendall(b"hi")
            assert peer.recv(2) == b"hi"
            for s in (conn, peer, lsock):
                s.close()
        finally:
            server.close()
            client.close()
        assert vm.address != inst.address and str(vm.address).startswith("10.77.3.")
    assert leftovers("t0a1b2") == []
    assert ledger.live() == []


def test_gc_reclaims_a_dead_runs_namespaces(tmp_path):
    ledger = Ledger("t0dead", tmp_path)
    net = LabNet("t0dead", "10.77.4.0/24", ledger)
    net.create()
    net.namespace("y")
    net.bridge_port()
    assert leftovers("t0dead")
    # Pretend the owner died: rewrite its open record with a pid that cannot be alive.
    lines = ledger.path.read_text().splitlines()
    first = json.loads(lines[0])
    first["pid"] = 2 ** 22 + 1
    ledger.path.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    done = collect_garbage(tmp_path)
    assert any("reclaimed netns tb-t0dead-lab" in d for d in done)
    assert leftovers("t0dead") == []
    assert not ledger.path.exists()
