"""The report's findings model and its two renderings (Markdown, HTML): the answer first, and the same answer in both."""

from __future__ import annotations

import re
import shlex
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_charts as charts
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_findings as findings_lib
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_render as render
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_report as audit
from support.audit_inputs import (
    cluster, node_evidence, resource_item, varied_fleet)

COMMAND = ("ansible-playbook -i /srv/site/hosts.yml enva.pve.oom_audit -e oom_audit_remediate=true "
           "-e '{\"oom_audit_remediate_vmids\": [2017, 101]}' -e oom_audit_since=@1732320000 "
           "-e oom_audit_declared_path=/srv/site/enva.yaml")


@pytest.fixture
def report(tmp_path):
    return varied_fleet(tmp_path, far_cts=3)


class Page(HTMLParser):
    """The HTML page's elements: (tag, attrs, text inside) of every element, text joined."""

    def __init__(self, page):
        super().__init__()
        self.elements, self._open = [], []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        element = [tag, dict(attrs), ""]
        self.elements.append(element)
        if tag not in ("br", "meta", "rect", "line", "input"):
            self._open.append(element)

    def handle_startendtag(self, tag, attrs):
        self.elements.append([tag, dict(attrs), ""])

    def handle_endtag(self, tag):
        while self._open:
            element = self._open.pop()
            if element[0] == tag:
                break

    def handle_data(self, data):
        for element in self._open:
            element[2] += data

    def find(self, tag, **attrs):
        return [element for element in self.elements if element[0] == tag
                and all(element[1].get(key.rstrip("_")) == value for key, value in attrs.items())]


def markdown_table(text, heading):
    """The body rows of the Markdown table under ``heading``, as lists of cells."""
    block = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


# --- the findings model ---------------------------------------------------------------------------------------------

def test_findings_put_the_cts_that_need_action_first_with_node_and_cause(report):
    found = findings_lib.findings(report, inventory=["/srv/site/hosts.yml"])
    assert [(a["vmid"], a["node"], a["severity"]) for a in found["action"]] == [
        (2017, "pve1", "oom"), (101, "pve1", "low_headroom"), (102, "pve1", "pressure"), (9000, "pve1", "drift"),
        (3003, "pve2", "no_evidence"), (3002, "pve2", "no_evidence"), (3001, "pve2", "no_evidence")]
    causes = {a["vmid"]: a["cause"] for a in found["action"]}
    assert causes[2017].startswith("socat fork storm: 1,361 socat processes in the OOM task dump")
    assert causes[101] == "7.2% headroom (peak 1,900 of 2,048 MiB)"
    assert causes[102] == "memory stalls, PSI avg60 some 20.0 / full 0.4"
    assert causes[9000] == "declared and live differ: memory declared 256, live 512 MiB"
    assert causes[3001] == "node pve2 was not audited"
    assert [a["vmid"] for a in found["action"] if a["in_command"]] == [2017, 101]
    assert found["command"]["vmids"] == [2017, 101] and found["command"]["run"] == COMMAND
    assert found["command"]["check"] == COMMAND + " --check --diff"


def test_the_command_is_one_shell_command_that_names_exactly_the_cts_to_raise(report):
    words = shlex.split(findings_lib.remediation_command(report, ["my inventory.yml", "/srv/more"]))
    assert words[:6] == ["ansible-playbook", "-i", "my inventory.yml", "-i", "/srv/more", "enva.pve.oom_audit"]
    assert words[6:10] == ["-e", "oom_audit_remediate=true", "-e", '{"oom_audit_remediate_vmids": [2017, 101]}']
    assert findings_lib.remediation_command(report, None).startswith("ansible-playbook -i INVENTORY enva.pve")


def test_no_command_when_nothing_is_to_be_raised(tmp_path):
    report = audit.build_report(cluster(), {"pve1": node_evidence(since="@1732406000")})
    report["remediation"] = []
    assert findings_lib.remediation_command(report) is None
    assert findings_lib.findings(report)["command"] is None
    assert "Remediate" not in render.render_markdown(report) and 'id="remediate"' not in render.render_html(report)


