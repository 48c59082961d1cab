"""rumprun: a baked rumprun unikernel (hw_virtio), booted under QEMU via libvirt.

The image (`testbed images import rumprun APP.bin [--blk data.iso:/data ...]`) is the multiboot
ELF `rumprun-bake hw_virtio APP.bin APP` wrote, plus optional data disks (e.g. the data.iso
rumprun-packages builds with nginx's configuration). Booted with direct kernel boot; the
kernel command line is rumprun's JSON configuration:

    {"cmdline": "nginx -c /data/conf/nginx.conf",
     "net": {"if": "vioif0", "type": "inet", "method": "static", "addr": A, "mask": "24", "gw": G},
     "blk": {"source": "dev", "path": "/dev/ld0a", "fstype": "blk", "mountpoint": "/data"},
     "env": "K=V", "env": ...}

`blk` and `env` repeat as keys (rumprun's own launcher writes them that way), so the object is
written pair by pair, each key and value encoded by json. `cmdline` is split on whitespace into
argv (argv[0] included): arguments cannot contain spaces.

No VGA device: with one, rumprun writes its console to VGA memory; without, to COM1, which the
serial file captures. When main() returns rumprun prints `halted` and QEMU keeps running:
the instance sees it on the console and is no longer alive; the runner's teardown destroys
the domain (virt/unikernel_console.py).
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

from pydantic import Field, field_validator

from ..errors import ConfigError
from ..images.cache import Image
from ..images.imported import layout
from ..virt.domain import DomainSpec
from ..virt.unikernel_console import RumprunConsole
from ..virt.unikernel_domain import UnikernelSpec
from ..workloads.base import Workload
from .unikernel_common import UnikernelOptions, UnikernelPlatform, disk_for, render_default_cmdline

ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")

# argv[0] is the program's name as baked. redis: settings as arguments (no config file on a data
# disk needed); redis >= 3.2 refuses the lab client in protected mode, so it is off (3.0.x, as
# rumprun-packages pins, does not know the option: set cmdline). memcached: rumprun's scheduler
# is cooperative and memcached's LRU maintainer thread polls without blocking, so it would hold
# the only CPU forever (seen: no answer, every stack in lru_maintainer_thread); memcached serves
# without it. nginx: rumprun-packages' data.iso layout.
DEFAULT_CMDLINES = {
    "redis": "redis-server --bind 0.0.0.0 --port {port} --protected-mode no --appendonly no "
             "--maxmemory {maxmemory_mb}mb",
    "memcached": "memcached -u root -l 0.0.0.0 -p {port} -U 0 -m {memory_mb} -t {threads} -c 1024 "
                 "-o no_lru_maintainer",
    "nginx": "nginx -c /data/conf/nginx.conf",
}


class RumprunOptions(UnikernelOptions):
    env: dict[str, str] = Field(default_factory=dict)  # environment of the application ("env": "K=V" each)
    fstype: str = "blk"  # for every imported data disk
    iface: str = "vioif0"  # vioif0 for virtio; the VF driver's name (e.g. ixg0) for nic: sriov

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not ENV.match(f"{k}={val}"):
                raise ValueError(f"env: {k}={val!r}: a name and a value without spaces")
        return v

    @field_validator("iface", "fstype")
    @classmethod
    def _word(cls, v: str) -> str:
        if not re.match(r"^[a-z0-9]+$", v):
            raise ValueError(f"{v!r}: lower-case letters and digits only")
        return v


def json_object(pairs: list[tuple[str, object]]) -> str:
    """A JSON object from (key, value) pairs, keys allowed to repeat; every part encoded by json."""
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v, sort_keys=False)}" for k, v in pairs) + "}"


def rumprun_config(cmdline: str, address, prefixlen: int, gateway=None, *, iface: str = "vioif0",
                   blks: list[tuple[str, str, str]] | None = None, env: dict[str, str] | None = None) -> str:
    """rumprun's JSON configuration. blks: (device path, fstype, mountpoint) each."""
    argv = cmdline.split()
    if not argv:
        raise ConfigError("rumprun: the application command line is empty")
    net = {"if": iface, "type": "inet", "method": "static", "addr": str(ipaddress.IPv4Address(str(address))),
           "mask": str(int(prefixlen))}
    if gateway is not None:
        net["gw"] = str(ipaddress.IPv4Address(str(gateway)))
    pairs: list[tuple[str, object]] = [("cmdline", " ".join(argv)), ("net", net)]
    for path, fstype, mountpoint in blks or []:
        pairs.append(("blk", {"source": "dev", "path": path, "fstype": fstype, "mountpoint": mountpoint}))
    for k, v in (env or {}).items():
        pairs.append(("env", f"{k}={v}"))
    return json_object(pairs)


def rumprun_arg(a: str) -> str:
    """rumprun splits argv on whitespace and has no quoting: an argument must be one word."""
    if not a or any(c.isspace() for c in a):
        raise ConfigError(f"rumprun: argument {a!r} is empty or has spaces; rumprun splits argv on whitespace")
    return a


def default_cmdline(workload: Workload) -> str:
    return render_default_cmdline("rumprun", DEFAULT_CMDLINES, workload, rumprun_arg)


class Rumprun(UnikernelPlatform[RumprunOptions], kind="rumprun"):
    image_kind = "rumprun"
    Options = RumprunOptions

    def default_cmdline(self, workload: Workload) -> str:
        return default_cmdline(workload)

    def boot_spec(self, image: Image, workload: Workload, attachment, base: DomainSpec, workdir: Path):
        o = self.options
        app = self.app_cmdline(workload)
        mountpoints = layout(image).get("mountpoints", {})
        disks, blks = [], []
        for i, role in enumerate(sorted(mountpoints, key=lambda r: int(r[3:]))):
            disks.append(disk_for(self.site, image, role, workdir))
            blks.append((f"/dev/ld{i}a", o.fstype, mountpoints[role]))  # virtio-blk disk i is ld<i>
        config = rumprun_config(app, attachment.address, attachment.prefixlen, attachment.gateway, iface=o.iface,
                                blks=blks, env=o.env)
        base.kernel, base.cmdline = self.image_file(image, "kernel"), config
        spec = UnikernelSpec(base, boot="kernel", disks=disks)
        return spec, RumprunConsole(), {"rumprun_config": config, "app_cmdline": app}
