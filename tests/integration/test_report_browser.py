"""The report of a real quickstart run, opened in headless Chromium (Debian's chromium): the
screenshot is not blank and the DOM Chromium built holds every figure and the provenance."""

from __future__ import annotations

import re

import pytest
from helpers import ROOT, chromium, distinct_colours, leftovers, run_cli
from lxml import html as lxml_html

pytestmark = pytest.mark.slow

SUBNET = "10.91.0.0/24"


@pytest.fixture(scope="module")
def quickstart_report(tmp_path_factory):
    d = tmp_path_factory.mktemp("quickstart-report")
    suite = d / "quickstart.yaml"
    text = (ROOT / "suites" / "quickstart.yaml").read_text()
    suite.write_text(re.sub(r"subnet: \S+", f"subnet: {SUBNET}", text))
    store = d / "r.sqlite"
    res = run_cli("run", str(suite), "--store", str(store), timeout=1500)
    m = re.search(r"run ([0-9a-f]{6,}): \d+ samples", res.stdout)
    assert m, res.stdout[-2000:] + res.stderr[-2000:]
    run_id = m.group(1)
    assert leftovers(run_id) == []
    out = d / "report.html"
    rep = run_cli("report", run_id, "--store", str(store), "-o", str(out))
    assert rep.returncode == 0, rep.stderr
    return d, run_id, out


def test_chromium_renders_every_figure_and_the_provenance(quickstart_report):
    d, run_id, report = quickstart_report
    written = lxml_html.fromstring(report.read_text())
    figure_ids = [f.get("id") for f in written.xpath("//figure[contains(@class, 'plot')]")]
    assert len(figure_ids) >= 3  # startup bars, SET/GET bars, the latency percentiles

    png = d / "report.png"
    shot = chromium(d / "profile-shot", "--window-size=1280,2000", "--hide-scrollbars", f"--screenshot={png}",
                    report.as_uri())
    assert png.is_file() and png.stat().st_size > 10_000, shot.stderr[-2000:]
    assert distinct_colours(png) > 50  # a blank page has one colour; figures and tables have many

    dom = chromium(d / "profile-dom", "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = lxml_html.fromstring(dom.stdout)
    for fid in figure_ids:
        (fig,) = rendered.xpath(f"//figure[@id='{fid}']")
        assert fig.xpath(".//*[local-name()='svg']//*[local-name()='path']"), fid
    prov = rendered.xpath(f"//*[@id='provenance-{run_id}']/following-sibling::section[contains(@class, 'provenance')]")
    assert prov and "cpu_model" in prov[0].text_content() and "image_digest" in prov[0].text_content()
    assert f"run {run_id}" in rendered.text_content()
