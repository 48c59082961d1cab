"""Ansible inventory generated from testbed's own lab file (never hand-written).

The SSH settings mirror SshHost's rules: key authentication only, the lab host's key checked
strictly against the lab's known_hosts file (provision verifies / records it with SshHost first).
"""

from __future__ import annotations

import shlex

from ..config.lab import LabHost
from ..config.lab_nightly import nightly_vars

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3 has python3-apt, which the apt module needs


def host_vars(h: LabHost) -> dict:
    ssh_opts = ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={h.known_hosts_path}",
                "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
                "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(h.connect_timeout)}"]
    if h.identity_file:
        ssh_opts += ["-o", "IdentitiesOnly=yes"]
    v: dict = {
        "ansible_host": h.address,
        "ansible_port": h.port,
        "ansible_user": h.user,
        "ansible_connection": "ssh",
        "ansible_ssh_common_args": shlex.join(ssh_opts),
        "ansible_python_interpreter": SYSTEM_PYTHON,
        "tuning_hugepages": h.hugepages,
        "tuning_iommu": h.iommu,
        "tuning_sriov": dict(h.sriov),
    }
    if h.identity_file:
        v["ansible_ssh_private_key_file"] = str(h.identity_path)
    if h.user != "root":
        v["ansible_become"] = True
    if h.lab_address:
        v["testbed_lab_address"] = h.lab_address
    if h.governor:
        v["tuning_governor"] = h.governor
    v.update(nightly_vars(h.nightly_schedule))
    return v


def generate_inventory(hosts: list[LabHost]) -> dict:
    """{'all': {'hosts': {...}, 'children': {role: {'hosts': {...}}}}} for ansible-runner."""
    inv: dict = {"all": {"hosts": {h.name: host_vars(h) for h in hosts}, "children": {}}}
    for h in hosts:
        for role in h.roles:
            inv["all"]["children"].setdefault(role, {"hosts": {}})["hosts"][h.name] = {}
    if not inv["all"]["children"]:
        del inv["all"]["children"]
    return inv


def local_inventory() -> dict:
    """This machine, provisioned in place (the project's own set-up script does this)."""
    return {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                            "ansible_python_interpreter": SYSTEM_PYTHON}}}}


__all__ = ["generate_inventory", "host_vars", "local_inventory"]
