"""Linux guest images: a Debian cloud kernel plus an initramfs that testbed builds.

Three cached artifacts (orchestrator/images/cache.py keys each by its inputs):

* ``linux-kernel``: the kernel package that ``linux-image-cloud-amd64`` depends on, fetched
  with ``apt-get download`` into a temporary directory and unpacked with ``dpkg-deb -x``
  (never installed on the host); ``depmod -b`` is run over its module tree.
* ``linux-guest`` (one per workload): that kernel, and an uncompressed newc initramfs with
  busybox-static, the workload's binaries and libraries (images/rootfs.build_rootfs), the
  kernel modules the guest loads (dependencies from modules.dep, re-indexed with depmod)
  and /init rendered from guests/init.sh.j2.
* ``linux-probe``: the same kernel and a busybox-only initramfs whose init prints a marker
  and powers off, for the accelerator probe (orchestrator/virt/accel.py).

Per-launch files (the workload's rendered config and its command line) never touch the
cached image: `launch_initrd` writes them as a second cpio archive appended to a copy of
the cached one; the kernel unpacks concatenated archives in order.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .. import paths
from ..errors import MissingToolError, TestbedError
from ..digest import sha256_file
from .cache import Image, ImageCache
from .recipe import ImageRecipe
from .rootfs import build_rootfs, package_versions, recipe_inputs

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX = "/bin/busybox"
BUILDER_VERSION = 1
APT_TIMEOUT = 600
TOOL_TIMEOUT = 300
# virtio-net over PCI (the pc machine) or MMIO (the microvm machine). In Debian's cloud kernel
# virtio, virtio_pci, virtio_mmio and virtio_net are modules (CONFIG_VIRTIO_PCI=m,
# CONFIG_VIRTIO_MMIO=m, CONFIG_VIRTIO_NET=m); serial 8250, devtmpfs, initrd and unix/inet are built
# in. modprobe pulls virtio_ring, virtio_pci_*_dev, net_failover and failover. Both transports are
# loaded, so both machines boot one and the same initramfs (a transport without devices costs a
# module load, milliseconds).
GUEST_MODULES = ("virtio_mmio", "virtio_pci", "virtio_net")
CONFIG_PATH = "/testbed/config"  # where the workload sees its per-launch config inside the guest


def guests_dir() -> Path:
    return paths.project_root() / "guests"


def _templates() -> Environment:
    return Environment(loader=FileSystemLoader(str(guests_dir())), undefined=StrictUndefined,
                       keep_trailing_newline=True)


def _run(argv: list[str], *, timeout: float = TOOL_TIMEOUT, cwd: Path | None = None) -> str:
    if shutil.which(argv[0]) is None:
        raise MissingToolError(f"{argv[0]} is not installed; run ./setup.sh")
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"{' '.join(argv)} did not finish within {timeout:g} s") from exc
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:])
        raise TestbedError(f"{' '.join(argv)} failed ({proc.returncode}): {tail}")
    return proc.stdout


# --- cpio (newc) ---------------------------------------------------------------------------
def _cpio_header(name: str, mode: int, size: int, ino: int, nlink: int = 1, rdev: tuple[int, int] = (0, 0)) -> bytes:
    fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    return head + b"\0" * (-len(head) % 4)


class CpioWriter:
    """A deterministic newc archive (uid/gid 0, mtime 0), the format the kernel's initramfs reads."""

    def __init__(self, fh):
        self.fh = fh
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self.fh.write(_cpio_header(name, mode, len(data), self.ino, 2 if stat.S_ISDIR(mode) else 1, rdev))
        self.fh.write(data + b"\0" * (-len(data) % 4))
        self.ino += 1

    def directory(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | perm)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def tree(self, root: Path, prefix: str = "") -> None:
        """Every entry under root, sorted, parents first."""
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(root)
            for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
                p = Path(dirpath, name)
                arc = (Path(prefix) / rel_dir / name).as_posix().lstrip("/")
                st = p.lstat()
                if stat.S_ISLNK(st.st_mode):
                    self.symlink(arc, os.readlink(p))
                elif stat.S_ISREG(st.st_mode):
                    self.file(arc, p.read_bytes(), stat.S_IMODE(st.st_mode))
            for d in dirnames:
                p = Path(dirpath, d)
                if not p.is_symlink():
                    self.directory((Path(prefix) / rel_dir / d).as_posix().lstrip("/"), stat.S_IMODE(p.lstat().st_mode))

    def close(self) -> None:
        self._entry("TRAILER!!!", 0)


def write_cpio(out: Path, root: Path, *, console: bool = True) -> None:
    with open(out, "wb") as fh:
        w = CpioWriter(fh)
        if console:
            w.directory("dev")
            w.char_device("dev/console", 5, 1)
        w.tree(root)
        w.close()


