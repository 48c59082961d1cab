"""Paper suites at load time: typed paper/published/claims, cross-checks against the suite, scales,
the shipped suites, runsc flags against the installed runsc (fake host), and run provenance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT

from orchestrator.config.papers import PaperSuite
from orchestrator.errors import ConfigError
from orchestrator.hosts.base import CommandResult
from orchestrator.plan import load_plan
from orchestrator.platforms import gvisor as G

BASE = """\
name: t
repetitions: 2
lab: {subnet: 10.106.0.0/24}
paper: {title: T, venue: V, year: 2020, figure: Figure 3}
published:
  source: Table 1
  hardware: Xeon
  baseline: Linux
  values:
    - {system: Linux, value: 3.36, unit: us, ours: {platform: native, metric: latency_p50_us}}
platforms:
  native: {}
  runc: {}
workloads: {netserver: {}}
benchmarks:
  rr: {kind: netperf, tests: [UDP_RR], message_sizes: [64], length: 1}
claims:
  - {id: c1, kind: close, statement: s, metric: latency_p50_us, platform: runc, baseline: native, within_pct: 25}
"""


def load(tmp_path: Path, text: str, **kw):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return load_plan(p, **kw)


def error(tmp_path: Path, text: str, **kw) -> str:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text, **kw)
    return str(exc.value)


def test_a_good_paper_suite_loads_typed(tmp_path):
    plan = load(tmp_path, BASE)
    assert plan.model.paper.citation() == "T (V 2020), Figure 3"
    assert plan.model.claims[0].platforms == ["runc", "native"]
    prov = plan.run_provenance()["paper_suite"]
    assert prov["claims"][0]["id"] == "c1" and prov["published"]["values"][0]["unit"] == "us"
    again = PaperSuite.from_provenance(plan.run_provenance())
    assert again.claims[0].within_pct == 25 and again.published.baseline == "Linux"


@pytest.mark.parametrize("old, new, where, words", [
    ("platform: runc, baseline", "platform: gvisor, baseline", "18: claims[0].platform",
     "'gvisor' is not a platform of this suite; expected one of native, runc"),
    ("metric: latency_p50_us, platform", "metric: latency_p50_ms, platform", "18: claims[0].metric",
     "no benchmark of this suite produces 'latency_p50_ms'; they produce"),
    ("value: 3.36, unit: us", "value: 3.36, unit: usec", "10: published.values[0].unit",
     "unknown unit 'usec'; expected one of ns, us"),
    ("ours: {platform: native,", "ours: {platform: kvm,", "10: published.values[0].ours.platform",
     "'kvm' is not a platform of this suite"),
    ("kind: close, statement: s", "kind: closer, statement: s", "18: claims[0].kind", "'order', 'ratio' or 'close'"),
    ("within_pct: 25}", "within_pct: 25, at_least: 2}", "18: claims[0]",
     "at_least do not apply to a close claim; it takes platform, baseline, within_pct, baseline_point"),
    ("within_pct: 25}", "within_pct: 25, colour: red}", "18: claims[0].colour", "valid fields: at_least, at_most"),
    ("figure: Figure 3}", "}", "4: paper", "name the figure or the table"),
    ("baseline: Linux", "baseline: BSD", "6: published", "baseline 'BSD' is not the system of any published value"),
])
def test_bad_paper_input_is_one_line_naming_file_line_and_field(tmp_path, old, new, where, words):
    assert old in BASE
    msg = error(tmp_path, BASE.replace(old, new))
    first = msg.splitlines()[0]
    assert first.startswith(f"{tmp_path / 's.yaml'}:{where}: "), first
    assert words in first, first
    assert len(msg.splitlines()) == 1, msg


def test_a_claim_on_a_platform_the_matrix_does_not_measure(tmp_path):
    text = BASE + "matrix: [{platforms: [native], workloads: [netserver], benchmarks: [rr]}]\n"
    msg = error(tmp_path, text)
    assert "claims[0].platform: the matrix measures latency_p50_us on native, not on 'runc'" in msg


def test_order_claims_and_duplicate_ids(tmp_path):
    text = BASE + ("  - {id: c1, kind: order, statement: s, metric: latency_p99_us, increasing: [native, osv]}\n")
    msg = error(tmp_path, text)
    assert "claims[1].increasing[1]: 'osv' is not a platform of this suite" in msg
    assert "claims[1].id: claim id 'c1' is used twice" in msg
    assert "exactly one of increasing" in error(tmp_path, BASE + (
        "  - {id: c2, kind: order, statement: s, metric: latency_p99_us, increasing: [native], decreasing: [runc]}\n"))


def test_scales_merge_before_validation_and_change_the_digest(tmp_path):
    text = BASE + ("scales:\n  smoke: {repetitions: 1, benchmarks: {rr: {length: 2}}}\n"
                   "  bad: {benchmarks: {rr: {length: 0}}}\n")
    default = load(tmp_path, text)
    smoke = load(tmp_path, text, scale="smoke")
    assert smoke.model.repetitions == 1 and smoke.benchmarks["rr"].options.length == 2
    assert smoke.benchmarks["rr"].options.tests == ["UDP_RR"]  # merged, not replaced
    assert smoke.scale == "smoke" and smoke.digest != default.digest
    assert smoke.run_provenance()["scale"] == "smoke"
    msg = error(tmp_path, text, scale="bad")
    assert msg.startswith(f"{tmp_path / 's.yaml'}:21: benchmarks.rr.length: "), msg  # the line of the scale
    assert "--scale huge: the suite has no such scale (scales: smoke, bad)" in error(tmp_path, text, scale="huge")


PAPERS = sorted((ROOT / "suites" / "papers").glob("*.yaml"))


@pytest.mark.parametrize("path", PAPERS, ids=[p.stem for p in PAPERS])
@pytest.mark.parametrize("scale", [None, "smoke", "paper"])
def test_shipped_paper_suites_load_at_every_scale(path, scale):
    plan = load_plan(path, scale=scale)
    m = plan.model
    assert m.paper is not None and m.published is not None and m.claims, path
    assert m.lab.subnet.startswith("10.10"), "paper suites use the 10.100-10.105 lab subnets"
    if scale is None:  # each suite finishes in at most 10 minutes here (guests under TCG)
        assert plan.estimate_seconds("tcg") < 600, plan.estimate_seconds("tcg")


def test_paper_suites_cover_the_papers():
    names = {p.stem for p in PAPERS}
    assert {"gvisor-syscalls", "gvisor-network", "gvisor-files", "ukontainer-coldstart", "ukontainer-netperf",
            "arrakis-table1", "osv-memcached", "librettos-nginx", "librettos-memcached", "librettos-redis",
            "unikraft-boot"} <= names


# --- runsc flags against the installed runsc (a fake host answering as Debian 12's runsc) ----------
FLAGS = """  -file-access value
  -file-access-mounts value
  -network value
  -platform string
  -root string
  -gso