def test_every_severity_is_counted_in_one_order(report):
    severities = findings_lib.findings(report)["severities"]
    assert [s["key"] for s in severities] == list(audit.SEVERITY_ORDER)
    assert {s["key"]: s["vmids"] for s in severities} == {
        "oom": [2017], "high_stall": [], "fork_storm": [], "low_headroom": [101], "pressure": [102], "drift": [9000],
        "no_evidence": [3003, 3002, 3001], "resolved": [], "ok": [703]}


# --- both renderings say the same -------------------------------------------------------------------------------------

def test_markdown_and_html_list_the_same_cts_severities_and_command(report):
    text = render.render_markdown(report, inventory=["/srv/site/hosts.yml"])
    # the answer: which CTs need action, on which node, why
    html = render.render_html(report, inventory=["/srv/site/hosts.yml"])
    page = Page(html)
    md_action = [(int(row[0]), row[2], row[3]) for row in markdown_table(text, "## Needs action")]
    html_action = [(int(vmid), node, label) for vmid, node, label in re.findall(
        r'<tr class="need sev-[a-z_]+" data-vmid="(\d+)"><td class="num">\d+</td><td>[^<]*</td><td>([^<]*)</td>'
        r'<td><span class="badge" style="background:#[0-9a-f]+">([^<]*)</span>', html)]
    assert md_action == html_action == [
        (2017, "pve1", "OOM-killed"), (101, "pve1", "low headroom"), (102, "pve1", "memory stalls"),
        (9000, "pve1", "drift"), (3003, "pve2", "no evidence"), (3002, "pve2", "no evidence"),
        (3001, "pve2", "no evidence")]
    # the headline names the same VMIDs
    md_headline = re.findall(r"(\d+) \(pve\d", text.split("\n\n")[2])
    html_headline = [element[2] for element in page.find("span", class_="vmid")]
    assert md_headline == html_headline == [str(vmid) for vmid, _node, _label in md_action]
    # the command, character for character
    assert "```sh\n%s\n```" % COMMAND in text
    (pre,) = page.find("pre", id="remediate")
    assert pre[2] == COMMAND
    # every severity with the same count
    md_severities = [(row[0], int(row[1])) for row in markdown_table(text, "## Severities")]
    html_severities = [(label, int(count)) for _key, count, label in re.findall(
        r'data-severity="(\w+)"[^>]*><b>(\d+)</b><span class="sev-label">([^<]+)</span>', html)]
    assert md_severities == [(s["label"], s["count"]) for s in findings_lib.findings(report)["severities"]]
    assert html_severities == md_severities
    assert [card[1]["data-severity"] for card in page.find("div") if card[1].get("data-severity")] == list(
        audit.SEVERITY_ORDER)
    # the ranked table: same CTs in the same order; the findings: same CTs
    md_ranked = [int(row[1]) for row in markdown_table(text, "## Ranked CTs")]
    html_ranked = [int(tr[1]["data-vmid"]) for tr in page.find("tr") if tr[1].get("data-vmid")][len(md_action):]
    assert md_ranked == html_ranked == [entry["vmid"] for entry in report["cts"]]
    md_findings = re.findall(r"^### CT (\d+) .*: (.+)$", text, flags=re.M)
    html_findings = [re.match(r"CT (\d+) .*: (.+)$", h3[2]).groups() for h3 in page.find("h3")]
    assert md_findings == html_findings and [int(vmid) for vmid, _l in md_findings] == [a[0] for a in md_action]


def test_the_answer_comes_before_the_table(report):
    text = render.render_markdown(report)
    assert text.index("7 CT(s) need action:") < text.index("```sh") < text.index("## Needs action") \
        < text.index("## Ranked CTs")
    page = render.render_html(report)
    assert page.index('id="answer"') < page.index('id="remediate"') < page.index('id="action"') \
        < page.index("chart-headroom") < page.index('id="ranked"')


