"""paths.inside_home: nothing testbed removes or writes escapes TESTBED_HOME, whatever a name says."""

from __future__ import annotations

import pytest

from orchestrator import paths
from orchestrator import errors


def test_paths_inside_home_are_returned_resolved(private_home):
    path = private_home / "runs" / "abc" / "native"
    assert paths.inside_home(path) == path.resolve()
    assert paths.inside_home(private_home / "runs" / "x" / ".." / "y") == (private_home / "runs" / "y").resolve()


@pytest.mark.parametrize("name", ["../x", "/abs/path", "..", "../home-sibling", "a/../../etc"])
def test_dotdot_and_absolute_names_are_refused(private_home, name):
    with pytest.raises(errors.TestbedError) as exc:
        paths.inside_home(private_home / name)
    msg = str(exc.value)
    assert "\n" not in msg and "outside testbed's home" in msg


@pytest.mark.parametrize("name", ["../../x", "../other-run", "/abs/path", "..", "."])
def test_names_under_a_run_directory_stay_in_it(private_home, name):
    run_dir = private_home / "runs" / "run1"
    with pytest.raises(errors.TestbedError, match="outside"):
        paths.inside_home(run_dir / name, under=run_dir)
    assert paths.inside_home(run_dir / "native", under=run_dir) == (run_dir / "native").resolve()


def test_under_must_itself_be_inside_home(private_home, tmp_path):
    with pytest.raises(errors.TestbedError):
        paths.inside_home(tmp_path / "x" / "y", under=tmp_path / "x")


def test_home_itself_is_refused(private_home):
    with pytest.raises(errors.TestbedError):
        paths.inside_home(private_home)
    with pytest.raises(errors.TestbedError):
        paths.inside_home(private_home / "runs" / "..")


def test_symlink_out_of_home_is_refused(private_home, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (private_home / "runs" / "evil").symlink_to(outside)
    with pytest.raises(errors.TestbedError, match="resolves to"):
        paths.inside_home(private_home / "runs" / "evil")
    with pytest.raises(errors.TestbedError):
        paths.inside_home(private_home / "runs" / "evil" / "child")
    assert outside.is_dir()


def test_symlink_within_home_is_fine_and_home_may_itself_be_a_symlink(private_home, tmp_path, monkeypatch):
    (private_home / "runs" / "real").mkdir()
    (private_home / "runs" / "alias").symlink_to(private_home / "runs" / "real")
    assert paths.inside_home(private_home / "runs" / "alias") == (private_home / "runs" / "real").resolve()
    link_home = tmp_path / "link-home"
    link_home.symlink_to(private_home)
    monkeypatch.setenv("TESTBED_HOME", str(link_home))
    assert paths.inside_home(link_home / "runs" / "real") == (private_home / "runs" / "real").resolve()
