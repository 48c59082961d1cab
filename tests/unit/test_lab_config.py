"""Lab hosts file: validation errors are one line naming file, line, field and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.lab import load_lab
from orchestrator.errors import ConfigError

GOOD = """\
hosts:
  - name: lab-a
    address: 192.0.2.10
    user: root
    identity_file: keys/id_ed25519
    known_hosts: known_hosts
    host_key_fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
    lab_address: 10.77.0.1
    sriov: {enp59s0f0: 4}
    hugepages: 512
    iommu: true
    roles: [server]
  - name: lab-b
    address: lab-b.example.org
    port: 2222
    lab_address: 10.77.0.2
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "lab.yaml"
    p.write_text(text)
    return p


def test_good_lab(tmp_path: Path):
    lab = load_lab(write(tmp_path, GOOD))
    assert lab.names() == ["lab-a", "lab-b"]
    a = lab.host("lab-a")
    assert a.port == 22 and a.sriov == {"enp59s0f0": 4} and a.iommu is True and a.hugepages == 512
    assert a.identity_file == str(tmp_path / "keys" / "id_ed25519")  # relative to the lab file
    assert a.known_hosts_path == tmp_path / "known_hosts"
    b = lab.host("lab-b")
    assert b.port == 2222 and b.user == "root" and b.identity_file is None
    assert str(b.known_hosts_path).endswith(".ssh/known_hosts")


def test_missing_host_is_one_line(tmp_path: Path):
    lab = load_lab(write(tmp_path, GOOD))
    with pytest.raises(ConfigError) as err:
        lab.host("lab-c")
    assert str(err.value) == f"{tmp_path / 'lab.yaml'}: no host named 'lab-c' in the lab file; known hosts: lab-a, lab-b"
    with pytest.raises(ConfigError):
        lab.select(["lab-a", "nope"])


