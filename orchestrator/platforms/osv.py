"""osv: an OSv unikernel image the user built with OSv's own tools, booted under QEMU via libvirt.

The image (`testbed images import osv DIR`) is OSv's `loader-stripped.elf` and `usr.img` (the
application plus a read-only rofs or a ZFS root). Two ways to boot it:

* `boot: kernel` (default): direct kernel boot of loader-stripped.elf with the command line in
  `<cmdline>`; usr.img is still attached as virtio-blk for the root file system. Reaches the
  first response sooner than disk boot (no BIOS, no boot loader decompressing the kernel).
* `boot: disk`: the BIOS boots usr.img, whose command line OSv reads from the disk at byte 512
  (where OSv's `scripts/imgedit.py setargs` writes it). testbed writes its own command line
  there, into the launch's overlay: the imported image is never changed.

Either way the command line is `--ip=eth0,ADDR,MASK --defaultgw=GW [osv_options] APP`, with the
address from the lab network (without --ip OSv would wait a long time for DHCP). APP is the
`cmdline` option or the default for the workload (DEFAULT_CMDLINES; these assume an image built
from Debian's binaries with OSv's manifest_from_host.sh, see images/osv/README.md).

Console: `OSv v...`, `eth0: ADDR`, `Booted up in N ms` (kernel_up; N is the guest's own figure,
unavailable under TCG where OSv prints 0.00), `Cmdline: ...`, then the application's output
(init_started). See virt/unikernel_console.py.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ..errors import ConfigError
from ..images.cache import Image
from ..virt.domain import DomainSpec
from ..virt.unikernel_console import OsvConsole
from ..virt.unikernel_domain import UnikernelSpec
from ..workloads.base import Workload
from .unikernel_common import (
    UnikernelOptions,
    UnikernelPlatform,
    disk_for,
    render_default_cmdline,
    write_into_disk,
)

CMDLINE_OFFSET = 512  # where OSv's boot loader reads the command line from the disk
CMDLINE_MAX = 0x3F * 512 - 1  # it reads 63 sectors; the string is NUL-terminated
OSV_OPTION_WORD = "--"

# Debian's binaries as OSv's `dl=linux scripts/manifest_from_host.sh -w BINARY` lays them out: the
# program at /<name> with its libraries, started by the Linux dynamic linker (Debian's servers
# are linked against glibc symbols OSv's built-in linker does not provide; see
# images/osv/README.md). Redis takes its whole configuration on the command line; nginx needs the
# configuration the README puts under /nginx-conf/ (one process: OSv has no fork()). memcached,
# run as root (OSv's getuid() is always 0), drops to its -u user with setgroups/setgid/setuid,
# which OSv does not implement as system calls: the README's image carries a three-function shim
# that the linker preloads (without it memcached stops with "failed to drop supplementary groups").
LINUX_LD = "/lib64/ld-linux-x86-64.so.2"
DEFAULT_CMDLINES = {
    "redis": (f"{LINUX_LD} /redis-server --bind 0.0.0.0 --port {{port}} --protected-mode no --save \"\" "
              "--appendonly no --maxmemory {maxmemory_mb}mb"),
    "memcached": (f"{LINUX_LD} --preload /osv-setid.so /memcached -u root -l 0.0.0.0 -p {{port}} -U 0 "
                  "-m {memory_mb} -t {threads} -c 1024"),
    "nginx": f"{LINUX_LD} /nginx -p /nginx-conf/ -c /nginx-conf/nginx.conf -e stderr",
}


class OsvOptions(UnikernelOptions):
    boot: Literal["kernel", "disk"] = "kernel"
    osv_options: list[str] = Field(default_factory=list)  # more loader options, e.g. ["--rootfs=zfs"] or ["--verbose"]

    @field_validator("osv_options")
    @classmethod
    def _options(cls, v: list[str]) -> list[str]:
        for opt in v:
            if not opt.startswith(OSV_OPTION_WORD) or any(c.isspace() for c in opt):
                raise ValueError(f"osv_options: {opt!r} must be one word starting with --")
            if opt.split("=", 1)[0] in ("--ip", "--defaultgw"):
                raise ValueError(f"osv_options: {opt.split('=', 1)[0]} is set by testbed from the lab network")
        return v


def osv_cmdline(app: str, address, netmask, gateway, options: list[str] | None = None, iface: str = "eth0") -> str:
    """OSv's command line: static address for `iface`, default route, loader options, then the app."""
    addr = ipaddress.IPv4Address(str(address))
    mask = ipaddress.IPv4Address(str(netmask))  # dotted quad, as OSv's --ip wants
    args = [f"--ip={iface},{addr},{mask}"]
    if gateway is not None:
        args.append(f"--defaultgw={ipaddress.IPv4Address(str(gateway))}")
    args += options or []
    app = app.strip()
    if not app:
        raise ConfigError("OSv: the application command line is empty")
    if "\0" in app or "\n" in app:
        raise ConfigError("OSv: the application command line must be one line")
    line = " ".join(args + [app])
    if len(line.encode()) > CMDLINE_MAX:
        raise ConfigError(f"OSv: command line of {len(line.encode())} bytes exceeds OSv's {CMDLINE_MAX}")
    return line


def osv_quote(arg: str) -> str:
    """One argument for OSv's command-line parser, which knows double quotes only."""
    if arg and not any(c.isspace() or c in "\"'\\;&" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_cmdline(workload: Workload) -> str:
    return render_default_cmdline("osv", DEFAULT_CMDLINES, workload, osv_quote)


class Osv(UnikernelPlatform[OsvOptions], kind="osv"):
    image_kind = "osv"
    Options = OsvOptions

    def default_cmdline(self, workload: Workload) -> str:
        return default_cmdline(workload)

    def boot_spec(self, image: Image, workload: Workload, attachment, base: DomainSpec, workdir: Path):
        o = self.options
        app = self.app_cmdline(workload)
        line = osv_cmdline(app, attachment.address, attachment.netmask, attachment.gateway, o.osv_options)
        disk = disk_for(self.site, image, "disk", workdir)
        if o.boot == "kernel":
            base.kernel, base.cmdline = self.image_file(image, "kernel"), line
        else:
            write_into_disk(self.site, disk.path, CMDLINE_OFFSET, line.encode() + b"\0", workdir / "cmdline.bin")
        spec = UnikernelSpec(base, boot=o.boot, disks=[disk])
        return spec, OsvConsole(), {"osv_cmdline": line, "app_cmdline": app}

    def provenance(self) -> dict:
        return {**super().provenance(), "osv_boot": self.options.boot}