"""


@dataclass
class RunscHost:
    name: str = "fake-runsc"
    is_local: bool = True
    kvm_probe_rc: int = 124

    def which(self, tool: str) -> str | None:
        return f"/usr/bin/{tool}"

    def connection_meta(self) -> dict:
        return {}  # this machine, as far as the ledger is concerned

    def run(self, argv, *, timeout, check=True, netns=None, input=None, env=None, abort=None) -> CommandResult:
        argv = list(argv)
        out, rc = "", 0
        if argv[:2] == ["runsc", "flags"]:
            out = FLAGS
        elif argv[:3] == ["runsc", "help", "platforms"]:
            out = "kvm\nptrace\n"
        elif argv[:2] == ["runsc", "--version"]:
            out = "runsc version 0.0~20221219.0\nspec: 1.0.2-dev\n"
        elif argv[0] == "mktemp":
            out = "/tmp/testbed-runsc-kvm-probe.abc123\n"
        elif argv[0] == "timeout":
            rc = self.kvm_probe_rc
        elif argv[0] == "stat":
            out = "tmpfs\n"
        return CommandResult(argv, rc, out, "", 0.0)


class NoLedger:
    def __init__(self):
        self.entries: list[tuple] = []

    def acquire(self, kind, name, **meta):
        self.entries.append(("acquire", kind, name))

    def release(self, kind, name):
        self.entries.append(("release", kind, name))


def gvisor_errors(tmp_path, host=None, **options) -> list[str]:
    G._FLAGS.clear(), G._PLATFORMS.clear(), G._KVM.clear(), G._COMPAT.clear()
    ledger = NoLedger()
    p = G.Gvisor("gv", G.GvisorOptions(**options), host or RunscHost(), ledger, tmp_path)
    errors = p.preflight()
    assert [e[0] for e in ledger.entries] == ["acquire", "release"] * (len(ledger.entries) // 2)
    return errors


def test_runsc_options_are_checked_against_the_installed_runsc(tmp_path):
    assert gvisor_errors(tmp_path) == []
    assert gvisor_errors(tmp_path, file_access="shared", runsc_flags=["--gso=false"]) == []
    assert gvisor_errors(tmp_path, platform="systrap") == [
        "platform: this runsc (0.0~20221219.0) has no systrap platform; it has kvm, ptrace"]
    assert gvisor_errors(tmp_path, overlay="root:memory") == [
        "overlay: this runsc (0.0~20221219.0) has no --overlay2 flag (see `runsc flags`)"]
    assert gvisor_errors(tmp_path, runsc_flags=["--no-such"]) == [
        "runsc_flags --no-such: this runsc (0.0~20221219.0) has no --no-such flag (see `runsc flags`)"]


def test_platform_kvm_needs_a_kvm_runsc_can_use(tmp_path):
    (err,) = gvisor_errors(tmp_path, platform="kvm")
    assert err.startswith("platform: kvm: runsc --platform=kvm ran no sandbox within 10 s on fake-runsc")
    assert err.endswith("use platform: ptrace here")
    assert gvisor_errors(tmp_path, RunscHost(kvm_probe_rc=0), platform="kvm") == []


def test_runsc_flag_syntax_and_own_flags_at_load_time():
    with pytest.raises(ValueError, match="set platform with its own option"):
        G.GvisorOptions(runsc_flags=["--platform=kvm"])
    with pytest.raises(ValueError, match="not a runsc flag"):
        G.GvisorOptions(runsc_flags=["gso"])
    with pytest.raises(ValueError, match="not an --overlay2 value"):
        G.GvisorOptions(overlay="everything")
    o = G.GvisorOptions(file_access="shared", overlay="root:memory", runsc_flags=["--gso=false"])
    g = G.Gvisor("gv", o, RunscHost(), NoLedger(), Path("/nonexistent"))
    assert g.global_flags()[-4:] == ["--network=sandbox", "--file-access=shared", "--overlay2=root:memory",
                                     "--gso=false"]