@pytest.mark.parametrize("replace, line, field, words", [
    ("    port: 2222\n", 15, "hosts[1].port", "integer"),
    ("    hugepages: 512\n", 10, "hosts[0].hugepages", "greater than or equal to 0"),
    ("    iommu: true\n", 11, "hosts[0].iommu", "bool"),
    ("    lab_address: 10.77.0.2\n", 16, "hosts[1].lab_address", "not an IP address"),
    ('    host_key_fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"\n', 7,
     "hosts[0].host_key_fingerprint", "SHA256 fingerprint"),
    ("    sriov: {enp59s0f0: 4}\n", 9, "hosts[0].sriov", "VF count"),
    ("    user: root\n", 4, "hosts[0].usr", "unknown field"),
])
def test_errors_name_file_line_field(tmp_path: Path, replace: str, line: int, field: str, words: str):
    bad = {
        "hosts[1].port": "    port: twenty-two\n",
        "hosts[0].hugepages": "    hugepages: -1\n",
        "hosts[0].iommu": "    iommu: maybe\n",
        "hosts[1].lab_address": "    lab_address: lab-b\n",
        "hosts[0].host_key_fingerprint": '    host_key_fingerprint: "MD5:aa:bb"\n',
        "hosts[0].sriov": "    sriov: {enp59s0f0: -4}\n",
        "hosts[0].usr": "    usr: root\n",
    }[field]
    assert replace in GOOD
    path = write(tmp_path, GOOD.replace(replace, bad))
    with pytest.raises(ConfigError) as err:
        load_lab(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:{line}: {field}: "), msg
    assert words in msg


def test_missing_required_field(tmp_path: Path):
    path = write(tmp_path, "hosts:\n  - name: x\n")
    with pytest.raises(ConfigError) as err:
        load_lab(path)
    assert str(err.value) == f"{path}:2: hosts[0].address: required field is missing"


def test_duplicate_names_and_empty(tmp_path: Path):
    path = write(tmp_path, "hosts:\n  - {name: x, address: 10.0.0.1}\n  - {name: x, address: 10.0.0.2}\n")
    with pytest.raises(ConfigError) as err:
        load_lab(path)
    assert "appears twice" in str(err.value) and str(err.value).startswith(f"{path}:")
    with pytest.raises(ConfigError) as err:
        load_lab(write(tmp_path, ""))
    assert "empty" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_lab(write(tmp_path, "- a\n- b\n"))
    assert "expected a mapping" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_lab(tmp_path / "nope.yaml")
    assert "no such file" in str(err.value)


def test_yaml_syntax_error(tmp_path: Path):
    path = write(tmp_path, "hosts:\n  - name: x\n    address: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_lab(path)
    assert str(err.value).startswith(f"{path}:") and "YAML syntax error" in str(err.value)


# --- nightly: lab-wide default, per-host override, one line per problem ------------------------
NIGHTLY = """\
nightly:
  suites: [suites/quick.yaml, /ABS/other.yaml]
  at: "02:00"
hosts:
  - name: lab-a
    address: 192.0.2.10
  - name: lab-b
    address: 192.0.2.11
    nightly: {at: "03:30", store: /var/lib/testbed/nightly.sqlite, testbed: /srv/testbed/.venv/bin/testbed}
  - name: lab-c
    address: 192.0.2.12
    nightly: {suites: []}
"""


def nightly_lab(tmp_path: Path, text: str = NIGHTLY) -> Path:
    (tmp_path / "suites").mkdir(exist_ok=True)
    (tmp_path / "suites" / "quick.yaml").write_text("name: quick\n")
    (tmp_path / "abs").mkdir(exist_ok=True)
    (tmp_path / "abs" / "other.yaml").write_text("name: other\n")
    return write(tmp_path, text.replace("/ABS", str(tmp_path / "abs")))


def test_nightly_default_and_per_host_override(tmp_path: Path):
    lab = load_lab(nightly_lab(tmp_path))
    a, b, c = (lab.host(n).nightly_schedule for n in ("lab-a", "lab-b", "lab-c"))
    suites = (tmp_path / "suites" / "quick.yaml", tmp_path / "abs" / "other.yaml")
    assert a is not None and a.suites == suites and a.at == "02:00" and a.store is None and a.testbed is None
    assert b is not None and b.suites == suites and b.at == "03:30"  # field by field: suites from the lab-wide block
    assert b.store == "/var/lib/testbed/nightly.sqlite" and b.testbed == "/srv/testbed/.venv/bin/testbed"
    assert c is None  # suites: [] turns it off
    plain = load_lab(write(tmp_path, GOOD))
    assert all(h.nightly_schedule is None for h in plain.hosts)


def test_nightly_at_defaults_to_two_in_the_morning(tmp_path: Path):
    lab = load_lab(nightly_lab(tmp_path, NIGHTLY.replace('  at: "02:00"\n', "")))
    assert lab.host("lab-a").nightly_schedule.at == "02:00"


@pytest.mark.parametrize("old, new, line, field, words", [
    ("suites/quick.yaml,", "suites/nosuch.yaml,", 2, "nightly.suites[0]",
     "suites/nosuch.yaml: no such suite file"),
    ('  at: "02:00"', "  at: 2:30", 3, "nightly.at", 'got the number 150; write the time in quotes, like "02:30"'),
    ('  at: "02:00"', '  at: "24:00"', 3, "nightly.at", "is not a 24-hour time"),
    ('{at: "03:30",', '{at: "3.30",', 9, "hosts[1].nightly.at", "is not a 24-hour time"),
    ("store: /var/lib/testbed/nightly.sqlite", "store: results.sqlite", 9, "hosts[1].nightly.store",
     "expected an absolute path on the host (the result store)"),
    ("testbed: /srv/testbed/.venv/bin/testbed", "testbed: '/srv/my testbed'", 9, "hosts[1].nightly.testbed",
     "expected an absolute path on the host (the testbed executable)"),
    ("nightly: {suites: []}", "nightly: {suite: []}", 12, "hosts[2].nightly.suite", "unknown field"),
    ("/ABS/other.yaml]", "/ABS/quick.yaml]", 2, "nightly.suites[1]", "the same file name as suites[0]"),
])
def test_nightly_errors_are_one_line(tmp_path: Path, old: str, new: str, line: int, field: str, words: str):
    assert old in NIGHTLY
    text = NIGHTLY.replace(old, new)
    path = nightly_lab(tmp_path, text)
    (tmp_path / "abs" / "quick.yaml").write_text("name: q\n")
    with pytest.raises(ConfigError) as err:
        load_lab(path)
    msg = str(err.value)
    assert "\n" not in msg, msg  # a lab-wide problem is one line, not one per host
    assert msg.startswith(f"{path}:{line}: {field}: "), msg
    assert words in msg, msg


def test_nightly_without_suites_anywhere(tmp_path: Path):
    path = write(tmp_path, 'hosts:\n  - name: a\n    address: 10.0.0.1\n    nightly: {at: "01:00"}\n')
    with pytest.raises(ConfigError) as err:
        load_lab(path)
    assert str(err.value) == (f"{path}:4: hosts[0].nightly.suites: no suites to run; list suite files here or in "
                              f"the lab-wide nightly block (suites: [] turns the nightly run off)")
