"""The image cache verifies an entry before use: a changed entry is rebuilt (built images) or
refused with one line (imports), never used with the old digest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator import errors
from orchestrator.images.cache import (
    MANIFEST_FILE,
    ImageCache,
    ImageChangedError,
    stat_manifest,
    tree_digest,
    verify_entry,
)
from orchestrator.images.imported import find_imported, import_image

from helpers import multiboot_elf, osv_usr_img


@pytest.fixture
def cache(tmp_path) -> ImageCache:
    return ImageCache(tmp_path / "cache")


def builder(calls: list):
    def build(dest: Path) -> dict:
        calls.append(dest)
        (dest / "rootfs" / "usr" / "bin").mkdir(parents=True)
        (dest / "rootfs" / "usr" / "bin" / "redis-server").write_bytes(b"\x7fELF" + b"r" * 5000)
        (dest / "rootfs" / "etc").mkdir()
        (dest / "rootfs" / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
        (dest / "rootfs" / "lib").symlink_to("usr/lib")
        return {"rootfs": "rootfs"}
    return build


def test_unchanged_entry_is_a_hit_and_checked_by_stat_only(cache, monkeypatch):
    calls: list = []
    first = cache.ensure("rootfs", "redis", {"v": 1}, builder(calls))
    assert not first.cache_hit and (first.path / MANIFEST_FILE).is_file()
    import orchestrator.images.cache as cache_mod

    def no_hashing(*a, **k):
        raise AssertionError("a full hash on an unchanged entry")
    monkeypatch.setattr(cache_mod, "tree_digest", no_hashing)
    again = cache.ensure("rootfs", "redis", {"v": 1}, builder(calls))
    assert again.cache_hit and again.digest == first.digest and len(calls) == 1


def test_appended_bytes_make_the_entry_rebuilt_with_the_true_digest(cache):
    calls: list = []
    first = cache.ensure("rootfs", "redis", {"v": 1}, builder(calls))
    binary = first.path / "rootfs" / "usr" / "bin" / "redis-server"
    with open(binary, "ab") as fh:
        fh.write(b"tampered")
    again = cache.ensure("rootfs", "redis", {"v": 1}, builder(calls))
    assert not again.cache_hit and len(calls) == 2
    assert "rootfs/usr/bin/redis-server changed size" in again.rebuilt_reason
    assert again.digest == first.digest  # rebuilt from the recipe: the same bytes as before the edit
    assert binary.read_bytes().endswith(b"r")


def test_same_size_edit_with_mtime_restored_is_still_noticed(cache):
    calls: list = []
    first = cache.ensure("rootfs", "redis", {"v": 1}, builder(calls))
    passwd = first.path / "rootfs" / "etc" / "passwd"
    st = passwd.stat()
    passwd.write_text("toor:x:0:0::/:/bin/sh\n")  # same length
    os.utime(passwd, ns=(st.st_atime_ns, st.st_mtime_ns))  # ctime cannot be set back
    with pytest.raises(ImageChangedError, match="rootfs/etc/passwd was modified"):
        verify_entry(first.path, first.digest)


def test_added_removed_and_relinked_files_are_noticed(cache):
    calls: list = []
    img = cache.ensure("rootfs", "redis", {"v": 1}, builder(calls))
    (img.path / "rootfs" / "extra").write_text("x")
    with pytest.raises(ImageChangedError, match="rootfs/extra was added"):
        verify_entry(img.path, img.digest)
    (img.path / "rootfs" / "extra").unlink()
    verify_entry(img.path, img.digest)  # back as it was: the full hash agrees and the manifest is refreshed
    (img.path / "rootfs" / "etc" / "passwd").unlink()
    with pytest.raises(ImageChangedError, match="rootfs/etc/passwd is missing"):
        verify_entry(img.path, img.digest)
    img = cache.ensure("rootfs", "redis", {"v": 1}, builder(calls))
    (img.path / "rootfs" / "lib").unlink()
    (img.path / "rootfs" / "lib").symlink_to("/etc")
    with pytest.raises(ImageChangedError):
        verify_entry(img.path, img.digest)


def test_touched_but_identical_entry_is_rehashed_once_then_cheap_again(cache):
    calls: list = []
    img = cache.ensure("rootfs", "redis", {"v": 1}, builder(calls))
    os.utime(img.path / "rootfs" / "etc" / "passwd")  # e.g. the cache was copied with new times
    before = json.loads((img.path / MANIFEST_FILE).read_text())
    verify_entry(img.path, img.digest)
    after = json.loads((img.path / MANIFEST_FILE).read_text())
    assert before != after and after == stat_manifest(img.path)


def test_entries_from_older_testbeds_without_a_manifest_are_verified_in_full(cache):
    calls: list = []
    img = cache.ensure("rootfs", "redis", {"v": 1}, builder(calls))
    (img.path / MANIFEST_FILE).unlink()
    again = cache.ensure("rootfs", "redis", {"v": 1}, builder(calls))
    assert again.cache_hit and (img.path / MANIFEST_FILE).is_file()
    (img.path / MANIFEST_FILE).unlink()
    with open(img.path / "rootfs" / "etc" / "passwd", "a") as fh:
        fh.write("more\n")
    with pytest.raises(ImageChangedError, match="no longer matches its digest"):
        verify_entry(img.path, img.digest)


def test_torn_image_json_is_rebuilt_not_a_traceback(cache):
    calls: list = []
    img = cache.ensure("rootfs", "redis", {"v": 1}, builder(calls))
    (img.path / "image.json").write_text('{"digest": ')
    again = cache.ensure("rootfs", "redis", {"v": 1}, builder(calls))
    assert not again.cache_hit and "unreadable image.json" in again.rebuilt_reason


def test_the_digest_excludes_only_testbeds_own_bookkeeping(cache):
    calls: list = []
    img = cache.ensure("rootfs", "redis", {"v": 1}, builder(calls))
    from orchestrator.images.cache import NOT_CONTENT
    assert tree_digest(img.path, NOT_CONTENT) == img.digest


@pytest.fixture
def imported(tmp_path, cache):
    src = tmp_path / "osv"
    src.mkdir()
    multiboot_elf(src / "loader-stripped.elf")
    osv_usr_img(src / "usr.img")
    (src / "usr.manifest").write_text("/redis-server: /usr/bin/redis-server\n")
    return import_image("osv", [src], name="redis", cache=cache)


def test_a_changed_import_is_refused_with_one_line(cache, imported):
    assert find_imported("osv", "redis", cache).digest == imported.digest
    with open(imported.file("disk"), "ab") as fh:
        fh.write(b"\0" * 512)
    with pytest.raises(ImageChangedError) as exc:
        find_imported("osv", "redis", cache)
    msg = str(exc.value)
    assert "\n" not in msg and "changed size" in msg and "testbed images import osv" in msg
    assert "testbed images remove redis" in msg
    assert isinstance(exc.value, errors.TestbedError)


def test_reimporting_the_original_files_repairs_a_changed_import(tmp_path, cache, imported):
    with open(imported.file("kernel"), "ab") as fh:
        fh.write(b"x")
    again = import_image("osv", [tmp_path / "osv"], name="redis", cache=cache)
    assert again.digest == imported.digest and not again.cache_hit and again.rebuilt_reason
    assert find_imported("osv", "redis", cache).digest == imported.digest