def test_markdown_keeps_the_max_rows_cut_and_the_notes(report):
    text = render.render_markdown(report, max_rows=2)
    assert len(markdown_table(text, "## Ranked CTs")) == 2 and "(6 more CTs in the JSON report)" in text
    assert "Declared in /srv/site/enva.yaml but not in the cluster: 4242" in text
    assert "Nodes without evidence: pve2 (not in the inventory)" in text


def test_without_declared_file_there_is_no_drift_column(tmp_path):
    report = audit.build_report(cluster(), {"pve1": node_evidence()})
    assert "declared vs live" not in render.render_markdown(report)
    assert "declared vs live" not in render.render_html(report)
    assert "oom_audit_declared_path" not in render.render_markdown(report)


@pytest.mark.parametrize("name", ["<script>alert(1)</script>", "a|b & c"])
def test_what_came_from_the_fleet_is_escaped_in_both(name):
    resources = cluster([resource_item(3002, "pve2", name, "running", 512, 10)])
    report = audit.build_report(resources, {"pve1": node_evidence()})
    page, text = render.render_html(report), render.render_markdown(report)
    assert "<script>" not in page and "<script>" not in text
    if "<" in name:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    else:
        assert "a|b &amp; c" in page and "| a\\|b &amp; c |" in text
        assert {len(row) for row in markdown_table(text, "## Ranked CTs")} == {13}    # no drift column


def test_a_command_that_would_break_its_code_block_is_refused():
    with pytest.raises(ValueError, match="one line"):
        render._code("rm\n```")


def test_empty_fleet_renders():
    report = audit.build_report({"cts": {}}, {})
    page, text = render.render_html(report), render.render_markdown(report)
    assert "No OOM incident in the window" in page and "No CT with a known memory limit" in page
    assert "No CT needs action" in page and "**No CT needs action.**" in text
    assert text.startswith("# Fleet OOM audit")


# --- the HTML page and its charts -----------------------------------------------------------------------------------

def test_html_is_self_contained_with_table_and_charts(report):
    page = render.render_html(report)
    tags = Page(page).elements
    assert [attrs["id"] for tag, attrs, _text in tags if tag == "svg"] == ["chart-headroom", "chart-timeline"]
    assert [attrs["data-vmid"] for tag, attrs, _text in tags if tag == "circle"] == ["2017"]
    bars = [attrs["data-vmid"] for tag, attrs, _text in tags if tag == "g" and attrs.get("class") == "bar"]
    assert bars == ["2017", "101", "102", "9000", "3003", "3002", "3001"]      # 703 has no limit known
    assert not [tag for tag, _attrs, _text in tags if tag in ("script", "link", "img", "iframe", "object")]
    assert not [attrs for _tag, attrs, _text in tags if "src" in attrs or "href" in attrs]
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in page
    # one row per CT in the ranked table (class "sev-..."), the action table's rows are "need sev-..."
    assert len(re.findall('<tr class="sev-', page)) == len(report["cts"])
    assert len(re.findall('<tr class="need sev-', page)) == 7


def test_the_headroom_axis_reads_headroom(report):
    chart = charts.headroom(report)
    ticks = {tick["label"]: tick["x"] for tick in chart["ticks"]}
    left, width = chart["left"], chart["bar_width"]
    assert ticks["100%"] == left and ticks["0%"] == left + width        # nothing used at the left, all at the right
    assert ticks["20%"] == chart["threshold"]["x"] == left + 0.8 * width
    # a bar ends at the tick of its headroom: 101 peaked at 1,900 of 2,048 MiB, 7.2% headroom
    app = next(item for item in chart["bars"] if item["vmid"] == 101)
    headroom_at_end = 100 * (1 - app["peak_w"] / width)
    assert abs(headroom_at_end - report["cts"][1]["headroom_pct"]) < 0.1
    assert app["value"] == "7.2% headroom, 2,048 MiB limit"
    page = render.render_html(report)
    assert "headroom left, % of the memory limit (100% = nothing used)" in page


def test_templates_ship_next_to_the_renderer():
    templates = Path(render.TEMPLATES)
    assert sorted(path.name for path in templates.iterdir()) == ["oom_audit.html.j2", "oom_audit.md.j2"]
    assert templates.resolve().parent == Path(render.__file__).resolve().parent
