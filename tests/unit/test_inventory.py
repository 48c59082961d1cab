"""The Ansible inventory is generated from the lab file, with strict SSH settings."""

from __future__ import annotations

import shlex
from pathlib import Path

from orchestrator.config.lab import LabHost, load_lab
from orchestrator.provision.inventory import generate_inventory, local_inventory


def test_inventory_from_lab_file(tmp_path: Path):
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text("""\
hosts:
  - name: a
    address: 10.78.0.1
    identity_file: id_ed25519
    known_hosts: kh
    lab_address: 10.78.0.1
    sriov: {enp1s0f0: 8}
    hugepages: 256
    iommu: true
    roles: [server, kvm]
  - name: b
    address: b.lab
    port: 2200
    user: tester
    governor: powersave
    roles: [client]
""")
    lab = load_lab(lab_file)
    inv = generate_inventory(lab.hosts)
    a = inv["all"]["hosts"]["a"]
    assert a["ansible_host"] == "10.78.0.1" and a["ansible_port"] == 22 and a["ansible_user"] == "root"
    assert a["ansible_ssh_private_key_file"] == str(tmp_path / "id_ed25519")
    assert a["tuning_sriov"] == {"enp1s0f0": 8} and a["tuning_hugepages"] == 256 and a["tuning_iommu"] is True
    assert a["testbed_lab_address"] == "10.78.0.1"
    assert "ansible_become" not in a
    opts = shlex.split(a["ansible_ssh_common_args"])
    assert "StrictHostKeyChecking=yes" in opts and f"UserKnownHostsFile={tmp_path / 'kh'}" in opts
    assert "PasswordAuthentication=no" in opts and "BatchMode=yes" in opts and "IdentitiesOnly=yes" in opts
    b = inv["all"]["hosts"]["b"]
    assert b["ansible_port"] == 2200 and b["ansible_user"] == "tester" and b["ansible_become"] is True
    assert b["tuning_governor"] == "powersave" and b["tuning_sriov"] == {}
    assert "ansible_ssh_private_key_file" not in b and "IdentitiesOnly=yes" not in b["ansible_ssh_common_args"]
    assert inv["all"]["children"] == {"server": {"hosts": {"a": {}}}, "kvm": {"hosts": {"a": {}}},
                                      "client": {"hosts": {"b": {}}}}


def test_no_secrets_and_no_roles():
    h = LabHost(name="x", address="10.0.0.9")
    inv = generate_inventory([h])
    assert "children" not in inv["all"]
    flat = repr(inv).lower()
    assert "password" not in flat.replace("passwordauthentication=no", "")


def test_local_inventory():
    inv = local_inventory()
    assert inv == {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                                   "ansible_python_interpreter": "/usr/bin/python3"}}}}


def test_nightly_variables(tmp_path: Path):
    (tmp_path / "quick.yaml").write_text("name: quick\n")
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text("""\
nightly: {suites: [quick.yaml], at: "02:15"}
hosts:
  - {name: a, address: 10.78.0.1, nightly: {store: /srv/r.sqlite, testbed: /srv/tb/bin/testbed}}
  - {name: b, address: 10.78.0.2, nightly: {suites: []}}
""")
    inv = generate_inventory(load_lab(lab_file).hosts)
    a, b = inv["all"]["hosts"]["a"], inv["all"]["hosts"]["b"]
    assert a["nightly_suites"] == [str(tmp_path / "quick.yaml")] and a["nightly_at"] == "02:15"
    assert a["nightly_store"] == "/srv/r.sqlite" and a["nightly_testbed_bin"] == "/srv/tb/bin/testbed"
    # no nightly run: an empty list, so the role removes a schedule installed earlier
    assert b["nightly_suites"] == [] and not {k for k in b if k.startswith("nightly_")} - {"nightly_suites"}
