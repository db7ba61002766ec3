# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet OOM audit report, built on the controller from what the audit gathered.

* :func:`build_report` joins ``/cluster/resources`` (module ``pve_resources``), the evidence of each node
  (module ``lxc_oom_evidence``, one run per node for all its CTs) and, optionally, the declared CTs of a site
  file (module ``declared_ct``) into one ranked report: one entry per CT with its configured and used memory,
  headroom, OOM incidents, fork storms, pressure stalls, a recommendation and the drift from the declared file;
* :func:`render_markdown` and :func:`render_html` write it for a ticket and for a browser (one self-contained
  page: inline CSS and SVG charts, no script, no outside request).

Everything is a pure function over plain data, so the filters (``enva.pve.oom_audit_*``), the tests and the
benchmark call the same code.
"""

from __future__ import absolute_import, division, print_function

import datetime
import html
import math

from ansible_collections.enva.pve.plugins.module_utils import oom_report

__metaclass__ = type

MIB = 1024 * 1024
FORMAT_VERSION = 1
HEADROOM_LOW_PCT = oom_report.HEADROOM_LOW_PCT
PRESSURE_SOME_AVG60 = 10.0
"""PSI ``some avg60`` (percent of time some task stalled on memory) from which a CT counts as stalling."""
PRESSURE_FULL_AVG60 = 1.0
"""PSI ``full avg60`` (percent of time all tasks stalled) from which a CT counts as stalling."""
CHART_CTS = 40
"""CTs drawn in the headroom chart (the highest ranked); the table lists all."""
TIMELINE_CTS = 25
"""CT rows of the incident timeline (those with incidents, highest ranked first)."""
SEVERITY_ORDER = ("oom", "high_stall", "fork_storm", "low_headroom", "pressure", "drift", "no_evidence", "ok")
SEVERITY_LABEL = {
    "oom": "OOM-killed", "high_stall": "at risk: stuck at memory.high", "fork_storm": "fork storm",
    "low_headroom": "low headroom", "pressure": "memory stalls", "drift": "drift", "no_evidence": "no evidence",
    "ok": "ok",
}
COLORS = {
    "oom": "#c0392b", "high_stall": "#e74c3c", "fork_storm": "#d35400", "low_headroom": "#b7950b", "pressure": "#8e44ad",
    "drift": "#2471a3", "no_evidence": "#7f8c8d", "ok": "#1e8449",
}


class ReportError(Exception):
    """Input the report cannot be built from; the message says which and why."""


def _thousands(number):
    return "{:,}".format(number)


def _mib(value):
    return None if value is None else int(value) // MIB


def _iso(epoch):
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(iso):
    """Seconds since the epoch of an ISO 8601 time (the evidence's), None when absent or unreadable."""
    if not iso:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


# --- the report -------------------------------------------------------------------------------------------------

def _evidence_by_node(evidence):
    """``({node: lxc_oom_evidence result}, {node: error})`` from a mapping or a list of ``{node, result, error}``.

    A list item's ``error`` (why the node's evidence could not be read) goes into the second mapping.
    """
    if evidence is None:
        return {}, {}
    errors = {}
    if isinstance(evidence, dict):
        items = list(evidence.items())
    elif isinstance(evidence, list):
        items = []
        for item in evidence:
            if not isinstance(item, dict) or "node" not in item:
                raise ReportError("evidence: each list item must be a mapping with node and result, got %r"
                                  % (type(item).__name__,))
            items.append((item["node"], item.get("result", item.get("evidence"))))
            if item.get("error"):
                errors[str(item["node"])] = str(item["error"])
    else:
        raise ReportError("evidence must be a mapping of node name to lxc_oom_evidence result, got %s"
                          % type(evidence).__name__)
    result = {}
    for node, value in items:
        if value is None:
            result[str(node)] = None
            continue
        if not isinstance(value, dict) or not isinstance(value.get("cts"), dict):
            raise ReportError("evidence of node %s is not an lxc_oom_evidence result (it has no cts mapping)" % node)
        result[str(node)] = value
    return result, errors


def _resource_cts(resources):
    if resources is None:
        return {}
    if isinstance(resources, dict) and isinstance(resources.get("cts"), dict):
        return resources["cts"]
    if isinstance(resources, dict) and all(isinstance(value, dict) and "vmid" in value for value in resources.values()):
        return resources
    raise ReportError("resources must be the result of enva.pve.pve_resources (a mapping with cts)")


def _declared_cts(declared):
    if declared is None:
        return None
    if isinstance(declared, dict) and isinstance(declared.get("cts"), dict):
        return declared["cts"]
    raise ReportError("declared must be the result of enva.pve.declared_ct without vmid (a mapping with cts)")


def _pick_evidence(vmid, node, by_node):
    """``(primary node, primary CT report, [(node, incident)...] from every node)`` for one VMID."""
    found = [(name, result["cts"][str(vmid)]) for name, result in sorted(by_node.items())
             if result is not None and str(vmid) in result["cts"]]
    if not found:
        return None, None, []
    primary = next((item for item in found if item[0] == node), None)
    if primary is None:
        primary = next((item for item in found if item[1].get("config") or item[1].get("counters")), found[0])
    incidents = []
    for name, report in found:
        for incident in report.get("incidents") or []:
            incidents.append((name, incident))
    incidents.sort(key=lambda pair: pair[1].get("epoch") or 0.0)
    return primary[0], primary[1], incidents


def _fork_storm(ct_report, the_verdict):
    """``{"present", "now": [...], "in_dump", "process", "reason"}`` of one CT."""
    census = ct_report.get("census") or {}
    now = [dict(item) for item in census.get("fork_storms") or []]
    cause = the_verdict.get("likely_cause") or ""
    in_dump = " fork storm: " in cause and "in the OOM task dump" in cause
    process = now[0]["name"] if now else (cause.split(" fork storm: ", 1)[0] if " fork storm: " in cause else None)
    reason = now[0]["reason"] if now else (cause.split("; now: ", 1)[0] if in_dump else None)
    return {"present": bool(the_verdict.get("fork_storm")), "now": now, "in_dump": in_dump, "process": process,
            "reason": reason if the_verdict.get("fork_storm") else None}


def _pressure(counters):
    """PSI of the CT's memory cgroup (cgroup v2), flattened; None where the kernel has none (cgroup v1)."""
    psi = (counters or {}).get("pressure")
    if not psi:
        return None
    some, full = psi.get("some") or {}, psi.get("full") or {}
    flat = {
        "some_avg10": some.get("avg10"), "some_avg60": some.get("avg60"), "some_avg300": some.get("avg300"),
        "some_total_us": some.get("total"), "full_avg10": full.get("avg10"), "full_avg60": full.get("avg60"),
        "full_avg300": full.get("avg300"), "full_total_us": full.get("total"),
    }
    flat["stalling"] = bool((flat["some_avg60"] or 0) >= PRESSURE_SOME_AVG60
                            or (flat["full_avg60"] or 0) >= PRESSURE_FULL_AVG60)
    return flat


def _incident_entry(node, incident):
    victims = incident.get("victims_by_name") or {}
    stop = incident.get("stop") or None
    start = incident.get("next_start") or None
    return {
        "node": node,
        "start": incident.get("start"),
        "end": incident.get("end"),
        "epoch": incident.get("epoch"),
        "events": incident.get("events"),
        "partial": bool(incident.get("partial")),
        "oom_memcg": incident.get("oom_memcg"),
        "invoked_by": incident.get("invoked_by") or [],
        "victims_total": incident.get("victims_total") or 0,
        "victims_by_name": victims,
        "tasks_in_dump": incident.get("tasks_in_dump") or 0,
        "top_processes": (incident.get("top_processes") or [])[:5],
        "memory_at_oom": incident.get("memory_at_oom"),
        "stop": stop and {"event": stop.get("event"), "time": stop.get("time"),
                          "seconds_after_oom": stop.get("seconds_after_oom")},
        "next_start": start and {"event": start.get("event"), "time": start.get("time"),
                                 "seconds_after_oom": start.get("seconds_after_oom")},
        "network_down": incident.get("network_down"),
    }


def _victims_text(victims_by_name, limit=4):
    items = sorted(victims_by_name.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join("%s x%s" % (name, _thousands(count)) for name, count in items[:limit])
    if len(items) > limit:
        text += ", %d more" % (len(items) - limit)
    return text


def _drift(declared_cts, vmid, memory_mb, swap_mb):
    if declared_cts is None:
        return None
    entry = declared_cts.get(str(vmid))
    if entry is None:
        return {"state": "not_declared", "declared_memory_mb": None, "declared_swap_mb": None,
                "live_memory_mb": memory_mb, "live_swap_mb": swap_mb, "keys": [],
                "text": "not in the declared file"}
    declared = {"memory": entry.get("memory_mb"), "swap": entry.get("swap_mb")}
    live = {"memory": memory_mb, "swap": swap_mb}
    keys = [key for key in ("memory", "swap")
            if declared[key] is not None and live[key] is not None and declared[key] != live[key]]
    parts = ["%s declared %s, live %s MiB" % (key, _thousands(declared[key]), _thousands(live[key])) for key in keys]
    missing = [key for key in ("memory", "swap") if declared[key] is None]
    text = "; ".join(parts) if parts else "in sync"
    if missing and not parts:
        text = "in sync (no %s declared)" % " or ".join(missing)
    return {"state": "differs" if keys else "in_sync", "declared_memory_mb": declared["memory"],
            "declared_swap_mb": declared["swap"], "live_memory_mb": memory_mb, "live_swap_mb": swap_mb,
            "keys": keys, "text": text}


def _recommendation(vmid, memory_mb, recommended, reasoning, fork_storm, evidence_node):
    if evidence_node is None:
        return {"action": "no_evidence", "memory_mb": memory_mb, "raise_to_mb": None,
                "summary": "no evidence: audit the CT's node",
                "text": "CT %s: no node of the audit reported it, so only /cluster/resources is known; add its "
                        "node to the inventory (group pve_nodes) to audit it." % vmid}
    raise_to = recommended if (recommended is not None and memory_mb is not None and recommended > memory_mb) else None
    if fork_storm["present"]:
        summary = "fix the forking process (%s)" % (fork_storm["process"] or "see the cause")
        if raise_to:
            summary += "; raise to %s MiB meanwhile" % _thousands(raise_to)
        action = "fix_forking"
    elif raise_to:
        action, summary = "raise", "raise to %s MiB" % _thousands(raise_to)
    else:
        action = "keep"
        summary = "keep %s MiB" % _thousands(memory_mb) if memory_mb is not None else "keep"
    return {"action": action, "memory_mb": recommended if recommended is not None else memory_mb,
            "raise_to_mb": raise_to, "summary": summary, "text": reasoning}


def _score(entry):
    """A number to rank CTs by: OOM kills first, then fork storms, low headroom, memory stalls, drift."""
    oom = entry["oom"]
    score = 0.0
    if oom["killed"]:
        score += 10000 + 500 * min(oom["incidents"], 10) + min(oom["kills_in_log"] + oom["kills_counted"], 1000)
    if entry.get("stall"):
        score += 7000
    if entry["fork_storm"]["present"]:
        score += 5000
    headroom = entry["headroom_pct"]
    if headroom is not None:
        score += max(0.0, 100.0 - headroom) * (20 if headroom < HEADROOM_LOW_PCT else 1)
    if entry["pressure"] and entry["pressure"]["stalling"]:
        score += 800
    if entry["drift"] and entry["drift"]["state"] == "differs":
        score += 300
    return round(score, 1)


def _severity(entry):
    if entry["oom"]["killed"]:
        return "oom"
    if entry.get("stall"):
        return "high_stall"
    if entry["fork_storm"]["present"]:
        return "fork_storm"
    if entry["recommendation"]["action"] == "raise":
        return "low_headroom"
    if entry["pressure"] and entry["pressure"]["stalling"]:
        return "pressure"
    if entry["drift"] and entry["drift"]["state"] == "differs":
        return "drift"
    if entry["recommendation"]["action"] == "no_evidence":
        return "no_evidence"
    return "ok"


def ct_entry(vmid, resource, by_node, declared_cts):
    """The report's entry of one CT (before ranking)."""
    resource = resource or {}
    node = resource.get("node")
    evidence_node, report, incident_pairs = _pick_evidence(vmid, node, by_node)
    report = report or {}
    config = report.get("config") or {}
    counters = report.get("counters")
    census = report.get("census")
    incidents_raw = [incident for _node, incident in incident_pairs]
    if evidence_node is not None:
        the_verdict = oom_report.verdict(incidents_raw, counters, census, int(vmid))
        recommended, reasoning = oom_report.recommend(int(vmid), the_verdict, counters, config or None, incidents_raw)
    else:
        the_verdict = {"oom_killed": False, "incidents": 0, "oom_kills_in_log": 0, "oom_kills_counted": 0,
                       "likely_cause": None, "fork_storm": False, "headroom_pct": None}
        recommended, reasoning = None, None
    memory_mb = config.get("memory_mb")
    if memory_mb is None:
        memory_mb = resource.get("maxmem_mb")
    swap_mb = config.get("swap_mb")
    limit_mb = _mib((counters or {}).get("limit_bytes"))
    usage_mb = _mib((counters or {}).get("usage_bytes"))
    if usage_mb is None and resource.get("status") == "running":
        usage_mb = resource.get("mem_mb")
    peak_mb = _mib((counters or {}).get("peak_bytes"))
    headroom_pct = the_verdict.get("headroom_pct")
    base_mb = limit_mb or resource.get("maxmem_mb") or memory_mb
    if headroom_pct is None and base_mb and usage_mb is not None and resource.get("status") == "running":
        headroom_pct = round(100.0 * (base_mb - usage_mb) / base_mb, 1)
    used_for_headroom = peak_mb if peak_mb is not None else usage_mb
    headroom_mb = (base_mb - used_for_headroom) if base_mb and used_for_headroom is not None else None
    fork_storm = _fork_storm(report, the_verdict)
    victims = {}
    for incident in incidents_raw:
        for name, count in (incident.get("victims_by_name") or {}).items():
            victims[name] = victims.get(name, 0) + count
    incidents = [_incident_entry(name, incident) for name, incident in incident_pairs]
    entry = {
        "vmid": int(vmid),
        "name": resource.get("name") or config.get("hostname"),
        "node": node or evidence_node,
        "evidence_node": evidence_node,
        "status": resource.get("status") or ("running" if counters else "stopped"),
        "tags": resource.get("tags") or [],
        "memory_mb": memory_mb,
        "swap_mb": swap_mb,
        "limit_mb": limit_mb,
        "usage_mb": usage_mb,
        "peak_mb": peak_mb,
        "swap_usage_mb": _mib((counters or {}).get("swap_usage_bytes")),
        "headroom_pct": headroom_pct,
        "headroom_mb": headroom_mb,
        "cgroup_version": (counters or {}).get("cgroup_version"),
        "limit_hits": (counters or {}).get("limit_hits"),
        "oom": {
            "killed": bool(the_verdict.get("oom_killed")),
            "incidents": len(incidents),
            "kills_in_log": the_verdict.get("oom_kills_in_log") or 0,
            "kills_counted": the_verdict.get("oom_kills_counted") or 0,
            "victims_by_name": victims,
            "victims": _victims_text(victims),
            "likely_cause": the_verdict.get("likely_cause"),
            "last": incidents[-1]["start"] if incidents else None,
        },
        "incidents": incidents,
        "fork_storm": fork_storm,
        "pressure": _pressure(counters),
        "stall": the_verdict.get("stall"),
        "processes": (census or {}).get("processes"),
        "recommendation": _recommendation(vmid, memory_mb, recommended, reasoning, fork_storm, evidence_node),
        "drift": _drift(declared_cts, vmid, memory_mb, swap_mb),
    }
    entry["score"] = _score(entry)
    entry["severity"] = _severity(entry)
    return entry


def _window(by_node):
    since = [_epoch((result.get("window") or {}).get("since")) for result in by_node.values() if result]
    now = [_epoch((result.get("window") or {}).get("now")) for result in by_node.values() if result]
    since = [value for value in since if value is not None]
    now = [value for value in now if value is not None]
    return (min(since) if since else None), (max(now) if now else None)


def build_report(resources, evidence, declared=None, declared_path=None, generated=None, failed_nodes=None,
                 unreachable=None):
    """The fleet report (a JSON-ready mapping) from the audit's three sources.

    ``resources``: the result of ``pve_resources``; ``evidence``: ``{node: lxc_oom_evidence result}`` (or a
    list of ``{node, result}``), None for a node that could not be read; ``declared``: the result of
    ``declared_ct`` without vmid, or None; ``failed_nodes``: ``{node: why}`` of nodes the audit could not
    reach (list items of ``evidence`` may carry an ``error`` too); ``unreachable``: inventory hosts that
    dropped out before their evidence was read. CTs are ranked worst first.
    """
    by_node, errors = _evidence_by_node(evidence)
    failed_nodes = dict(errors, **(failed_nodes or {}))
    for host in unreachable or []:
        failed_nodes.setdefault(str(host), "unreachable, or failed before its evidence was read")
    resource_cts = _resource_cts(resources)
    declared_cts = _declared_cts(declared)
    vmids = set(int(vmid) for vmid in resource_cts)
    for result in by_node.values():
        if result:
            vmids.update(int(vmid) for vmid in result["cts"])
    entries = [ct_entry(vmid, resource_cts.get(str(vmid)), by_node, declared_cts) for vmid in vmids]
    entries.sort(key=lambda entry: (-entry["score"], SEVERITY_ORDER.index(entry["severity"]),
                                    entry["headroom_pct"] if entry["headroom_pct"] is not None else 1000.0,
                                    entry["vmid"]))
    for rank, entry in enumerate(entries, 1):
        entry["rank"] = rank
    since, now = _window(by_node)
    nodes = {}
    for entry in entries:
        if entry["node"]:
            nodes.setdefault(entry["node"], {"node": entry["node"], "cts": 0, "audited": False})["cts"] += 1
    for name, result in by_node.items():
        node = nodes.setdefault(name, {"node": name, "cts": 0, "audited": False})
        node["audited"] = result is not None
        if result:
            node["kernel_log"] = (result.get("sources") or {}).get("kernel_log")
            node["lifecycle_log"] = (result.get("sources") or {}).get("lifecycle_log")
            node["unattributed_events"] = len(result.get("unattributed_events") or [])
    for name, why in failed_nodes.items():
        nodes.setdefault(name, {"node": name, "cts": 0, "audited": False})["error"] = why
    timeline = []
    for entry in entries:
        for incident in entry["incidents"]:
            timeline.append({"vmid": entry["vmid"], "name": entry["name"], "node": incident["node"],
                             "start": incident["start"], "epoch": incident["epoch"],
                             "victims_total": incident["victims_total"], "victims": _victims_text(
                                 incident["victims_by_name"]), "cause": entry["oom"]["likely_cause"]})
    timeline.sort(key=lambda item: (item["epoch"] or 0.0, item["vmid"]))
    remediation = [{"vmid": entry["vmid"], "node": entry["node"], "from_mb": entry["memory_mb"],
                    "to_mb": entry["recommendation"]["raise_to_mb"], "action": entry["recommendation"]["action"]}
                   for entry in entries if entry["recommendation"]["raise_to_mb"]]
    declared_missing = []
    if declared_cts is not None:
        declared_missing = sorted(int(vmid) for vmid in declared_cts if int(vmid) not in vmids)
    summary = {
        "cts": len(entries),
        "running": sum(1 for entry in entries if entry["status"] == "running"),
        "nodes": len(nodes),
        "oom_killed": [entry["vmid"] for entry in entries if entry["oom"]["killed"]],
        "fork_storm": [entry["vmid"] for entry in entries if entry["fork_storm"]["present"]],
        "raise": [entry["vmid"] for entry in entries if entry["recommendation"]["raise_to_mb"]],
        "low_headroom": [entry["vmid"] for entry in entries if entry["headroom_pct"] is not None
                         and entry["headroom_pct"] < HEADROOM_LOW_PCT],
        "pressure": [entry["vmid"] for entry in entries if entry["pressure"] and entry["pressure"]["stalling"]],
        "drift": [entry["vmid"] for entry in entries if entry["drift"] and entry["drift"]["state"] == "differs"],
        "not_declared": [entry["vmid"] for entry in entries
                         if entry["drift"] and entry["drift"]["state"] == "not_declared"],
        "no_evidence": [entry["vmid"] for entry in entries if entry["evidence_node"] is None],
        "incidents": len(timeline),
        "by_severity": dict((severity, sum(1 for entry in entries if entry["severity"] == severity))
                            for severity in SEVERITY_ORDER),
    }
    return {
        "format": FORMAT_VERSION,
        "generated": generated or _iso(now),
        "window": {"since": _iso(since), "now": _iso(now), "since_epoch": since, "now_epoch": now},
        "summary": summary,
        "nodes": [nodes[name] for name in sorted(nodes)],
        "declared": None if declared_cts is None else {"path": declared_path, "cts": len(declared_cts),
                                                       "missing_from_cluster": declared_missing},
        "cts": entries,
        "timeline": timeline,
        "remediation": remediation,
    }


# --- text helpers shared by the renderers ---------------------------------------------------------------------------

def _mb(value):
    return "-" if value is None else _thousands(value)


def _pct(value):
    return "-" if value is None else "%s%%" % (int(value) if float(value).is_integer() else value)


def _memory_cell(entry):
    return "%s / %s" % (_mb(entry["memory_mb"]), _mb(entry["swap_mb"]))


def _usage_cell(entry):
    return "%s / %s" % (_mb(entry["usage_mb"]), _mb(entry["peak_mb"]))


def _oom_cell(entry):
    oom = entry["oom"]
    if not oom["killed"]:
        return "-"
    kills = oom["kills_in_log"] or oom["kills_counted"]
    text = "%d incident(s), %s kill(s)" % (oom["incidents"], _thousands(kills))
    if oom["victims"]:
        text += ": " + oom["victims"]
    return text


def _storm_cell(entry):
    storm = entry["fork_storm"]
    if not storm["present"]:
        return "-"
    return storm["reason"] or "yes"


def _pressure_cell(entry):
    psi = entry["pressure"]
    if psi is None:
        return "n/a"
    return "some %s / full %s" % (psi["some_avg60"], psi["full_avg60"])


def _drift_cell(entry):
    drift = entry["drift"]
    if drift is None:
        return None
    return drift["text"]


def _md(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


# --- Markdown -------------------------------------------------------------------------------------------------------

def render_markdown(report, max_rows=None):
    """The report as Markdown for a ticket: summary, the ranked table, then the findings CT by CT."""
    summary = report["summary"]
    with_drift = report["declared"] is not None
    lines = [
        "# Fleet OOM audit",
        "",
        "Generated %s; window %s to %s; %s CTs on %d node(s)." % (
            report["generated"], report["window"]["since"] or "the start of the logs", report["window"]["now"],
            _thousands(summary["cts"]), summary["nodes"]),
        "",
        "| | CTs |",
        "|---|---:|",
        "| OOM-killed in the window | %d |" % len(summary["oom_killed"]),
        "| fork storms | %d |" % len(summary["fork_storm"]),
        "| memory to raise | %d |" % len(summary["raise"]),
        "| headroom under %d%% | %d |" % (HEADROOM_LOW_PCT, len(summary["low_headroom"])),
        "| memory pressure stalls | %d |" % len(summary["pressure"]),
    ]
    if with_drift:
        lines.append("| declared and live differ | %d |" % len(summary["drift"]))
    if summary["no_evidence"]:
        lines.append("| no evidence (node not audited) | %d |" % len(summary["no_evidence"]))
    lines += ["", "## Ranked CTs", ""]
    header = ["#", "CT", "name", "node", "status", "memory / swap MiB", "used now / peak MiB", "headroom",
              "OOM kills", "fork storm", "PSI avg60", "recommendation"]
    if with_drift:
        header.insert(-1, "declared vs live")
    lines.append("| %s |" % " | ".join(header))
    lines.append("|%s|" % "|".join("---:" if name in ("#", "CT", "headroom") else "---" for name in header))
    rows = report["cts"] if max_rows is None else report["cts"][:max_rows]
    for entry in rows:
        cells = [entry["rank"], entry["vmid"], entry["name"] or "-", entry["node"] or "-", entry["status"] or "-",
                 _memory_cell(entry), _usage_cell(entry), _pct(entry["headroom_pct"]), _oom_cell(entry),
                 _storm_cell(entry), _pressure_cell(entry), entry["recommendation"]["summary"]]
        if with_drift:
            cells.insert(-1, _drift_cell(entry))
        lines.append("| %s |" % " | ".join(_md(cell) for cell in cells))
    if max_rows is not None and len(report["cts"]) > max_rows:
        lines += ["", "(%s more CTs in the JSON report)" % _thousands(len(report["cts"]) - max_rows)]
    flagged = [entry for entry in report["cts"] if entry["severity"] != "ok"]
    if flagged:
        lines += ["", "## Findings", ""]
    for entry in flagged:
        title = "### CT %d %s (node %s): %s" % (
            entry["vmid"], entry["name"] or "", entry["node"] or "?", SEVERITY_LABEL[entry["severity"]])
        lines += [title, ""]
        if entry["oom"]["likely_cause"]:
            lines.append("- Likely cause: %s" % entry["oom"]["likely_cause"])
        for incident in entry["incidents"]:
            lines.append("- OOM incident %s (node %s): %s victim(s)%s%s%s" % (
                incident["start"], incident["node"], _thousands(incident["victims_total"]),
                ": " + _victims_text(incident["victims_by_name"]) if incident["victims_by_name"] else "",
                "; %s %s s later" % (incident["stop"]["event"], incident["stop"]["seconds_after_oom"])
                if incident["stop"] else "",
                "; started again %s" % incident["next_start"]["time"] if incident["next_start"] else ""))
        if entry.get("stall"):
            lines.append("- At risk, stuck at memory.high: %s" % entry["stall"]["reason"])
        if entry["fork_storm"]["present"] and entry["fork_storm"]["reason"]:
            lines.append("- Fork storm: %s" % entry["fork_storm"]["reason"])
        if entry["pressure"] and entry["pressure"]["stalling"]:
            lines.append("- Memory pressure: %s (avg60, percent of time)" % _pressure_cell(entry))
        if entry["drift"] and entry["drift"]["state"] == "differs":
            lines.append("- Declared vs live: %s" % entry["drift"]["text"])
        lines.append("- Recommendation: **%s**. %s" % (
            entry["recommendation"]["summary"], entry["recommendation"]["text"] or ""))
        lines.append("")
    if report["declared"] and report["declared"]["missing_from_cluster"]:
        lines += ["Declared in %s but not in the cluster: %s" % (
            report["declared"]["path"], ", ".join(str(vmid) for vmid in report["declared"]["missing_from_cluster"])),
            ""]
    missing = [node for node in report["nodes"] if not node["audited"]]
    if missing:
        lines += ["Nodes without evidence: %s" % ", ".join(
            "%s (%s)" % (node["node"], node.get("error") or "not in the inventory") for node in missing), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# --- HTML and its SVG charts --------------------------------------------------------------------------------------------

def _e(value):
    return html.escape("" if value is None else str(value), quote=True)


def _label(entry, width=26):
    text = "%d %s" % (entry["vmid"], entry["name"] or "")
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def _svg_open(chart_id, width, height, title):
    """The opening ``<svg>`` of a chart and its ``<title>`` (what screen readers and the tests find)."""
    return ('<svg xmlns="http://www.w3.org/2000/svg" id="%s" class="chart" role="img" width="%d" height="%d" '
            'viewBox="0 0 %d %d" aria-labelledby="%s-title"><title id="%s-title">%s</title>' % (
                chart_id, width, height, width, height, chart_id, chart_id, _e(title)))


def svg_headroom(report, limit=CHART_CTS):
    """Memory per CT as a share of its limit: used now (dark), peak (light), the rest is headroom."""
    entries = [entry for entry in report["cts"] if (entry["limit_mb"] or entry["memory_mb"])][:limit]
    row, top, left, bar_width = 20, 34, 210, 520
    width = left + bar_width + 250
    height = top + row * max(len(entries), 1) + 30
    parts = [
        _svg_open("chart-headroom", width, height,
                  "Memory headroom per CT (share of the limit used now and at the peak)"),
        '<text x="%d" y="14" class="axis">0%%</text>' % left,
        '<text x="%d" y="14" class="axis" text-anchor="middle">%d%%</text>' % (
            left + bar_width * (100 - HEADROOM_LOW_PCT) / 100.0, 100 - HEADROOM_LOW_PCT),
        '<text x="%d" y="14" class="axis" text-anchor="end">100%%</text>' % (left + bar_width),
    ]
    if not entries:
        parts.append('<text x="%d" y="%d" class="empty">No CT with a known memory limit</text>' % (left, top + 14))
    for index, entry in enumerate(entries):
        y = top + index * row
        limit_mb = entry["limit_mb"] or entry["memory_mb"]
        used = entry["usage_mb"] or 0
        peak = entry["peak_mb"] if entry["peak_mb"] is not None else used
        used_w = min(bar_width, bar_width * used / float(limit_mb))
        peak_w = min(bar_width, bar_width * peak / float(limit_mb))
        color = COLORS[entry["severity"]]
        headroom = _pct(entry["headroom_pct"]) if entry["headroom_pct"] is not None else "n/a"
        tip = "CT %d %s: limit %s MiB, used %s MiB, peak %s MiB, headroom %s" % (
            entry["vmid"], entry["name"] or "", _mb(limit_mb), _mb(entry["usage_mb"]), _mb(entry["peak_mb"]), headroom)
        parts.append('<g class="bar" data-vmid="%d"><title>%s</title>' % (entry["vmid"], _e(tip)))
        parts.append('<text x="%d" y="%d" class="label" text-anchor="end">%s</text>' % (
            left - 8, y + 13, _e(_label(entry))))
        parts.append('<rect x="%d" y="%d" width="%d" height="14" class="limit"/>' % (left, y + 2, bar_width))
        parts.append('<rect x="%d" y="%d" width="%.1f" height="14" fill="%s" fill-opacity="0.35" class="peak"/>' % (
            left, y + 2, peak_w, color))
        parts.append('<rect x="%d" y="%d" width="%.1f" height="14" fill="%s" class="used"/>' % (
            left, y + 2, used_w, color))
        parts.append('<text x="%d" y="%d" class="value">%s headroom, %s MiB limit</text></g>' % (
            left + bar_width + 8, y + 13, _e(headroom), _e(_mb(limit_mb))))
    mark = left + bar_width * (100 - HEADROOM_LOW_PCT) / 100.0
    parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" class="threshold"/>' % (
        mark, top - 4, mark, top + row * max(len(entries), 1)))
    more = len([entry for entry in report["cts"] if (entry["limit_mb"] or entry["memory_mb"])]) - len(entries)
    note = "Dark: used now; light: peak; the rest is headroom. The dashed line marks %d%% headroom." % HEADROOM_LOW_PCT
    if more > 0:
        note += " %s more CTs in the table." % _thousands(more)
    parts.append('<text x="%d" y="%d" class="note">%s</text>' % (left, height - 8, _e(note)))
    parts.append("</svg>")
    return "\n".join(parts)


def _ticks(start, end, count=6):
    if end <= start:
        return [start]
    step = (end - start) / float(count - 1)
    return [start + step * index for index in range(count)]


def svg_timeline(report, limit=TIMELINE_CTS):
    """OOM incidents on a time axis over the window, one row per CT; a dot's area grows with its kills."""
    rows = []
    for entry in report["cts"]:
        if entry["incidents"] and len(rows) < limit:
            rows.append(entry)
    epochs = [incident["epoch"] for entry in rows for incident in entry["incidents"] if incident["epoch"] is not None]
    start = report["window"]["since_epoch"]
    end = report["window"]["now_epoch"]
    if epochs:
        start = min([start] + epochs) if start is not None else min(epochs)
        end = max([end] + epochs) if end is not None else max(epochs)
    if start is None or end is None:
        start = end = 0.0
    if end - start < 60:
        start, end = start - 30, end + 30
    row, top, left, span, pad = 24, 40, 210, 700, 14
    width = left + span + 40
    height = top + row * max(len(rows), 1) + 34
    parts = [
        _svg_open("chart-timeline", width, height,
                  "OOM incidents on a timeline (%s to %s)" % (_iso(start), _iso(end))),
    ]
    bottom = top + row * max(len(rows), 1)
    parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" class="axisline"/>' % (left, bottom, left + span, bottom))
    for tick in _ticks(start, end):
        x = left + pad + (span - 2 * pad) * (tick - start) / (end - start)
        stamp = datetime.datetime.fromtimestamp(tick, datetime.timezone.utc).strftime("%m-%d %H:%M")
        parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" class="grid"/>' % (x, top - 6, x, bottom))
        parts.append('<text x="%.1f" y="%d" class="axis" text-anchor="middle">%s</text>' % (x, bottom + 16, stamp))
    parts.append('<text x="%d" y="%d" class="axis" text-anchor="end">UTC</text>' % (left + span, bottom + 30))
    if not rows:
        parts.append('<text x="%d" y="%d" class="empty">No OOM incident in the window</text>' % (left + 10, top + 14))
    for index, entry in enumerate(rows):
        y = top + index * row + row / 2.0
        parts.append('<text x="%d" y="%.1f" class="label" text-anchor="end">%s</text>' % (
            left - 8, y + 4, _e(_label(entry))))
        parts.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="lane"/>' % (left, y, left + span, y))
        for incident in entry["incidents"]:
            if incident["epoch"] is None:
                continue
            x = left + pad + (span - 2 * pad) * (incident["epoch"] - start) / (end - start)
            kills = max(incident["victims_total"], 1)
            radius = min(4 + 2.5 * math.sqrt(kills), 11)
            tip = "CT %d %s, %s: %s victim(s) %s" % (
                entry["vmid"], entry["name"] or "", incident["start"], _thousands(incident["victims_total"]),
                _victims_text(incident["victims_by_name"]))
            parts.append('<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s" class="incident" data-vmid="%d">'
                         '<title>%s</title></circle>' % (x, y, radius, COLORS[entry["severity"]], entry["vmid"],
                                                         _e(tip)))
    parts.append("</svg>")
    return "\n".join(parts)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;color:#1c2833;
background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:15px;margin:18px 0 4px}
.meta{color:#566573;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #d5d8dc;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:22px}
.card.oom b{color:#c0392b}.card.fork_storm b{color:#d35400}.card.raise b{color:#b7950b}
.chart{max-width:100%;height:auto;border:1px solid #eaecee;border-radius:6px;background:#fbfcfc}
.chart .label,.chart .value,.chart .axis,.chart .note,.chart .empty{font-size:12px;fill:#1c2833}
.chart .note{fill:#566573}.chart .limit{fill:#eaecee}
.chart .threshold{stroke:#566573;stroke-dasharray:4 3}
.chart .grid{stroke:#eaecee}.chart .lane{stroke:#d5d8dc}.chart .axisline{stroke:#566573}
.chart .incident{stroke:#fff;stroke-width:1}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #eaecee;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f4f6f6;position:sticky;top:0}
td.num{text-align:right;white-space:nowrap}
tr.sev-oom td:first-child{border-left:4px solid #c0392b}
tr.sev-fork_storm td:first-child{border-left:4px solid #d35400}
tr.sev-low_headroom td:first-child{border-left:4px solid #b7950b}
tr.sev-pressure td:first-child{border-left:4px solid #8e44ad}
tr.sev-drift td:first-child{border-left:4px solid #2471a3}
tr.sev-no_evidence td:first-child{border-left:4px solid #7f8c8d}
tr.sev-ok td:first-child{border-left:4px solid #1e8449}
.badge{display:inline-block;border-radius:3px;padding:0 5px;color:#fff;font-size:12px;white-space:nowrap}
.finding{border-left:3px solid #d5d8dc;padding-left:10px;margin:10px 0}
code{font-size:12px}
"""


def _td(value, numeric=False, cls=None):
    classes = " ".join(name for name in ("num" if numeric else None, cls) if name)
    return "<td%s>%s</td>" % (' class="%s"' % classes if classes else "", _e(value))


def render_html(report):
    """The report as one self-contained HTML page: summary cards, two SVG charts, the ranked table, findings."""
    summary = report["summary"]
    with_drift = report["declared"] is not None
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be fetched: the page is read offline, attached to tickets, opened from a mail.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; '
        'img-src data:">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Fleet OOM audit %s</title>" % _e(report["generated"]),
        "<style>%s</style></head><body>" % CSS,
        "<h1>Fleet OOM audit</h1>",
        '<p class="meta">Generated %s &middot; window %s to %s &middot; %s CTs on %d node(s)</p>' % (
            _e(report["generated"]), _e(report["window"]["since"] or "the start of the logs"),
            _e(report["window"]["now"]), _e(_thousands(summary["cts"])), summary["nodes"]),
        '<div class="cards">',
    ]
    cards = [("oom", "OOM-killed", len(summary["oom_killed"])), ("fork_storm", "fork storms", len(summary["fork_storm"])),
             ("raise", "memory to raise", len(summary["raise"])),
             ("low", "headroom &lt; %d%%" % HEADROOM_LOW_PCT, len(summary["low_headroom"])),
             ("pressure", "memory stalls", len(summary["pressure"])), ("running", "running", summary["running"])]
    if with_drift:
        cards.append(("drift", "declared &ne; live", len(summary["drift"])))
    for cls, label, count in cards:
        out.append('<div class="card %s"><b>%s</b>%s</div>' % (cls, _e(_thousands(count)), label))
    out.append("</div>")
    out.append("<h2>Memory headroom per CT</h2>")
    out.append(svg_headroom(report))
    out.append("<h2>OOM incidents on a timeline</h2>")
    out.append(svg_timeline(report))
    out.append("<h2>Ranked CTs</h2>")
    header = ["#", "CT", "name", "node", "status", "memory / swap MiB", "used now / peak MiB", "headroom",
              "OOM kills in the window", "fork storm", "PSI avg60 some / full", "recommendation"]
    if with_drift:
        header.insert(-1, "declared vs live")
    out.append('<table id="ranked"><thead><tr>%s</tr></thead><tbody>' % "".join(
        "<th>%s</th>" % _e(name) for name in header))
    for entry in report["cts"]:
        color = COLORS[entry["severity"]]
        cells = [
            _td(entry["rank"], True), _td(entry["vmid"], True), _td(entry["name"] or "-"), _td(entry["node"] or "-"),
            _td(entry["status"] or "-"), _td(_memory_cell(entry), True), _td(_usage_cell(entry), True),
            _td(_pct(entry["headroom_pct"]), True), _td(_oom_cell(entry)), _td(_storm_cell(entry)),
            _td(_pressure_cell(entry)),
        ]
        if with_drift:
            cells.append(_td(_drift_cell(entry), cls="drift-%s" % entry["drift"]["state"]))
        cells.append('<td><span class="badge" style="background:%s">%s</span> %s</td>' % (
            color, _e(SEVERITY_LABEL[entry["severity"]]), _e(entry["recommendation"]["summary"])))
        out.append('<tr class="sev-%s" data-vmid="%d">%s</tr>' % (entry["severity"], entry["vmid"], "".join(cells)))
    out.append("</tbody></table>")
    flagged = [entry for entry in report["cts"] if entry["severity"] not in ("ok", "no_evidence")]
    if flagged:
        out.append("<h2>Findings</h2>")
    for entry in flagged:
        out.append('<div class="finding" id="ct-%d"><h3>CT %d %s (node %s): %s</h3><ul>' % (
            entry["vmid"], entry["vmid"], _e(entry["name"] or ""), _e(entry["node"] or "?"),
            _e(SEVERITY_LABEL[entry["severity"]])))
        if entry["oom"]["likely_cause"]:
            out.append("<li>Likely cause: %s</li>" % _e(entry["oom"]["likely_cause"]))
        for incident in entry["incidents"]:
            after = ""
            if incident["stop"]:
                after = "; %s %s s later" % (incident["stop"]["event"], incident["stop"]["seconds_after_oom"])
            if incident["next_start"]:
                after += "; started again %s" % incident["next_start"]["time"]
            out.append("<li>OOM incident %s (node %s): %s victim(s)%s%s</li>" % (
                _e(incident["start"]), _e(incident["node"]), _e(_thousands(incident["victims_total"])),
                _e(": " + _victims_text(incident["victims_by_name"])) if incident["victims_by_name"] else "",
                _e(after)))
        if entry["fork_storm"]["present"] and entry["fork_storm"]["reason"]:
            out.append("<li>Fork storm: %s</li>" % _e(entry["fork_storm"]["reason"]))
        if entry["pressure"] and entry["pressure"]["stalling"]:
            out.append("<li>Memory pressure (avg60, percent of time): %s</li>" % _e(_pressure_cell(entry)))
        if entry["drift"] and entry["drift"]["state"] == "differs":
            out.append("<li>Declared vs live: %s</li>" % _e(entry["drift"]["text"]))
        out.append("<li>Recommendation: <b>%s</b>. %s</li></ul></div>" % (
            _e(entry["recommendation"]["summary"]), _e(entry["recommendation"]["text"] or "")))
    notes = []
    if report["declared"] and report["declared"]["missing_from_cluster"]:
        notes.append("Declared in %s but not in the cluster: %s" % (
            report["declared"]["path"], ", ".join(str(vmid) for vmid in report["declared"]["missing_from_cluster"])))
    missing = [node for node in report["nodes"] if not node["audited"]]
    if missing:
        notes.append("Nodes without evidence: %s" % ", ".join(
            "%s (%s)" % (node["node"], node.get("error") or "not in the inventory") for node in missing))
    for note in notes:
        out.append('<p class="meta">%s</p>' % _e(note))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# --- remediation -----------------------------------------------------------------------------------------------------

def plan_remediation(report, cluster_now, vmids=None, max_mb=None):
    """``{"raise": [...], "skipped": [...]}``: the report's raises, checked against memory read just now.

    Memory is only ever raised: a CT that has the recommended size or more by now (``cluster_now``, a
    ``pve_resources`` result read just before) is skipped, as are CTs not in ``vmids`` (when given), above
    ``max_mb``, or gone from the cluster. Each raise has ``vmid``, ``node`` (where it is now), ``now_mb``,
    ``to_mb`` and ``declared_mb`` (the declared file's memory, None without one or when not declared).
    """
    now = _resource_cts(cluster_now)
    wanted = set(int(vmid) for vmid in vmids) if vmids else None
    declared = dict((entry["vmid"], entry["drift"]["declared_memory_mb"]) for entry in report["cts"] if entry["drift"])
    chosen, skipped = [], []
    for item in report["remediation"]:
        live = now.get(str(item["vmid"]))
        why = None
        if wanted is not None and item["vmid"] not in wanted:
            why = "not in oom_audit_remediate_vmids"
        elif max_mb is not None and item["to_mb"] > int(max_mb):
            why = "above oom_audit_remediate_max_mb (%s MiB): raise it by hand if that is right" % _thousands(int(max_mb))
        elif live is None:
            why = "no longer in /cluster/resources"
        elif live.get("maxmem_mb") is None:
            why = "/cluster/resources does not say how much memory it has now"
        elif live["maxmem_mb"] >= item["to_mb"]:
            why = "it has %s MiB by now (memory is never lowered)" % _thousands(live["maxmem_mb"])
        if why:
            skipped.append({"vmid": item["vmid"], "to_mb": item["to_mb"], "why": why})
            continue
        chosen.append({"vmid": item["vmid"], "node": live["node"], "now_mb": live["maxmem_mb"], "to_mb": item["to_mb"],
                       "declared_mb": declared.get(item["vmid"])})
    return {"raise": chosen, "skipped": skipped}
