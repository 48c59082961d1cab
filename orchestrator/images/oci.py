"""OCI bundles: a cached read-only rootfs per workload plus a config.json per launch.

Extra mounts (e.g. a host tmpfs directory at HOST_TMPFS_DESTINATION) are passed to oci_config by the
platform (OciPlatform.mounts()).
"""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Iterable

from .cache import Image, ImageCache
from .recipe import ImageRecipe
from .rootfs import build_rootfs, recipe_inputs

CONFIG_MOUNT = "/etc/testbed"
# Where a platform with host_tmpfs: true mounts a directory of a host tmpfs, and the file it puts
# there so a program inside can tell that directory from one of the instance's own file systems.
HOST_TMPFS_DESTINATION = "/mnt/host-tmpfs"
HOST_TMPFS_MARKER = ".testbed-host-tmpfs"

def host_tmpfs_mount(source: str, destination: str = HOST_TMPFS_DESTINATION) -> dict:
    """A bind mount of a host directory (on the host's tmpfs) into the container, read-write."""
    return {"destination": destination, "type": "bind", "source": source, "options": ["rbind", "rw", "nosuid", "nodev"]}

DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]


def rootfs_image(name: str, recipe: ImageRecipe, cache: ImageCache) -> Image:
    """A workload's rootfs (shared read-only by every container of the run), cached by recipe."""

    def build(dest: Path) -> dict:
        build_rootfs(dest / "rootfs", recipe)
        return {"rootfs": "rootfs"}

    return cache.ensure("rootfs", name, recipe_inputs(recipe), build)


def oci_config(
    *,
    rootfs: str,
    args: list[str],
    hostname: str,
    netns_path: str,
    config_dir: Path,
    cpus: list[int] | None = None,
    mounts: Iterable[dict] = (),
) -> dict:
    """A runtime-spec 1.0 config: own pid/ipc/uts/mount namespaces, the lab network namespace by path;
    `mounts` come after testbed's own."""
    # As many descriptors as the host allows us (a container cannot raise its hard limit).
    nofile = min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    spec: dict = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"],
            "cwd": "/",
            "capabilities": dict.fromkeys(("bounding", "effective", "permitted", "inheritable"), DEFAULT_CAPS),
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]},
            {"destination": CONFIG_MOUNT, "type": "bind", "source": str(config_dir), "options": ["rbind", "rw"]},
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "network", "path": netns_path},
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
    spec["mounts"] += list(mounts)
    if cpus:
        spec["linux"]["resources"] = {"cpu": {"cpus": ",".join(str(c) for c in cpus)}}
    return spec


def write_bundle(bundle: Path, spec: dict) -> Path:
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(spec, indent=1))
    return bundle
