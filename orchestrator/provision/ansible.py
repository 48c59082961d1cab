"""`testbed provision`: run playbooks/site.yml with ansible-runner against the lab hosts.

The inventory is generated from the lab file (orchestrator/config/lab.py); without a lab file
the target is this machine (ansible_connection=local). Before Ansible connects, each lab host
is reached once with SshHost, which verifies its host key (known_hosts, pinned fingerprint or
--trust-new-host-key) and records it, so Ansible then runs with StrictHostKeyChecking=yes.
Task events stream to `on_event` (one line each) and to the log; a failure becomes one line:
`provision failed on HOST at task 'TASK': MESSAGE`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .. import paths
from ..config.lab import Lab, load_lab
from ..errors import ConfigError, MissingToolError, TestbedError
from .inventory import generate_inventory, local_inventory

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 3600.0
REBOOT_MARK = "testbed: reboot required"


class ProvisionError(TestbedError):
    """A playbook task failed or a host was unreachable."""


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass
class ProvisionResult:
    status: str
    rc: int
    hosts: dict[str, HostStats] = field(default_factory=dict)
    reboot_required: list[str] = field(default_factory=list)
    artifact_dir: str = ""
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return sum(s.changed for s in self.hosts.values())

    @property
    def ok(self) -> int:
        return sum(s.ok for s in self.hosts.values())

    @property
    def failed(self) -> int:
        return sum(s.failed + s.unreachable for s in self.hosts.values())

    def summary(self) -> str:
        parts = [f"{h}: ok={s.ok} changed={s.changed} failed={s.failed} unreachable={s.unreachable} "
                 f"skipped={s.skipped}" for h, s in sorted(self.hosts.items())]
        text = f"provision {self.status} in {self.seconds:.0f} s; " + "; ".join(parts)
        if self.reboot_required:
            text += f"; reboot required on {', '.join(self.reboot_required)}"
        return text


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _failure_message(res: dict) -> str:
    for item in res.get("results", []) or []:  # a loop: the first failed item says why
        if isinstance(item, dict) and item.get("failed"):
            return _failure_message(item)
    if res.get("rc") not in (None, 0) and res.get("stderr"):  # a command: its stderr beats "non-zero return code"
        return _one_line(res["stderr"])
    for key in ("msg", "stderr", "stdout", "reason"):
        value = res.get(key)
        if value:
            return _one_line(value)
    return "failed without a message"


class _Events:
    """Turns ansible-runner events into one-line progress and remembers the first failure."""

    def __init__(self, on_event: Callable[[str], None] | None):
        self.on_event = on_event
        self.first_failure: tuple[str, str, str] | None = None
        self.unreachable: list[tuple[str, str, str]] = []
        self.reboot: set[str] = set()

    def emit(self, line: str) -> None:
        log.info("provision: %s", line)
        if self.on_event:
            try:
                self.on_event(line)
            except Exception:  # the display must never break provisioning
                log.debug("on_event callback failed", exc_info=True)

    def __call__(self, event: dict) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {}) or {}
        host, task = data.get("host", ""), data.get("task", "")
        res = data.get("res", {}) or {}
        if kind == "playbook_on_task_start":
            self.emit(f"task {data.get('task') or data.get('name', '')}")
        elif kind == "runner_on_ok":
            state = "changed" if res.get("changed") else "ok"
            self.emit(f"{host}: {task}: {state}")
            if REBOOT_MARK in str(res.get("msg", "")):
                self.reboot.add(host)
        elif kind == "runner_on_skipped":
            self.emit(f"{host}: {task}: skipped")
        elif kind == "runner_on_failed":
            ignored = data.get("ignore_errors")
            msg = _failure_message(res)
            self.emit(f"{host}: {task}: {'failed (ignored)' if ignored else 'FAILED'}: {msg}")
            if not ignored and self.first_failure is None:
                self.first_failure = (host, task, msg)
        elif kind == "runner_on_unreachable":
            msg = _failure_message(res)
            self.emit(f"{host}: UNREACHABLE: {msg}")
            self.unreachable.append((host, task, msg))
        return True


def _playbook_path(playbook: str | Path | None) -> Path:
    path = Path(playbook) if playbook else paths.project_root() / "playbooks" / "site.yml"
    if not path.is_file():
        raise ConfigError(f"{path}: playbook not found")
    return path.resolve()


def _verify_hosts(lab: Lab, names: list[str], trust_new: bool) -> None:
    """Reach each host once with SshHost: checks/records the host key, fails early with one line."""
    from ..hosts.ssh import SshHost

    for name in names:
        with SshHost.from_lab(lab.host(name), trust_new=trust_new) as host:
            host.run(["true"], timeout=30)


def provision(lab: Lab | str | Path | None = None, hosts: list[str] | None = None, tags: Iterable[str] | None = None,
              extravars: dict | None = None, on_event: Callable[[str], None] | None = None, *,
              lab_file: str | Path | None = None, trust_new_host_key: bool = False,
              playbook: str | Path | None = None, timeout: float = DEFAULT_TIMEOUT,
              data_dir: Path | None = None) -> ProvisionResult:
    """Run the site playbook (or `playbook`) on the lab hosts `hosts` (all when None), or on this
    machine when no lab is given. Raises ProvisionError with one line on failure."""
    try:
        import ansible_runner
    except ImportError:
        raise MissingToolError("ansible-runner is not installed in testbed's Python environment; "
                               "pip install ansible-runner ansible-core") from None
    lab = lab if lab is not None else lab_file
    if isinstance(lab, (str, Path)):
        lab = load_lab(lab)
    pb = _playbook_path(playbook)
    if lab is None:
        if hosts and set(hosts) - {"localhost", "local"}:
            raise ConfigError(f"provision {', '.join(hosts)}: pass --lab FILE naming the lab hosts file "
                              f"(without it, only this machine is provisioned)")
        inventory, targets = local_inventory(), ["localhost"]
    else:
        selected = lab.select(hosts)  # unknown name -> one-line ConfigError
        targets = [h.name for h in selected]
        _verify_hosts(lab, targets, trust_new_host_key)
        inventory = generate_inventory(selected)

    base = data_dir or (paths.home() / "provision")
    base.mkdir(parents=True, exist_ok=True)
    ident = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    private = base / ident
    private.mkdir()
    venv_bin = str(Path(sys.executable).parent)
    envvars = {
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
        "ANSIBLE_SSH_RETRIES": "0",
    }
    # One SSH connection per host for the whole run (a socket path short enough for sun_path),
    # closed explicitly afterwards so no ssh master outlives the run.
    control_dir = Path(tempfile.mkdtemp(prefix="tbcp-", dir="/tmp"))
    envvars["ANSIBLE_SSH_ARGS"] = f"-C -o ControlMaster=auto -o ControlPersist=60s -o ControlPath={control_dir}/%C"
    envvars["ANSIBLE_PIPELINING"] = "True"
    events = _Events(on_event)
    events.emit(f"playbook {pb.name} on {', '.join(targets)}" + (f" (tags {','.join(tags)})" if tags else ""))
    start = time.monotonic()
    try:
        r = _run(ansible_runner, private, pb, inventory, extravars, tags, targets, envvars, events, timeout)
    finally:
        _close_masters(control_dir)
    return _result(r, events, start, timeout)


def _close_masters(control_dir: Path) -> None:
    for sock in control_dir.iterdir():
        try:
            subprocess.run(["ssh", "-S", str(sock), "-O", "exit", "testbed-control"], capture_output=True,
                           timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            log.debug("could not close ssh master %s", sock)
    shutil.rmtree(control_dir, ignore_errors=True)


def _run(ansible_runner, private, pb, inventory, extravars, tags, targets, envvars, events, timeout):
    return ansible_runner.run(
        private_data_dir=str(private),
        playbook=str(pb),
        inventory=inventory,
        extravars=extravars or {},
        tags=",".join(tags) if tags else None,
        limit=",".join(targets),
        envvars=envvars,
        event_handler=events,
        quiet=True,
        timeout=timeout,
        ident="run",
        project_dir=str(pb.parent),
    )


def _result(r, events: _Events, start: float, timeout: float) -> ProvisionResult:
    stats = r.stats or {}
    per_host: dict[str, HostStats] = {}
    for key, attr in (("ok", "ok"), ("changed", "changed"), ("failures", "failed"), ("dark", "unreachable"),
                      ("skipped", "skipped")):
        for host, n in (stats.get(key) or {}).items():
            setattr(per_host.setdefault(host, HostStats()), attr, n)
    result = ProvisionResult(r.status, r.rc, per_host, sorted(events.reboot), str(Path(r.config.artifact_dir)),
                             time.monotonic() - start)
    log.info("provision: %s", result.summary())
    if events.unreachable:
        host, task, msg = events.unreachable[0]
        raise ProvisionError(f"provision failed: host {host} is unreachable at task '{task}': {msg}")
    if events.first_failure:
        host, task, msg = events.first_failure
        raise ProvisionError(f"provision failed on {host} at task '{task}': {msg}")
    if r.status == "timeout":
        raise ProvisionError(f"provision failed: the playbook did not finish within {timeout:g} s "
                             f"(log: {result.artifact_dir}/stdout)")
    if r.status != "successful" or r.rc != 0:
        tail = ""
        try:
            tail = _one_line(" ".join(Path(result.artifact_dir, "stdout").read_text().strip().splitlines()[-3:]))
        except OSError:
            pass
        raise ProvisionError(f"provision failed ({r.status}, rc {r.rc}): {tail or 'see ' + result.artifact_dir}")
    return result


__all__ = ["HostStats", "ProvisionError", "ProvisionResult", "provision"]
