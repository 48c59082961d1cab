"""Platform registry: kind -> class. Adding a platform is one module and one line here."""

from .base import Instance, Platform, PlatformOptions, Timeline
from .gvisor import Gvisor
from .native import Native
from .linux_vm import LinuxVm
from .oci_runtime import Runc

PLATFORMS: dict[str, type[Platform]] = {p.kind: p for p in (Native, Runc, Gvisor, LinuxVm)}
from .osv import Osv; from .rumprun import Rumprun; PLATFORMS.update({p.kind: p for p in (Osv, Rumprun)})  # noqa: E402,E702
