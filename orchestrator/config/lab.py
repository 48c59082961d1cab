"""Lab hosts file: the machines testbed provisions and runs on over SSH.

    hosts:
      - name: lab-a
        address: 192.0.2.10          # where SSH reaches it (management network)
        user: root
        identity_file: ~/.ssh/testbed_ed25519
        known_hosts: ~/.ssh/known_hosts          # optional; default ~/.ssh/known_hosts
        host_key_fingerprint: "SHA256:abc..."  # optional pin, accepted when known_hosts lacks the host
        lab_address: 10.77.0.1       # the host's address on the direct experiment link
        testbed_home: /var/lib/testbed   # where testbed keeps its image cache and per-run files there
        sriov: {enp59s0f0: 4}        # VFs per physical function (provision writes sriov_numvfs)
        sriov_pool:                  # which VFs runs may lease (default: every VF); any entry may match
          - {pf: enp59s0f0, vfs: "0-3"}            # VF indices on that PF
          - {vendor: "15b3", device: "101e", driver: mlx5_core}
        hugepages: 512               # 2 MiB pages; 0 = leave as is
        iommu: true                  # provision sets intel_iommu/amd_iommu=on iommu=pt (reboot needed)
        roles: [server]
        nightly: {suites: [suites/quickstart.yaml], at: "02:00"}   # see config/lab_nightly.py

Errors are one line each: `FILE:LINE: hosts[0].port: ...`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ..errors import ConfigError
from .vf_selectors import VfSelector, check_driver, check_pf, hex4, parse_ranges
from .lab_nightly import NightlySchedule, NightlySpec, resolve_nightly
from .yamlload import LineMap, load_yaml, raise_if, validation_errors

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
FINGERPRINT_RE = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}=?$")
IFACE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")


class SriovSelectorModel(BaseModel):
    """One entry of a host's `sriov_pool` (semantics in orchestrator/config/vf_selectors.py)."""

    model_config = ConfigDict(extra="forbid")

    pf: str | None = None
    vfs: str | int | None = None  # "0-3,6"
    vendor: str | int | None = None  # the VF's PCI vendor id, e.g. "8086"
    device: str | int | None = None  # the VF's PCI device id, e.g. "1889"
    driver: str | None = None  # the VF's host driver, e.g. iavf

    @field_validator("pf")
    @classmethod
    def _pf(cls, value: str | None) -> str | None:
        return None if value is None else check_pf(value)

    @field_validator("vfs")
    @classmethod
    def _vfs(cls, value: str | int | None) -> str | None:
        if value is None:
            return None
        parse_ranges(str(value))
        return str(value)

    @field_validator("vendor", "device")
    @classmethod
    def _ids(cls, value: str | int | None, info) -> str | None:
        return None if value is None else hex4(value, info.field_name)

    @field_validator("driver")
    @classmethod
    def _driver(cls, value: str | None) -> str | None:
        return None if value is None else check_driver(value)

    @model_validator(mode="after")
    def _whole(self):
        self.selector()  # cross-field rules: not empty, vfs needs pf
        return self

    def selector(self) -> VfSelector:
        return VfSelector.parse(self.model_dump(exclude_none=True))


