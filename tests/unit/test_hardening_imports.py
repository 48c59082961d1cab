"""`testbed images import` refuses images that cannot boot, warns about an OSv image without its
application, records what the image carries (its own app version, each file's sha256), and
`testbed images remove` takes imports out again."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from orchestrator.errors import TestbedError as Refused
from orchestrator.images.cache import ImageCache
from orchestrator.images.imported import (
    ImageMissingError,
    find_imported,
    import_image,
    imported_app_version,
    remove_images,
    scan_app_versions,
)

from helpers import multiboot_elf, osv_usr_img, run_cli


@pytest.fixture
def cache_env(tmp_path) -> dict:
    return {"TESTBED_CACHE": str(tmp_path / "cli-cache")}


@pytest.fixture
def cache(cache_env) -> ImageCache:
    return ImageCache(Path(cache_env["TESTBED_CACHE"]) / "images")


def osv_build(d: Path, manifest: str | None = "/redis-server: /usr/bin/redis-server\n", disk: bytes | None = None,
              kernel_extra: bytes = b"") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    multiboot_elf(d / "loader-stripped.elf", kernel_extra)
    if disk is None:
        osv_usr_img(d / "usr.img")
    else:
        (d / "usr.img").write_bytes(disk)
    if manifest is not None:
        (d / "usr.manifest").write_text(manifest)
    return d


def one_error_line(res) -> str:
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("testbed: error: "), res.stderr
    return lines[0]


def test_zero_byte_usr_img_is_refused(tmp_path, cache_env, cache):
    d = osv_build(tmp_path / "osv", disk=b"")
    line = one_error_line(run_cli("images", "import", "osv", str(d), "--name", "redis", env=cache_env))
    assert "usr.img is empty" in line and "rebuild it" in line
    assert not list(cache.root.glob("osv-*"))  # nothing imported


def test_disk_without_osv_boot_sector_is_refused(tmp_path, cache_env):
    d = osv_build(tmp_path / "osv", disk=b"\0" * (1 << 20))
    line = one_error_line(run_cli("images", "import", "osv", str(d), env=cache_env))
    assert "without OSv's boot sector" in line


def test_raw_and_qcow2_usr_img_with_the_right_shape_import(tmp_path, cache):
    d = osv_build(tmp_path / "osv")
    assert import_image("osv", [d], name="redis", cache=cache).app_versions == {}
    raw = tmp_path / "raw"
    osv_build(raw)
    (raw / "usr.img").unlink()
    osv_usr_img(raw / "usr.img", fmt="raw")
    img = import_image("osv", [raw], name="redis-raw", cache=cache)
    assert find_imported("osv", "redis-raw", cache).meta["formats"] == {"disk": "raw"} and img.digest


def test_any_elf_is_not_a_rumprun_unikernel(tmp_path, cache_env):
    osv_loader = tmp_path / "loader-stripped.elf"  # an ELF executable without a multiboot header
    osv_loader.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little") + bytes(4000))
    line = one_error_line(run_cli("images", "import", "rumprun", str(osv_loader), env=cache_env))
    assert "without a multiboot header" in line and "rumprun-bake" in line
    line = one_error_line(run_cli("images", "import", "rumprun", "/bin/true", env=cache_env))
    assert "multiboot" in line


def test_a_baked_image_imports_and_records_its_own_app_version(tmp_path, cache):
    app = multiboot_elf(tmp_path / "nginx.bin", b"\0nginx: [emerg] %s\0nginx/1.21.6\0Server: nginx\0")
    img = import_image("rumprun", [app], cache=cache)
    assert img.app_versions == {"nginx": "1.21.6"}
    found = find_imported("rumprun", "nginx", cache)
    assert imported_app_version(found) == "1.21.6"
    assert imported_app_version(found, "nginx") == "1.21.6" and imported_app_version(found, "memcached") == "unknown"
    prov = found.provenance()
    assert prov["image_digest"] == img.digest
    assert prov["image_file_sha256"] == {"kernel": hashlib.sha256(app.read_bytes()).hexdigest()}
    assert prov["image_app_versions"] == {"nginx": "1.21.6"}


def test_redis_version_is_the_release_not_a_commands_since_version(tmp_path):
    body = (b"\0redis_version:%s\0Redis server v=%s sha=%s:%d\0" + b"\0".join(
        v.encode() for v in ("2.6.0", "6.2.0", "7.0.3", "7.0.0", "7.0.15", "5.0.0")) +
        b"\0NetBSD\0" + b"7.99.34\0" + b"3.0.11\0")  # a rump kernel's osrelease, libssl: not redis
    f = multiboot_elf(tmp_path / "redis.bin", body)
    assert scan_app_versions([f]) == {"redis-server": "7.0.15"}


def test_redis_pattern_needs_redis_in_the_image(tmp_path):
    f = multiboot_elf(tmp_path / "x.bin", b"\0" + b"6.0.16\0")  # bare versions, but no redis marker
    assert scan_app_versions([f]) == {}


def test_the_real_debian_binaries_are_read_if_installed():
    have = {b: p for b, p in (("redis-server", "/usr/bin/redis-server"), ("nginx", "/usr/sbin/nginx"),
                              ("memcached", "/usr/bin/memcached")) if os.path.exists(p)}
    if not have:
        pytest.skip("none of redis-server, nginx, memcached installed")
    for binary, path in have.items():
        version = scan_app_versions([Path(path)]).get(binary)
        assert version and version[0].isdigit(), (binary, version)


def test_app_version_is_unknown_for_imports_that_predate_the_scan(tmp_path, cache):
    app = multiboot_elf(tmp_path / "memcached.bin", b"\0memcached 1.6.18\0")
    img = import_image("rumprun", [app], cache=cache)
    img.app_versions, img.meta = {}, {}
    (img.file("meta")).write_text("{}")  # as an older testbed wrote it
    assert imported_app_version(img) == "unknown"


def test_osv_manifest_without_the_workloads_binary_warns(tmp_path, cache_env):
    d = osv_build(tmp_path / "osv", manifest="# base image only\n/libenviron.so: libenviron.so\n/etc/hosts: x\n")
    res = run_cli("images", "import", "osv", str(d), "--name", "redis", env=cache_env)
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("testbed: warning: ")]
    assert len(warnings) == 1 and "lists no redis-server" in warnings[0] and "append.manifest" in warnings[0]


def test_osv_manifest_with_the_binary_is_quiet_and_an_absent_one_is_said(tmp_path, cache_env):
    d = osv_build(tmp_path / "ok", manifest="[manifest]\n/redis-server: /usr/bin/redis-server\n")
    res = run_cli("images", "import", "osv", str(d), "--name", "it-redis", env=cache_env)
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr
    d = osv_build(tmp_path / "bare", manifest=None)
    res = run_cli("images", "import", "osv", str(d), "--name", "nginx", env=cache_env)
    assert res.returncode == 0 and "could not check that the image carries nginx" in res.stderr, res.stderr


def test_images_remove_by_name_removes_every_import_of_it(tmp_path, cache_env, cache):
    a = osv_build(tmp_path / "a")
    b = osv_build(tmp_path / "b", kernel_extra=b"second build")
    first = import_image("osv", [a], name="redis", cache=cache)
    second = import_image("osv", [b], name="redis", cache=cache)
    assert first.digest != second.digest
    res = run_cli("images", "remove", "redis", env=cache_env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("removed osv image redis") == 2
    assert not first.path.exists() and not second.path.exists()
    with pytest.raises(ImageMissingError, match="no osv image named 'redis'"):
        find_imported("osv", "redis", cache)  # not silently the older import


def test_images_remove_by_digest_and_its_mistakes(tmp_path, cache_env, cache):
    img = import_image("osv", [osv_build(tmp_path / "a")], name="redis", cache=cache)
    import_image("rumprun", [multiboot_elf(tmp_path / "redis.bin")], name="redis", cache=cache)
    line = one_error_line(run_cli("images", "remove", "redis", env=cache_env))
    assert "kinds osv, rumprun" in line and "--kind" in line
    line = one_error_line(run_cli("images", "remove", "nothing-like-it", env=cache_env))
    assert "no image named 'nothing-like-it'" in line
    line = one_error_line(run_cli("images", "remove", "abc", env=cache_env))  # too short to be a digest
    assert "no image named 'abc'" in line
    res = run_cli("images", "remove", f"sha256:{img.digest[:12]}", env=cache_env)
    assert res.returncode == 0 and not img.path.exists(), res.stderr
    res = run_cli("images", "remove", "redis", "--kind", "rumprun", env=cache_env)
    assert res.returncode == 0 and "removed rumprun image redis" in res.stdout


def test_remove_refuses_an_entry_that_points_out_of_the_cache(tmp_path, cache):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "image.json").write_text('{"digest": "ab' + "0" * 62 + '", "recipe": {}}')
    (cache.root / "rootfs-x-0123456789abcdef").symlink_to(outside)
    with pytest.raises(Refused, match="outside the image cache"):
        remove_images("rootfs-x-0123456789abcdef", cache=cache)
    assert (outside / "image.json").exists()
