# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The findings of a fleet OOM audit report: everything the Markdown and the HTML report show, computed once.

:func:`findings` turns the report of ``oom_audit_report.build_report`` into plain data, in the order a reader
needs it: the CTs that need action (VMID, node, cause, what to do), the exact command that remediates the ones
whose memory should be raised, the count of every severity, then the ranked table (each cell already text), the
findings CT by CT and the notes. The two templates (``templates/oom_audit.md.j2``, ``templates/oom_audit.html.j2``)
only lay this out, so the formats cannot disagree on which CTs or severities they list.
"""

from __future__ import absolute_import, division, print_function

import json
import shlex

from ansible_collections.enva.pve.plugins.module_utils.report_format import or_dash, percent, thousands
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_report as model

__metaclass__ = type

PLAYBOOK = "enva.pve.oom_audit"
INVENTORY_PLACEHOLDER = "INVENTORY"
COLUMNS = ("#", "CT", "name", "node", "status", "memory / swap MiB", "used now / peak MiB", "headroom",
           "OOM kills in the window", "fork storm", "PSI avg60 some / full", "declared vs live", "severity",
           "recommendation")
NUMERIC = ("#", "CT", "memory / swap MiB", "used now / peak MiB", "headroom")


def _oom_cell(entry):
    oom = entry["oom"]
    if not oom["killed"]:
        return "none seen (kernel log incomplete)" if oom.get("kernel_log_complete") is False else "-"
    kills = oom["kills_in_log"] or oom["kills_counted"]
    text = "%d incident(s), %s kill(s)" % (oom["incidents"], thousands(kills))
    if oom["victims"]:
        text += ": " + oom["victims"]
    return text


def _pressure_cell(entry):
    psi = entry["pressure"]
    if psi is None:
        return "n/a"
    return "some %s / full %s" % (psi["some_avg60"], psi["full_avg60"])


def _cause(entry):
    """Why a CT needs action, in one line."""
    severity = entry["severity"]
    if severity == "oom":
        return entry["oom"]["likely_cause"] or "OOM-killed: %s" % (_oom_cell(entry))
    if severity == "high_stall":
        return "stalled at memory.high: %s" % entry["stall"]["reason"]
    if severity == "fork_storm":
        return "fork storm: %s" % (entry["fork_storm"]["reason"] or entry["fork_storm"]["process"] or "see findings")
    if severity == "low_headroom":
        return "%s headroom (peak %s of %s MiB)" % (
            percent(entry["headroom_pct"]),
            or_dash(entry["peak_mb"] if entry["peak_mb"] is not None else entry["usage_mb"]),
            or_dash(entry["limit_mb"] or entry["memory_mb"]))
    if severity == "pressure":
        return "memory stalls, PSI avg60 %s" % _pressure_cell(entry)
    if severity == "drift":
        return "declared and live differ: %s" % entry["drift"]["text"]
    if severity == "no_evidence":
        return "node %s was not audited" % (entry["node"] or "?")
    if severity == "resolved":
        return "resolved: %s" % entry["resolved"]
    return "ok"


def remediation_command(report, inventory=None, check=False):
    """The ``ansible-playbook`` command that raises the memory of exactly the CTs the report recommends raising.

    ``oom_audit_remediate_vmids`` limits the changes to those CTs (every node is read again, read-only);
    ``oom_audit_since`` pins the evidence window of this report, and ``oom_audit_declared_path`` is repeated so
    that the declared file is raised too. None when no CT needs more memory.
    """
    vmids = [item["vmid"] for item in report["remediation"]]
    if not vmids:
        return None
    if isinstance(inventory, str):
        inventory = [inventory]
    words = ["ansible-playbook"]
    for source in inventory or [INVENTORY_PLACEHOLDER]:
        words += ["-i", str(source)]
    words += [PLAYBOOK, "-e", "oom_audit_remediate=true",
              "-e", json.dumps({"oom_audit_remediate_vmids": vmids}, separators=(", ", ": "))]
    since = report["window"].get("since_epoch")
    if since is not None:
        words += ["-e", "oom_audit_since=@%d" % int(since)]
    if report["declared"] and report["declared"].get("path"):
        words += ["-e", "oom_audit_declared_path=%s" % report["declared"]["path"]]
    if check:
        words += ["--check", "--diff"]
    return " ".join(shlex.quote(word) for word in words)


def _row(entry, with_drift):
    cells = [entry["rank"], entry["vmid"], entry["name"] or "-", entry["node"] or "-", entry["status"] or "-",
             "%s / %s" % (or_dash(entry["memory_mb"]), or_dash(entry["swap_mb"])),
             "%s / %s" % (or_dash(entry["usage_mb"]), or_dash(entry["peak_mb"])), percent(entry["headroom_pct"]),
             _oom_cell(entry), (entry["fork_storm"]["reason"] or "yes") if entry["fork_storm"]["present"] else "-",
             _pressure_cell(entry), entry["drift"]["text"] if with_drift else None,
             model.SEVERITY_LABEL[entry["severity"]], entry["recommendation"]["summary"]]
    return [{"text": str(cell), "numeric": column in NUMERIC}
            for column, cell in zip(COLUMNS, cells) if with_drift or column != "declared vs live"]


def _finding(entry):
    items = []
    if entry["oom"]["likely_cause"]:
        items.append("Likely cause: %s" % entry["oom"]["likely_cause"])
    for incident in entry["incidents"]:
        text = "OOM incident %s (node %s): %s victim(s)" % (
            incident["start"], incident["node"], thousands(incident["victims_total"]))
        if incident["victims_by_name"]:
            text += ": " + model._victims_text(incident["victims_by_name"])
        if incident["stop"]:
            text += "; %s %s s later" % (incident["stop"]["event"], incident["stop"]["seconds_after_oom"])
        if incident["next_start"]:
            text += "; started again %s" % incident["next_start"]["time"]
        items.append(text)
    if entry.get("stall"):
        items.append("At risk, stalled at memory.high: %s" % entry["stall"]["reason"])
    if entry["fork_storm"]["present"] and entry["fork_storm"]["reason"]:
        items.append("Fork storm: %s" % entry["fork_storm"]["reason"])
    if entry["pressure"] and entry["pressure"]["stalling"]:
        items.append("Memory pressure (avg60, percent of time): %s" % _pressure_cell(entry))
    if entry["drift"] and entry["drift"]["state"] == "differs":
        items.append("Declared vs live: %s" % entry["drift"]["text"])
    if entry["oom"].get("log_gaps"):
        items.append("The node's logs have gaps in the window (%s): see what the logs could not show"
                     % ", ".join(entry["oom"]["log_gaps"]))
    return {"vmid": entry["vmid"], "name": entry["name"] or "", "node": entry["node"] or "?",
            "severity": entry["severity"], "label": model.SEVERITY_LABEL[entry["severity"]], "lines": items,
            "recommendation": entry["recommendation"]["summary"], "reasoning": entry["recommendation"]["text"] or ""}


def log_gaps(report):
    """Per node, what its logs could not show in the window (lxc_oom_evidence ``sources.kernel_log.gaps``), each
    gap one line of text, and the CTs whose "no OOM" it leaves open."""
    nodes = []
    for node in report["nodes"]:
        gaps = (node.get("kernel_log") or {}).get("gaps") or []
        if not gaps:
            continue
        lines = []
        for gap in gaps:
            what = gap["kind"] + (" from %s" % gap["source"] if gap.get("source") else "")
            if gap.get("count") is not None:
                what += ": %s" % thousands(gap["count"])
            if gap.get("first_time"):
                span = gap["first_time"] if gap.get("last_time") in (None, gap["first_time"]) else "%s to %s" % (
                    gap["first_time"], gap["last_time"])
                what += " (%s)" % span
            lines.append("%s - %s. Logged: %s" % (what, gap["meaning"], gap["message"]))
        incomplete = [entry["vmid"] for entry in report["cts"] if entry.get("evidence_node") == node["node"]
                      and entry["oom"].get("kernel_log_complete") is False and not entry["oom"]["killed"]]
        nodes.append({"node": node["node"], "lines": lines, "cts": incomplete})
    return nodes


def findings(report, max_rows=None, inventory=None):
    """What both formats show, in their order (see the module's docstring); ``max_rows`` cuts only the table."""
    summary = report["summary"]
    with_drift = report["declared"] is not None
    in_command = set(item["vmid"] for item in report["remediation"])
    flagged = [entry for entry in report["cts"] if entry["severity"] != "ok"]
    action = [{"vmid": entry["vmid"], "name": entry["name"] or "", "node": entry["node"] or "?",
               "severity": entry["severity"], "label": model.SEVERITY_LABEL[entry["severity"]],
               "color": model.COLORS[entry["severity"]], "cause": _cause(entry),
               "action": entry["recommendation"]["summary"], "in_command": entry["vmid"] in in_command}
              for entry in flagged]
    command = None
    if in_command:
        command = {"vmids": [item["vmid"] for item in report["remediation"]],
                   "run": remediation_command(report, inventory),
                   "check": remediation_command(report, inventory, check=True),
                   "inventory_known": bool(inventory)}
    severities = [{"key": key, "label": model.SEVERITY_LABEL[key], "color": model.COLORS[key],
                   "vmids": [entry["vmid"] for entry in report["cts"] if entry["severity"] == key]}
                  for key in model.SEVERITY_ORDER]
    for severity in severities:
        severity["count"] = len(severity["vmids"])
    rows = report["cts"] if max_rows is None else report["cts"][:max_rows]
    notes = []
    if report["declared"] and report["declared"]["missing_from_cluster"]:
        notes.append("Declared in %s but not in the cluster: %s" % (
            report["declared"]["path"], ", ".join(str(vmid) for vmid in report["declared"]["missing_from_cluster"])))
    missing = [node for node in report["nodes"] if not node["audited"]]
    if missing:
        notes.append("Nodes without evidence: %s" % ", ".join(
            "%s (%s)" % (node["node"], node.get("error") or "not in the inventory") for node in missing))
    return {
        "log_gaps": log_gaps(report),
        "generated": report["generated"],
        "window": "%s to %s" % (report["window"]["since"] or "the start of the logs", report["window"]["now"]),
        "fleet": "%s CTs (%s running) on %d node(s)" % (
            thousands(summary["cts"]), thousands(summary["running"]), summary["nodes"]),
        "action": action,
        "command": command,
        "severities": severities,
        "headroom_low_pct": model.HEADROOM_LOW_PCT,
        "columns": [{"name": name, "numeric": name in NUMERIC} for name in COLUMNS
                    if with_drift or name != "declared vs live"],
        "rows": [{"vmid": entry["vmid"], "severity": entry["severity"], "color": model.COLORS[entry["severity"]],
                  "cells": _row(entry, with_drift)} for entry in rows],
        "more_rows": len(report["cts"]) - len(rows),
        "findings": [_finding(entry) for entry in flagged],
        "notes": notes,
    }
