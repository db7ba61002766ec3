# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the fleet OOM audit: the report from what was gathered, and the report as Markdown and HTML.

Documented in oom_audit_report.yml, oom_audit_markdown.yml, oom_audit_html.yml, oom_audit_remediation.yml and
oom_audit_command.yml next to this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_findings as findings_lib
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_render as render_lib
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_report as report_lib


def oom_audit_report(resources, evidence, declared=None, declared_path=None, failed_nodes=None, unreachable=None):
    """The fleet report (see oom_audit_report.yml)."""
    try:
        return report_lib.build_report(resources, evidence, declared=declared, declared_path=declared_path,
                                       failed_nodes=failed_nodes, unreachable=unreachable)
    except report_lib.ReportError as error:
        raise AnsibleFilterError("oom_audit_report: %s" % error)


def _checked(report, name):
    if not isinstance(report, dict) or "cts" not in report or "summary" not in report:
        raise AnsibleFilterError("%s: the input must be the output of enva.pve.oom_audit_report" % name)
    return report


def oom_audit_remediation(report, cluster_now, vmids=None, max_mb=None):
    """The CTs to raise, checked against memory read just now (see oom_audit_remediation.yml)."""
    _checked(report, "oom_audit_remediation")
    try:
        return report_lib.plan_remediation(report, cluster_now, vmids=vmids, max_mb=max_mb)
    except report_lib.ReportError as error:
        raise AnsibleFilterError("oom_audit_remediation: %s" % error)


def oom_audit_markdown(report, max_rows=None, inventory=None):
    """The report as Markdown (see oom_audit_markdown.yml)."""
    return render_lib.render_markdown(_checked(report, "oom_audit_markdown"), max_rows=max_rows, inventory=inventory)


def oom_audit_html(report, inventory=None):
    """The report as a self-contained HTML page (see oom_audit_html.yml)."""
    return render_lib.render_html(_checked(report, "oom_audit_html"), inventory=inventory)


def oom_audit_command(report, inventory=None, check=False):
    """The command that raises the CTs the report recommends raising, or None (see oom_audit_command.yml)."""
    return findings_lib.remediation_command(_checked(report, "oom_audit_command"), inventory=inventory, check=check)


class FilterModule(object):
    """enva.pve's fleet audit filters."""

    def filters(self):
        return {
            "oom_audit_report": oom_audit_report,
            "oom_audit_markdown": oom_audit_markdown,
            "oom_audit_html": oom_audit_html,
            "oom_audit_remediation": oom_audit_remediation,
            "oom_audit_command": oom_audit_command,
        }
