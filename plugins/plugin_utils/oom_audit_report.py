# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet OOM audit report, built on the controller from what the audit gathered.

* :func:`build_report` joins ``/cluster/resources`` (module ``pve_resources``), the evidence of each node
  (module ``lxc_oom_evidence``, one run per node for all its CTs) and, optionally, the declared CTs of a site
  file (module ``declared_ct``) into one ranked report: one entry per CT with its configured and used memory,
  headroom, OOM incidents, fork storms, pressure stalls, a recommendation and the drift from the declared file;
* :func:`plan_remediation` checks the report's raises against memory read just before changing any.

The report is the data; ``oom_audit_findings`` turns it into what a reader needs first (the CTs that need action,
the command that remediates them) and ``oom_audit_render`` lays that out with two Jinja2 templates (Markdown,
HTML), so the two formats cannot disagree.

Everything is a pure function over plain data, so the filters (``enva.pve.oom_audit_*``), the tests and the
benchmark call the same code.
"""

from __future__ import absolute_import, division, print_function

import datetime
import time

from ansible_collections.enva.pve.plugins.module_utils import memory_policy, oom_report
from ansible_collections.enva.pve.plugins.module_utils.report_format import iso_seconds, mib, thousands

__metaclass__ = type

FORMAT_VERSION = 1
HEADROOM_LOW_PCT = oom_report.HEADROOM_LOW_PCT
PRESSURE_SOME_AVG60 = 10.0
"""PSI ``some avg60`` (percent of time some task stalled on memory) from which a CT counts as stalling."""
PRESSURE_FULL_AVG60 = 1.0
"""PSI ``full avg60`` (percent of time all tasks stalled) from which a CT counts as stalling."""
SEVERITY_ORDER = ("oom", "high_stall", "fork_storm", "low_headroom", "pressure", "drift", "no_evidence", "resolved",
                  "ok")
SEVERITY_LABEL = {
    "oom": "OOM-killed", "high_stall": "at risk: stalled at memory.high", "fork_storm": "fork storm",
    "low_headroom": "low headroom", "pressure": "memory stalls", "drift": "drift", "no_evidence": "no evidence",
    "resolved": "resolved: incidents in the window, their causes gone now", "ok": "ok",
}
COLORS = {
    "oom": "#c0392b", "high_stall": "#e74c3c", "fork_storm": "#d35400", "low_headroom": "#b7950b",
    "pressure": "#8e44ad",
    "drift": "#2471a3", "no_evidence": "#7f8c8d", "resolved": "#27ae60", "ok": "#1e8449",
}
RESOLVED_USAGE_PCT = 90.0
"""A CT stuck at memory.high earlier counts as relieved once it uses less than this (percent of memory.high)."""


class ReportError(Exception):
    """Input the report cannot be built from; the message says which and why."""


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
    text = ", ".join("%s x%s" % (name, thousands(count)) for name, count in items[:limit])
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
    parts = ["%s declared %s, live %s MiB" % (key, thousands(declared[key]), thousands(live[key])) for key in keys]
    missing = [key for key in ("memory", "swap") if declared[key] is None]
    text = "; ".join(parts) if parts else "in sync"
    if missing and not parts:
        text = "in sync (no %s declared)" % " or ".join(missing)
    return {"state": "differs" if keys else "in_sync", "declared_memory_mb": declared["memory"],
            "declared_swap_mb": declared["swap"], "live_memory_mb": memory_mb, "live_swap_mb": swap_mb,
            "keys": keys, "text": text}


def _resolution(status, census, the_verdict, fork_storm, recommended, memory_mb):
    """Why a CT with incidents in the window is no longer at risk, or None while it still is.

    Resolved means every cause is gone *now*, read live: the CT runs and was counted (census), its memory
    is at least what the incidents call for (no raise left), no fork storm runs in it (the storm seen in an
    OOM task dump has no process left), and no stall at memory.high goes on (it uses less than
    RESOLVED_USAGE_PCT of memory.high). The incidents stay in the report and its timeline."""
    stall = the_verdict.get("stall") or {}
    if not (the_verdict.get("oom_killed") or stall or fork_storm["present"]):
        return None
    if status != "running" or not census or fork_storm["now"] or memory_mb is None:
        return None
    if recommended is not None and recommended > memory_mb:
        return None
    if stall and (stall.get("ongoing") or (stall.get("usage_pct_of_high") or 0) >= RESOLVED_USAGE_PCT):
        return None
    parts = ["%s MiB now covers what the incidents call for" % thousands(memory_mb)]
    if fork_storm["present"] and fork_storm["process"]:
        counts = dict((item.get("name"), item.get("count")) for item in census.get("by_command") or [])
        parts.append("%s process(es) of %s now (the fork storm is gone)" % (
            thousands(counts.get(fork_storm["process"], 0)), fork_storm["process"]))
    if stall:
        parts.append("it uses %s%% of memory.high now" % stall.get("usage_pct_of_high"))
    return "; ".join(parts)


def _recommendation(vmid, memory_mb, recommended, reasoning, fork_storm, evidence_node, resolved=None):
    if evidence_node is None:
        return {"action": "no_evidence", "memory_mb": memory_mb, "raise_to_mb": None,
                "summary": "no evidence: audit the CT's node",
                "text": "CT %s: no node of the audit reported it, so only /cluster/resources is known; add its "
                        "node to the inventory (group pve_nodes) to audit it." % vmid}
    raise_to = recommended if (recommended is not None and memory_mb is not None and recommended > memory_mb) else None
    if resolved:
        return {"action": "keep", "memory_mb": memory_mb, "raise_to_mb": None,
                "summary": "keep %s MiB: resolved" % thousands(memory_mb),
                "text": "%s Resolved: %s." % (reasoning, resolved)}
    if fork_storm["present"]:
        summary = "fix the forking process (%s)" % (fork_storm["process"] or "see the cause")
        if raise_to:
            summary += "; raise to %s MiB meanwhile" % thousands(raise_to)
        action = "fix_forking"
    elif raise_to:
        action, summary = "raise", "raise to %s MiB" % thousands(raise_to)
    else:
        action = "keep"
        summary = "keep %s MiB" % thousands(memory_mb) if memory_mb is not None else "keep"
    return {"action": action, "memory_mb": recommended if recommended is not None else memory_mb,
            "raise_to_mb": raise_to, "summary": summary, "text": reasoning}


def _score(entry):
    """A number to rank CTs by: OOM kills first, then fork storms, low headroom, memory stalls, drift; a
    resolved CT (its incidents' causes gone now) after every CT still at risk."""
    oom = entry["oom"]
    score = 0.0
    if entry.get("resolved"):
        return 1.0
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
    if entry.get("resolved"):
        return "resolved"
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
    api_pressure = resource.get("pressure")
    if evidence_node is not None:
        the_verdict = oom_report.verdict(incidents_raw, counters, census, int(vmid), api_pressure)
        if not the_verdict.get("likely_cause") and (report.get("flight") or {}).get("cause"):
            the_verdict["likely_cause"] = report["flight"]["cause"]      # the watch's flight record names it
        recommended, reasoning = oom_report.recommend(int(vmid), the_verdict, counters, config or None, incidents_raw)
    else:
        the_verdict = {"oom_killed": False, "incidents": 0, "oom_kills_in_log": 0, "oom_kills_counted": 0,
                       "likely_cause": None, "fork_storm": False, "headroom_pct": None}
        recommended, reasoning = None, None
    memory_mb = config.get("memory_mb")
    if memory_mb is None:
        memory_mb = resource.get("maxmem_mb")
    swap_mb = config.get("swap_mb")
    limit_mb = mib((counters or {}).get("limit_bytes"))
    usage_mb = mib((counters or {}).get("usage_bytes"))
    if usage_mb is None and resource.get("status") == "running":
        usage_mb = resource.get("mem_mb")
    peak_mb = mib((counters or {}).get("peak_bytes"))
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
    status = resource.get("status") or ("running" if counters else "stopped")
    resolved = _resolution(status, census, the_verdict, fork_storm, recommended, memory_mb) \
        if evidence_node is not None else None
    entry = {
        "vmid": int(vmid),
        "name": resource.get("name") or config.get("hostname"),
        "node": node or evidence_node,
        "evidence_node": evidence_node,
        "status": status,
        "tags": resource.get("tags") or [],
        "memory_mb": memory_mb,
        "swap_mb": swap_mb,
        "limit_mb": limit_mb,
        "usage_mb": usage_mb,
        "peak_mb": peak_mb,
        "swap_usage_mb": mib((counters or {}).get("swap_usage_bytes")),
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
            # False when the node's kernel log has a gap in the window (lxc_oom_evidence sources.kernel_log.gaps):
            # no OOM seen there is not no OOM; None without evidence.
            "kernel_log_complete": (report.get("verdict") or {}).get("kernel_log_complete", True)
            if evidence_node is not None else None,
            "lifecycle_log_complete": (report.get("verdict") or {}).get("lifecycle_log_complete", True)
            if evidence_node is not None else None,
            "log_gaps": list((report.get("verdict") or {}).get("log_gaps") or []),
        },
        "incidents": incidents,
        "fork_storm": fork_storm,
        "pressure": _pressure(counters),
        # The node's view of a stall at memory.high (memory.events, PSI) when its evidence has one, else the
        # PVE API's (PVE 9 pressure fields): a CT whose node cannot be reached is named all the same.
        "stall": the_verdict.get("stall") or resource.get("stall"),
        "api_pressure": api_pressure,
        "processes": (census or {}).get("processes"),
        "recommendation": _recommendation(vmid, memory_mb, recommended, reasoning, fork_storm, evidence_node,
                                          resolved),
        "resolved": resolved,
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
    when = generated or iso_seconds(time.time())
    for host in unreachable or []:
        failed_nodes.setdefault(str(host), "unreachable over SSH at %s, or failed before its evidence was read" % when)
    node_status = resources.get("nodes") if isinstance(resources, dict) else None
    for name, node in sorted((node_status or {}).items()):
        if isinstance(node, dict) and node.get("status") not in (None, "online"):
            failed_nodes.setdefault(str(name), "%s in /cluster/resources at %s (its CTs' status unknown)"
                                    % (node["status"], when))
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
        "resolved": [entry["vmid"] for entry in entries if entry["resolved"]],
        "low_headroom": [entry["vmid"] for entry in entries if entry["headroom_pct"] is not None
                         and entry["headroom_pct"] < HEADROOM_LOW_PCT],
        "pressure": [entry["vmid"] for entry in entries if entry["pressure"] and entry["pressure"]["stalling"]],
        "drift": [entry["vmid"] for entry in entries if entry["drift"] and entry["drift"]["state"] == "differs"],
        "not_declared": [entry["vmid"] for entry in entries
                         if entry["drift"] and entry["drift"]["state"] == "not_declared"],
        "no_evidence": [entry["vmid"] for entry in entries if entry["evidence_node"] is None],
        "kernel_log_incomplete": [entry["vmid"] for entry in entries if entry["oom"]["kernel_log_complete"] is False],
        "incidents": len(timeline),
        "by_severity": dict((severity, sum(1 for entry in entries if entry["severity"] == severity))
                            for severity in SEVERITY_ORDER),
    }
    return {
        "format": FORMAT_VERSION,
        "generated": generated or iso_seconds(now),
        "window": {"since": iso_seconds(since), "now": iso_seconds(now), "since_epoch": since, "now_epoch": now},
        "summary": summary,
        "nodes": [nodes[name] for name in sorted(nodes)],
        "declared": None if declared_cts is None else {"path": declared_path, "cts": len(declared_cts),
                                                       "missing_from_cluster": declared_missing},
        "cts": entries,
        "timeline": timeline,
        "remediation": remediation,
    }


# --- remediation -----------------------------------------------------------------------------------------------------

def plan_remediation(report, cluster_now, vmids=None, max_mb=None):
    """``{"raise": [...], "skipped": [...]}``: the report's raises, checked against memory read just now.

    ``cluster_now``: a ``pve_resources`` result read just before. The decision is the collection's one memory
    policy (:func:`memory_policy.plan_raises`): memory is only ever raised, and only for CTs in ``vmids``
    (when given), at most ``max_mb``, and still in the cluster.
    """
    declared = dict((entry["vmid"], entry["drift"]["declared_memory_mb"]) for entry in report["cts"] if entry["drift"])
    return memory_policy.plan_raises(report["remediation"], _resource_cts(cluster_now), declared_mb=declared,
                                     vmids=vmids, max_mb=max_mb)