# --- kernel --------------------------------------------------------------------------------
_KERNEL_PACKAGE: dict[str, tuple[str, str]] = {}


def _apt_lists_stamp() -> str:
    """Changes whenever `apt-get update` changes the package lists."""
    import hashlib

    h = hashlib.sha256()
    try:
        for entry in sorted(os.scandir("/var/lib/apt/lists"), key=lambda e: e.name):
            if entry.is_file():
                st = entry.stat()
                h.update(f"{entry.name}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
    except OSError:
        return "none"
    return h.hexdigest()


def kernel_package() -> tuple[str, str]:
    """(name, candidate version) of the image package the cloud meta package depends on.

    apt-cache takes seconds on a loaded host, so the answer is remembered per process and on
    disk, keyed by the state of apt's package lists."""
    import json

    stamp = _apt_lists_stamp()
    if stamp in _KERNEL_PACKAGE:
        return _KERNEL_PACKAGE[stamp]
    memo = paths.cache_dir() / "linux-kernel-package.json"
    try:
        saved = json.loads(memo.read_text())
        if saved.get("stamp") == stamp and stamp != "none":
            _KERNEL_PACKAGE[stamp] = (saved["name"], saved["version"])
            return _KERNEL_PACKAGE[stamp]
    except (OSError, ValueError, KeyError):
        pass
    name, version = _kernel_package_from_apt()
    _KERNEL_PACKAGE[stamp] = (name, version)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"stamp": stamp, "name": name, "version": version}))
        tmp.rename(memo)
    except OSError:
        pass
    return name, version


def _kernel_package_from_apt() -> tuple[str, str]:
    out = _run(["apt-cache", "depends", KERNEL_META_PACKAGE], timeout=60)
    names = [line.split(":", 1)[1].strip() for line in out.splitlines()
             if line.strip().startswith("Depends:") and "linux-image-" in line]
    if not names:
        raise MissingToolError(f"apt-cache knows no kernel behind {KERNEL_META_PACKAGE}; run apt-get update")
    name = names[0]
    policy = _run(["apt-cache", "policy", name], timeout=60)
    version = next((l.split(":", 1)[1].strip() for l in policy.splitlines() if l.strip().startswith("Candidate:")), "")
    if not version or version == "(none)":
        raise MissingToolError(f"no candidate version for {name}; run apt-get update")
    return name, version


def kernel_image(cache: ImageCache) -> Image:
    name, version = kernel_package()

    def build(dest: Path) -> dict:
        with tempfile.TemporaryDirectory(prefix="testbed-kernel-") as tmp:
            os.chmod(tmp, 0o755)  # apt's sandbox user must be able to write the .deb
            _run(["apt-get", "download", f"{name}={version}"], cwd=Path(tmp), timeout=APT_TIMEOUT)
            debs = list(Path(tmp).glob("*.deb"))
            if len(debs) != 1:
                raise TestbedError(f"apt-get download {name} produced {len(debs)} packages")
            _run(["dpkg-deb", "-x", str(debs[0]), str(dest / "pkg")])
        vmlinuz = next((dest / "pkg" / "boot").glob("vmlinuz-*"))
        release = vmlinuz.name.removeprefix("vmlinuz-")
        shutil.move(str(vmlinuz), dest / "vmlinuz")
        shutil.move(str(next((dest / "pkg" / "boot").glob("config-*"))), dest / "config")
        shutil.move(str(dest / "pkg" / "lib" / "modules"), dest / "modules")
        shutil.rmtree(dest / "pkg")
        # depmod -b BASE expects BASE/lib/modules/RELEASE.
        (dest / "depmod" / "lib").mkdir(parents=True)
        (dest / "depmod" / "lib" / "modules").symlink_to("../../modules")
        _run(["depmod", "-b", str(dest / "depmod"), release])
        (dest / "release").write_text(release + "\n")
        (dest / "package").write_text(f"{name} {version}\n")
        return {"kernel": "vmlinuz", "config": "config", "modules": "modules", "release": "release"}

    return cache.ensure("linux-kernel", "cloud-amd64", {"package": name, "version": version,
                                                         "builder": BUILDER_VERSION}, build)


def kernel_release(kernel: Image) -> str:
    return kernel.file("release").read_text().strip()


