# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet OOM audit report as Markdown and as one self-contained HTML page, from two Jinja2 templates.

Both templates (``templates/`` next to this file, shipped in the collection) get the same findings
(``oom_audit_findings.findings``); the HTML one also gets the charts' geometry (``oom_audit_charts``). Both
environments autoescape: whatever came from the fleet (CT names, causes, paths) is escaped unless a filter
here made it safe for its place (``md`` for Markdown text and table cells, ``code`` for the command in a
Markdown code block).
"""

from __future__ import absolute_import, division, print_function

import os

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ansible_collections.enva.pve.plugins.module_utils import report_format
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_charts as charts
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_findings

__metaclass__ = type

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
MARKDOWN_TEMPLATE = "oom_audit.md.j2"
HTML_TEMPLATE = "oom_audit.html.j2"
ACTION_HEADLINE_CTS = 30
"""VMIDs named in the one-line answer at the top; the action table lists all."""


def _md(text):
    """Text for Markdown prose and table cells: no HTML, no cell break, on one line."""
    text = "" if text is None else str(text)
    for old, new in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("\r", " "), ("\n", " ")):
        text = text.replace(old, new)
    return Markup(text)


def _code(text):
    """A one-line command for a fenced Markdown code block, where nothing is unescaped: it must stay one line."""
    text = str(text)
    if "\n" in text or "\r" in text or "```" in text:
        raise ValueError("a command for a Markdown code block must be one line without ```: %r" % text)
    return Markup(text)


def _environment():
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    environment.filters["md"] = _md
    environment.filters["code"] = _code
    environment.filters["thousands"] = report_format.thousands
    return environment


def _context(report, max_rows, inventory):
    found = oom_audit_findings.findings(report, max_rows=max_rows, inventory=inventory)
    return {"f": found, "headline": found["action"][:ACTION_HEADLINE_CTS],
            "headline_more": max(0, len(found["action"]) - ACTION_HEADLINE_CTS)}


def render_markdown(report, max_rows=None, inventory=None):
    """The report as Markdown for a ticket: the CTs that need action and the command first, then the table."""
    text = _environment().get_template(MARKDOWN_TEMPLATE).render(_context(report, max_rows, inventory))
    return str(text).rstrip("\n") + "\n"


def render_html(report, inventory=None):
    """The report as one self-contained HTML page: the answer first, the charts, the table, the findings."""
    context = _context(report, None, inventory)
    context["headroom"] = charts.headroom(report)
    context["timeline"] = charts.timeline(report)
    return str(_environment().get_template(HTML_TEMPLATE).render(context)).rstrip("\n") + "\n"