class LabHost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_RE)
    address: str
    port: int = Field(22, ge=1, le=65535)
    user: str = Field("root", pattern=r"^[a-z_][a-z0-9_.-]*$")
    identity_file: str | None = None
    known_hosts: str | None = None
    host_key_fingerprint: str | None = None
    lab_address: str | None = None
    sriov: dict[str, int] = Field(default_factory=dict)
    sriov_pool: list[SriovSelectorModel] = Field(default_factory=list)
    hugepages: int = Field(0, ge=0)
    iommu: bool = False
    governor: str | None = Field(None, pattern=r"^[a-z]+$")
    roles: list[str] = Field(default_factory=list)
    connect_timeout: float = Field(10.0, gt=0, le=300)
    testbed_home: str = "/var/lib/testbed"  # the host's image cache and per-run files (servers placed there)
    # nightly run (config/lab_nightly.py): as written here; merged with the lab-wide block by load_lab
    nightly: NightlySpec | None = None
    _nightly_schedule: NightlySchedule | None = PrivateAttr(default=None)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip()
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            pass
        if not re.match(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$", value):
            raise ValueError(f"{value!r} is neither an IP address nor a host name")
        return value

    @field_validator("lab_address")
    @classmethod
    def _lab_address(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address; expected the host's address on the experiment link") from None
        return value

    @field_validator("testbed_home")
    @classmethod
    def _home(cls, value: str) -> str:
        odd = any(c.isspace() or c in "\\'\"$`" for c in value)
        if not value.startswith("/") or not value.strip("/") or "/../" in f"{value}/" or odd:
            raise ValueError(f"{value!r}: expected an absolute path without '..', spaces or quotes, "
                             f"e.g. /var/lib/testbed")
        return value.rstrip("/")

    @field_validator("host_key_fingerprint")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        if value is not None and not FINGERPRINT_RE.match(value):
            raise ValueError("expected an OpenSSH SHA256 fingerprint like 'SHA256:' + 43 base64 characters "
                             "(ssh-keygen -lf KEY.pub)")
        return value

    @field_validator("sriov")
    @classmethod
    def _sriov(cls, value: dict[str, int]) -> dict[str, int]:
        for pf, n in value.items():
            if not IFACE_RE.match(str(pf)):
                raise ValueError(f"{pf!r} is not a network interface name")
            if not isinstance(n, int) or n < 0 or n > 256:
                raise ValueError(f"{pf}: VF count must be an integer 0..256")
        return value

    def vf_selectors(self) -> list[VfSelector]:
        return [s.selector() for s in self.sriov_pool]

    @property
    def nightly_schedule(self) -> NightlySchedule | None:
        """The effective nightly run (lab-wide block merged in, suites resolved), set by load_lab."""
        return self._nightly_schedule

    @property
    def identity_path(self) -> Path | None:
        return Path(os.path.expanduser(self.identity_file)) if self.identity_file else None

    @property
    def known_hosts_path(self) -> Path:
        return Path(os.path.expanduser(self.known_hosts or "~/.ssh/known_hosts"))


class LabModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hosts: list[LabHost] = Field(min_length=1)
    nightly: NightlySpec | None = None  # lab-wide default of every host's nightly block

    @model_validator(mode="after")
    def _unique(self):
        seen: set[str] = set()
        for h in self.hosts:
            if h.name in seen:
                raise ValueError(f"host name {h.name!r} appears twice; names must be unique")
            seen.add(h.name)
        return self


@dataclass
class Lab:
    path: Path
    model: LabModel

    @property
    def hosts(self) -> list[LabHost]:
        return self.model.hosts

    def names(self) -> list[str]:
        return [h.name for h in self.model.hosts]

    def host(self, name: str) -> LabHost:
        for h in self.model.hosts:
            if h.name == name:
                return h
        raise ConfigError(f"{self.path}: no host named {name!r} in the lab file; known hosts: "
                          f"{', '.join(self.names())}")

    def select(self, names: list[str] | None) -> list[LabHost]:
        return [self.host(n) for n in names] if names else list(self.model.hosts)


def load_lab(path: Path | str) -> Lab:
    """Read and validate a lab hosts file; every problem is one `FILE:LINE: field: message` line."""
    path = Path(path)
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping with a 'hosts' list at the top")
    try:
        model = LabModel.model_validate(data)
    except ValidationError as exc:
        raise_if(validation_errors(exc, str(path), lines))
        raise  # unreachable: validation_errors always has at least one line
    # relative identity / known_hosts paths are relative to the lab file
    for h in model.hosts:
        for attr in ("identity_file", "known_hosts"):
            value = getattr(h, attr)
            if value and not os.path.isabs(os.path.expanduser(value)):
                setattr(h, attr, str((path.parent / value).resolve()))
    _resolve_nightly(model, path, lines)
    return Lab(path, model)


def _resolve_nightly(model: LabModel, path: Path, lines: LineMap) -> None:
    errors: list[str] = []
    for i, h in enumerate(model.hosts):
        h._nightly_schedule, problems = resolve_nightly(model.nightly, h.nightly, i, path.parent, str(path), lines)
        errors += [p for p in problems if p not in errors]  # a lab-wide problem is reported once
    raise_if(errors)
