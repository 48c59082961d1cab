"""Enum-like values, as str enums: they compare equal to (and serialise as) their strings, so the
store, JSON exports and YAML keep the same text while the code gets one spelling of each."""

from __future__ import annotations

from enum import StrEnum


class SampleStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    NOT_RUNNABLE = "not_runnable"  # the cell cannot run here (no SR-IOV NIC, image missing): not a failure


class RunStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    KILLED = "killed"  # its process is gone without ending the run (SIGKILL, power loss)


class NicKind(StrEnum):
    VETH = "veth"  # a namespace's eth0 on the lab bridge (processes, containers)
    VIRTIO = "virtio"  # a guest NIC whose tap sits on the lab's host bridge
    SRIOV = "sriov"  # a virtual function of a physical NIC handed to the guest
    HOST = "host"  # the lab host's own experiment interface (a server placed on a lab host)
    MACVLAN = "macvlan"  # a namespace's eth0 as a macvlan of a lab host's experiment interface


class CheckStatus(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
