"""The HTML audit report in a real browser: Debian's chromium builds the page and paints it, and the first
screen (1280 x 800, "above the fold") shows the CTs that need action and the command that remediates them.

The report comes from real module output over the fixtures (audit_inputs.varied_fleet). chromium runs headless
with no network features; --dump-dom shows the DOM it built, --screenshot what it painted. The screenshots are
kept in build/ (build/oom-audit-report.png, the first screen; build/oom-audit-report-full.png, the page).
"""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_render as render
from support import browser
from support.audit_inputs import varied_fleet

ROOT = Path(__file__).resolve().parents[3]
BUILD = ROOT / "build"
FOLD = (1280, 800)
ANSWER_PINK = (0xFD, 0xED, 0xEC)        # #answer: the CTs that need action
COMMAND_DARK = (0x17, 0x20, 0x2A)       # pre#remediate: the command
OOM_RED = (0xC0, 0x39, 0x2B)
NO_EVIDENCE_GREY = (0x7F, 0x8C, 0x8D)

pytestmark = pytest.mark.skipif(browser.chromium() is None, reason="chromium is not installed (make setup)")


class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oom-audit-html")
    report = varied_fleet(tmp, far_cts=10)
    path = tmp / "oom-audit.html"
    path.write_text(render.render_html(report, inventory=["/srv/site/hosts.yml"]), encoding="utf-8")
    return path, report


def colors(png):
    image = Image.open(png).convert("RGB")
    return image, {color: count for count, color in image.getcolors(maxcolors=1 << 22)}


def test_chromium_builds_the_answer_the_table_and_the_charts(page, tmp_path):
    path, report = page
    dom = Dom()
    dom.feed(browser.dump_dom(path, tmp_path))
    tags = dom.tags
    ids = [attrs.get("id") for _tag, attrs in tags if attrs.get("id")]
    assert ids.index("answer") < ids.index("remediate") < ids.index("action") < ids.index("chart-headroom") \
        < ids.index("ranked")
    needing = [entry["vmid"] for entry in report["cts"] if entry["severity"] != "ok"]
    assert [int(attrs["data-vmid"]) for tag, attrs in tags if tag == "span" and attrs.get("class") == "vmid"] == \
        needing
    ranked = [attrs["data-vmid"] for tag, attrs in tags if tag == "tr" and "data-vmid" in attrs]
    assert len(ranked) == len(needing) + len(report["cts"])       # the action table, then the ranked table
    assert [attrs.get("id") for tag, attrs in tags if tag == "svg"] == ["chart-headroom", "chart-timeline"]
    assert [attrs["data-vmid"] for tag, attrs in tags if tag == "circle"] == ["2017"]


def test_the_first_screen_shows_the_vmids_and_the_command(page, tmp_path):
    path, report = page
    BUILD.mkdir(exist_ok=True)
    png = browser.screenshot(path, tmp_path / "fold.png", tmp_path, width=FOLD[0], height=FOLD[1])
    shutil.copyfile(png, BUILD / "oom-audit-report.png")
    image, counts = colors(png)
    assert image.size == FOLD
    # the answer box and the dark command box are painted on the first screen, big enough to read
    assert counts.get(ANSWER_PINK, 0) > 40000
    assert counts.get(COMMAND_DARK, 0) > 20000
    # where they are: the command box's rows all lie within the fold, under the answer's top edge
    rows = [y for y in range(FOLD[1])
            if sum(1 for x in range(0, FOLD[0], 4) if image.getpixel((x, y)) == COMMAND_DARK) > 100]
    assert rows and max(rows) < FOLD[1] - 100
    # the badges of the OOM-killed CT (red) and of the CTs no node reported (grey) are in the headline
    assert counts.get(OOM_RED, 0) > 500 and counts.get(NO_EVIDENCE_GREY, 0) > 2000


def test_chromium_paints_the_whole_page(page, tmp_path):
    path, _report = page
    png = browser.screenshot(path, tmp_path / "full.png", tmp_path, width=1280, height=2600)
    shutil.copyfile(png, BUILD / "oom-audit-report-full.png")
    image, counts = colors(png)
    not_white = sum(count for color, count in counts.items() if color != (255, 255, 255))
    assert not_white > 0.05 * image.size[0] * image.size[1]
    assert counts.get(NO_EVIDENCE_GREY, 0) > 10 * 1000           # the ten bars of the CTs no node reported


def test_the_command_in_the_page_is_the_one_the_findings_give(page):
    path, report = page
    text = path.read_text(encoding="utf-8")
    (command,) = re.findall(r'<pre id="remediate"><code>([^<]+)</code></pre>', text)
    assert command.replace("&#34;", '"').replace("&#39;", "'") == render.oom_audit_findings.remediation_command(
        report, ["/srv/site/hosts.yml"])
