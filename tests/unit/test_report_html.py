"""The HTML report: self-contained, every figure inline SVG, flags, claims when given, provenance."""

from __future__ import annotations

import re
import time

import pytest
from lxml import html as lxml_html
from results_data import add, begin, compare_store, open_store

from orchestrator.results.html import ClaimVerdict, PaperData, PublishedValue, render_report, write_report

XMLNS = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def external_references(text: str) -> list[str]:
    found = re.findall(r"<script|<link\b|<img\b|<iframe|@import|url\((?!#)", text, flags=re.I)
    found += [u for u in re.findall(r"(?:https?|ftp)://[^\s\"'<>)]+", text) if u not in XMLNS]
    found += re.findall(r"\b(?:src|href)\s*=\s*[\"'](?!#)[^\"']+", text)
    return found


@pytest.fixture
def sweep_store(tmp_path):
    """A wrk sweep (lines with bands), a latency distribution (percentile plot), a cliff, a hostile name."""
    s = open_store(tmp_path / "sweep.sqlite")
    begin(s, "W", "nginx")
    for platform, base in (("native", 30000.0), ("<b>gvisor</b>", 9000.0)):
        for conns in (1, 10, 20, 40):
            params = {"file": "4k.bin", "connections": conns, "threads": min(conns, 2), "duration_s": 5}
            rate = base * min(conns, 10) / 10
            add(s, "W", platform, "requests_per_s", [rate * (1 + d) for d in (0, 0.01, -0.01, 0.02, -0.02)],
                workload="nginx", benchmark="wrk", params=params)
            for pct, lat in ((50, 0.2), (75, 0.3), (90, 0.5), (99, 1.2)):
                add(s, "W", platform, f"latency_p{pct}_ms", [lat * conns / 10 * (1 + d) for d in (0, 0.05, -0.05)],
                    workload="nginx", benchmark="wrk", unit="ms", params=params)
    return s


def test_report_is_self_contained_and_holds_every_figure(sweep_store):
    text = render_report(sweep_store, ["W"])
    assert external_references(text) == []
    doc = lxml_html.fromstring(text)
    figures = doc.xpath("//figure[contains(@class, 'plot')]")
    assert len(figures) >= 5  # requests_per_s along connections, latency_p99 along connections, 4 percentile plots
    for f in figures:
        assert f.xpath(".//*[local-name()='svg']"), f.get("id")
    titles = " ".join(f.text_content() for f in doc.xpath("//figcaption"))
    assert "along connections" in titles and "latency percentiles" in titles
    ids = doc.xpath("//@id")
    assert len(ids) == len(set(ids))  # many SVGs in one document: their ids are namespaced
    assert doc.xpath("//section[contains(@class, 'provenance')]//pre")
    # autoescape: a platform name is text, never markup
    assert "<b>gvisor</b>" not in text and "&lt;b&gt;gvisor&lt;/b&gt;" in text
    assert "declares no claims" in text


def test_report_lists_flags_and_intervals_honestly(tmp_path):
    s = open_store(tmp_path / "r.sqlite")
    begin(s, "R", "quick")
    params = {"file": "4k.bin", "connections": 1, "threads": 1, "duration_s": 2}
    add(s, "R", "native", "requests_per_s", [9331.0, 9300, 9350, 9320, 9340], kind="wrk", params=params)
    add(s, "R", "native", "latency_avg_ms", [0.552] * 5, kind="wrk", unit="ms", params=params)
    add(s, "R", "runc", "requests_per_s", [8000.0, 8100, 7900], kind="wrk", params=params)
    text = render_report(s, ["R"])
    doc = lxml_html.fromstring(text)
    flags = doc.xpath("//table[contains(@class, 'flags')]//tr/td[3]")
    assert {f.text_content() for f in flags} >= {"inconsistent", "too short"}
    assert "n too small for an interval" in text and "Little's law" in doc.text_content()


def test_claims_and_published_numbers_are_rendered_when_given(sweep_store):
    paper = PaperData(claims=[ClaimVerdict("gVisor within 2x of native", "not reproduced", "3.3x, p 0.008",
                                           "gVisor paper, fig. 5")],
                      published=[PublishedValue("nginx 4k req/s, native", "31,000 req/s", "30,000", "table 2")])
    text = render_report(sweep_store, ["W"], papers={"nginx": paper})
    assert "declares no claims" not in text
    doc = lxml_html.fromstring(text)
    assert doc.xpath("//td[@class='verdict-not-reproduced']")[0].text_content() == "not reproduced"
    assert "31,000 req/s" in text and "gVisor paper, fig. 5" in text


def test_a_few_hundred_groups_render_in_seconds(tmp_path):
    s = open_store(tmp_path / "big.sqlite")
    begin(s, "B", "big")
    for i in range(300):
        for p, f in (("native", 1.0), ("runc", 0.9), ("gvisor", 0.5), ("vm", 0.3)):
            add(s, "B", p, f"metric_{i}_ms", [(10 + i) / f * (1 + d) for d in (0, 0.02, -0.02, 0.01, -0.01)],
                unit="ms")
    out = tmp_path / "big.html"
    t0 = time.perf_counter()
    write_report(s, ["B"], out)
    elapsed = time.perf_counter() - t0
    assert out.stat().st_size > 10_000
    print(f"300 groups x 4 platforms rendered in {elapsed:.1f} s")  # informational: no timed assertion


def test_two_runs_of_one_suite(tmp_path):
    s = compare_store(tmp_path / "r.sqlite")
    text = render_report(s, ["A", "B", "C"])
    doc = lxml_html.fromstring(text)
    assert len(doc.xpath("//article[contains(@class, 'run')]")) == 3
    assert len(doc.xpath("//section[contains(@class, 'suite')]")) == 2


def test_report_shows_the_suites_history_with_change_points_and_config_changes(tmp_path):
    from nightly_history import Lab, seed_history, seed_night

    from orchestrator.results.html import render_report
    from orchestrator.results.store import Store

    store = Store(tmp_path / "h.sqlite")
    seed_history(store, 6)
    seed_night(store, 6, factors={"native/requests_per_s": 0.7})
    seed_night(store, 7, factors={"native/requests_per_s": 0.7})
    last = seed_night(store, 8, lab=Lab(kernel="6.1.0-99-amd64"))
    html = render_report(store, [last])
    assert 'id="history-nightly"' in html and "history of 9 nights" in html
    assert html.count('class="plot history-figure"') == 2  # the headline metrics: startup_ms, requests_per_s
    assert "host.kernel: 6.1.0-18-amd64 -&gt; 6.1.0-99-amd64" in html  # the configuration change, annotated