def module_closure(modules_dir: Path, names: tuple[str, ...]) -> list[str]:
    """Relative paths (as in modules.dep) of `names` and everything they depend on."""
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {Path(m).name.split(".ko")[0].replace("-", "_"): m for m in deps}
    builtin = {Path(l).name.split(".ko")[0].replace("-", "_")
               for l in (modules_dir / "modules.builtin").read_text().splitlines()} \
        if (modules_dir / "modules.builtin").exists() else set()
    out: list[str] = []
    for n in names:
        key = n.replace("-", "_")
        if key in builtin:
            continue
        if key not in by_name:
            raise TestbedError(f"kernel module {n} is neither built in nor in modules.dep")
        for m in [by_name[key], *deps[by_name[key]]]:
            if m not in out:
                out.append(m)
    return out


# --- guest images --------------------------------------------------------------------------
def _install_busybox(root: Path) -> None:
    bindir = root / "usr" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, bindir / "busybox")
    applets = _run([BUSYBOX, "--list"], timeout=20).split()
    for applet in applets:
        for d in ("usr/bin", "usr/sbin"):
            if (root / d / applet).exists() or (root / d / applet).is_symlink():
                break
        else:
            (bindir / applet).symlink_to("busybox")


def _render_init(root: Path, **values) -> None:
    text = _templates().get_template("init.sh.j2").render(**values)
    (root / "init").write_text(text)
    os.chmod(root / "init", 0o755)


def _template_digest() -> str:
    return sha256_file(guests_dir() / "init.sh.j2")


def guest_image(name: str, recipe: ImageRecipe, cache: ImageCache,
                modules: tuple[str, ...] = GUEST_MODULES) -> Image:
    """A Linux guest (kernel + initramfs) holding `recipe`'s files; `name` is the workload kind."""
    kernel = kernel_image(cache)
    release = kernel_release(kernel)
    inputs = {"kernel": kernel.digest, "release": release, "rootfs": recipe_inputs(recipe),
              "busybox": package_versions(("busybox-static",)), "modules": list(modules),
              "init": _template_digest(), "builder": BUILDER_VERSION}

    def build(dest: Path) -> dict:
        root = dest / "root"
        build_rootfs(root, recipe)
        _install_busybox(root)
        src = kernel.file("modules") / release
        target = root / "usr" / "lib" / "modules" / release
        for rel in module_closure(src, modules):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, target / rel)
        for f in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            if (src / f).exists():
                shutil.copy2(src / f, target / f)
        _run(["depmod", "-b", str(root), release])
        (root / "testbed").mkdir()
        _render_init(root, role="guest", modules=list(modules), hostname=name)
        write_cpio(dest / "initrd.cpio", root)
        shutil.rmtree(root)
        shutil.copy2(kernel.file("kernel"), dest / "vmlinuz")
        (dest / "release").write_text(release + "\n")
        return {"kernel": "vmlinuz", "initrd": "initrd.cpio", "release": "release"}

    return cache.ensure("linux-guest", name, inputs, build)


def probe_image(cache: ImageCache) -> Image:
    kernel = kernel_image(cache)
    recipe = {"kernel": kernel.digest, "busybox": package_versions(("busybox-static",)),
              "init": _template_digest(), "builder": BUILDER_VERSION}

    def build(dest: Path) -> dict:
        root = dest / "root"
        for d in ("proc", "sys", "usr/sbin"):
            (root / d).mkdir(parents=True)
        for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin")):
            (root / link).symlink_to(target)
        _install_busybox(root)
        _render_init(root, role="probe", modules=[], hostname="probe")
        write_cpio(dest / "initrd.cpio", root)
        shutil.rmtree(root)
        shutil.copy2(kernel.file("kernel"), dest / "vmlinuz")
        return {"kernel": "vmlinuz", "initrd": "initrd.cpio"}

    return cache.ensure("linux-probe", "busybox", recipe, build)


def launch_initrd(base_initrd: Path, out: Path, config_dir: Path, argv: list[str]) -> Path:
    """Copy the cached initramfs and append a second archive with this launch's files:
    /testbed/config/... (the workload's rendered config) and /testbed/argv (its command line)."""
    with open(out, "wb") as fh:
        with open(base_initrd, "rb") as src:
            shutil.copyfileobj(src, fh, 1 << 20)
        _launch_archive(fh, config_dir, argv)
    return out


def launch_archive(out: Path, config_dir: Path, argv: list[str]) -> Path:
    """Only the launch's own archive (what launch_initrd appends): a lab host appends it to its copy
    of the cached initramfs, so a launch sends kilobytes, not the image."""
    with open(out, "wb") as fh:
        _launch_archive(fh, config_dir, argv)
    return out


def _launch_archive(fh, config_dir: Path, argv: list[str]) -> None:
    w = CpioWriter(fh)
    w.ino = 1 << 20  # distinct inode numbers from the first archive
    w.directory("testbed")
    w.file("testbed/argv", (shlex.join(argv) + "\n").encode())
    w.directory("testbed/config")
    w.tree(config_dir, prefix="testbed/config")
    w.close()

