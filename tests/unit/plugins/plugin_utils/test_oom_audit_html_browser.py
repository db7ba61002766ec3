"""The HTML report in a real browser: Debian's chromium builds its table and charts and paints them.

The report comes from real module output over the fixtures (audit_inputs). chromium runs headless with no
network features; --dump-dom shows the DOM it built (rows, SVG elements), --screenshot what it painted.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from PIL import Image

from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_report as audit
from ansible_collections.enva.pve.tests.unit.plugins.plugin_utils import browser
from ansible_collections.enva.pve.tests.unit.plugins.plugin_utils.audit_inputs import (
    cluster, declared, node_evidence, resource_item)

OOM_RED = (0xC0, 0x39, 0x2B)
NO_EVIDENCE_GREY = (0x7F, 0x8C, 0x8D)


class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oom-audit-html")
    extra = [resource_item(3000 + index, "pve1", "ct%d" % index, "running", 1024, 100 + 40 * index)
             for index in range(20)]
    report = audit.build_report(cluster(extra), {"pve1": node_evidence()}, declared=declared(tmp),
                                declared_path="enva.yaml")
    path = tmp / "oom-audit.html"
    path.write_text(audit.render_html(report), encoding="utf-8")
    return path, report


def test_chromium_builds_the_table_and_the_charts(page, tmp_path):
    path, report = page
    dom = Dom()
    dom.feed(browser.dump_dom(path, tmp_path))
    tags = dom.tags
    rows = [attrs["data-vmid"] for tag, attrs in tags if tag == "tr" and "data-vmid" in attrs]
    assert len(rows) == len(report["cts"]) == 25 and rows[0] == "2017"
    assert [attrs.get("id") for tag, attrs in tags if tag == "svg"] == ["chart-headroom", "chart-timeline"]
    assert len([1 for tag, attrs in tags if tag == "g" and attrs.get("class") == "bar"]) == 24   # 703 has no limit known
    assert [attrs["data-vmid"] for tag, attrs in tags if tag == "circle"] == ["2017"]
    assert len([1 for tag, attrs in tags if tag == "rect"]) >= 3 * 24


def test_chromium_paints_it(page, tmp_path):
    path, _report = page
    png = browser.screenshot(path, tmp_path / "oom-audit.png", tmp_path)
    image = Image.open(png).convert("RGB")
    assert image.size == (1400, 1800)
    colors = image.getcolors(maxcolors=1 << 20)
    counts = {color: count for count, color in colors}
    not_white = sum(count for color, count in counts.items() if color != (255, 255, 255))
    assert not_white > 0.05 * image.size[0] * image.size[1]       # far from a blank page
    # the OOM-killed CT's bar and badge, and the bars of the 20 CTs no node reported, in their colors
    assert counts.get(OOM_RED, 0) > 2000
    assert counts.get(NO_EVIDENCE_GREY, 0) > 20 * 1000
