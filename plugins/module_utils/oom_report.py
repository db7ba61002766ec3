# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel OOM events, lifecycle, counters and census correlated into one report per CT.

Pure functions over what oom_kernel, ct_lifecycle, cgroup_memory and
ct_census return: incidents (OOM events of one CT close together, with the
stop and start that followed), a verdict (was it OOM-killed, the likely
cause, headroom) and a recommended memory size with the reasoning in words.
"""

from __future__ import absolute_import, division, print_function

import math

from ansible_collections.enva.pve.plugins.module_utils.ct_census import fork_storm_reason
from ansible_collections.enva.pve.plugins.module_utils.ct_lifecycle import following
from ansible_collections.enva.pve.plugins.module_utils.log_lines import iso_utc
from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB
from ansible_collections.enva.pve.plugins.module_utils.report_format import thousands

__metaclass__ = type

INCIDENT_GAP = 120.0
"""OOM events of one CT at most this many seconds apart form one incident."""
HEADROOM_TARGET = 0.25
"""A recommendation leaves this share of room above the peak."""
HEADROOM_LOW_PCT = 20.0
"""Below this headroom (percent of the limit) a raise is recommended even without an OOM kill."""
ROUND_MB = 256
"""Recommendations are rounded up to a multiple of this many MiB."""
MAX_VICTIMS = 100
"""Victims listed per incident (all are counted in ``victims_by_name``)."""
TOP_PROCESSES = 10
"""Commands listed per incident from its task dump."""
STALL_HIGH_EVENTS = 1000
"""cgroup v2 ``memory.events`` high at least this many times (since the CT started) is a stall at memory.high ..."""
STALL_NEAR_HIGH = 0.95
"""... and so is usage at this share of memory.high or more ..."""
STALL_PSI_FULL_AVG10 = 10.0
"""... with PSI ``full avg10`` at least this (percent of the last 10 s all the CT's tasks stalled on memory) ..."""
STALL_PSI_SOME_AVG10 = 20.0
"""... or ``some avg10`` at least this."""


def group_incidents(events, gap=INCIDENT_GAP):
    """Split one CT's OOM events (in log order) into incidents.

    A new incident starts when an event is more than ``gap`` seconds after the
    previous one; events with no time join the incident before them.
    """
    incidents = []
    last_epoch = None
    for event in events:
        epoch = event["epoch"]
        if not incidents or (epoch is not None and last_epoch is not None and epoch - last_epoch > gap):
            incidents.append([event])
        else:
            incidents[-1].append(event)
        if epoch is not None:
            last_epoch = epoch
    return incidents


def _lifecycle_ref(event, oom_epoch):
    if event is None:
        return None
    seconds = None
    if event["epoch"] is not None and oom_epoch is not None:
        seconds = round(event["epoch"] - oom_epoch, 3)
    return {"event": event["event"], "time": event["time"], "seconds_after_oom": seconds,
            "detail": event["detail"], "message": event["message"]}


def build_incident(events, lifecycle, network, until=None):
    """One incident from its OOM events, with the stop/start and veth state that followed."""
    epochs = [event["epoch"] for event in events if event["epoch"] is not None]
    start = min(epochs) if epochs else None
    end = max(epochs) if epochs else None
    victims = []
    seen = set()
    by_name = {}
    reaped = []
    for event in events:
        for victim in event["victims"]:
            key = (victim["pid"], victim["epoch"])
            if key in seen:
                continue
            seen.add(key)
            by_name[victim["name"]] = by_name.get(victim["name"], 0) + 1
            victims.append(victim)
        reaped.extend(event["reaped"])
    reaped_pids = {entry["pid"] for entry in reaped}
    dump = max(events, key=lambda event: event["tasks_total"])
    memcgs = [event["oom_memcg"] for event in events if event["oom_memcg"]]
    memory = next((event["memory"] for event in events if event["memory"]), None)
    swap = next((event["swap"] for event in events if event["swap"]), None)
    incident = {
        "start": iso_utc(start),
        "end": iso_utc(end),
        "epoch": start,
        "events": len(events),
        "partial": any(event["partial"] for event in events),
        "complete_events": sum(1 for event in events if not event["partial"]),
        "oom_memcg": memcgs[0] if memcgs else None,
        "task_memcgs": sorted({event["task_memcg"] for event in events if event["task_memcg"]}),
        "constraint": next((event["constraint"] for event in events if event["constraint"]), None),
        "invoked_by": sorted({event["invoker"] for event in events if event["invoker"]}),
        "memory_at_oom": memory,
        "swap_at_oom": swap,
        "victims_total": len(victims),
        "victims_by_name": by_name,
        "victims": [dict(victim, reaped=victim["pid"] in reaped_pids) for victim in victims[:MAX_VICTIMS]],
        "reaped": reaped[:MAX_VICTIMS],
        "reaped_total": len(reaped),
        "tasks_in_dump": dump["tasks_total"],
        "top_processes": dump["tasks_by_command"][:TOP_PROCESSES],
        "stop": None,
        "stop_events": [],
        "next_start": None,
        "network_down": None,
    }
    if start is not None:
        stop, stops, next_start = following(lifecycle, start, until)
        incident["stop"] = _lifecycle_ref(stop, start)
        incident["stop_events"] = [_lifecycle_ref(event, start) for event in stops]
        incident["next_start"] = _lifecycle_ref(next_start, start)
        for entry in network:
            if entry["state"] == "disabled" and entry["epoch"] is not None and entry["epoch"] >= start - 1.0 \
                    and (until is None or entry["epoch"] < until):
                incident["network_down"] = {
                    "time": entry["time"], "interface": entry["interface"], "bridge": entry["bridge"],
                    "seconds_after_oom": round(entry["epoch"] - start, 3)}
                break
    return incident


def _dump_cause(incidents):
    """The cause the largest task dump shows: a fork storm, else the biggest RSS holder."""
    best = max(incidents, key=lambda incident: incident["tasks_in_dump"])
    if not best["tasks_in_dump"]:
        return None, False
    top = best["top_processes"][0]
    reason = fork_storm_reason(top["name"], top["count"], best["tasks_in_dump"], "in the OOM task dump")
    if reason:
        return reason, True
    biggest = max(best["top_processes"], key=lambda item: item["rss_kb"])
    limit = best["memory_at_oom"]["limit_kb"] // 1024 if best["memory_at_oom"] else None
    text = "%s held the most memory in the OOM task dump: %s MiB RSS in %s process(es)" % (
        biggest["name"], thousands(biggest["rss_kb"] // 1024), thousands(biggest["count"]))
    if limit:
        text += " against a %s MiB limit" % thousands(limit)
    return text, False


def _avg(pressure, line, key):
    value = ((pressure or {}).get(line) or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def memory_high_stall(vmid, counters, census=None):
    """The CT stuck at ``memory.high`` (cgroup v2): an incident of its own kind, which leaves no kernel line.

    Under memory.high the kernel does not kill: it reclaims and throttles every allocation, so a CT
    filled by a fork storm stops answering while ``memory.events`` high (and max) climb, PSI shows its
    tasks stalled, and the kernel log says nothing. Returns None, or ``{"kind": "memory_high_stall",
    "ongoing", "high_events", "max_events", "oom_events", "oom_kills", "usage_bytes", "high_bytes",
    "limit_bytes", "usage_pct_of_high", "pressure", "filled_by", "reason"}``. ``ongoing``: usage is at
    memory.high with PSI high now; otherwise the high events say it happened since the CT started.
    """
    if not counters or counters.get("cgroup_version") != 2 or not counters.get("high_bytes"):
        return None
    high_events = counters.get("high_events") or 0
    usage, high = counters.get("usage_bytes"), counters["high_bytes"]
    pressure = counters.get("pressure") or {}
    some10, full10 = _avg(pressure, "some", "avg10"), _avg(pressure, "full", "avg10")
    near = usage is not None and usage >= STALL_NEAR_HIGH * high
    ongoing = near and ((full10 or 0) >= STALL_PSI_FULL_AVG10 or (some10 or 0) >= STALL_PSI_SOME_AVG10)
    if not ongoing and high_events < STALL_HIGH_EVENTS:
        return None
    max_events, oom_kills = counters.get("limit_hits") or 0, counters.get("oom_kills") or 0
    filled_by = None
    if census and census.get("by_command"):
        top = census["by_command"][0]
        filled_by = {"name": top["name"], "count": top["count"], "rss_kb": top["rss_kb"]}
    pct = round(100.0 * usage / high, 1) if usage is not None else None
    reason = "CT %d %s at memory.high (%s MiB): the kernel throttled it %s times (memory.events high) and " \
        "it hit memory.max %s times with %s OOM kill(s)" % (
            vmid, "is stuck" if ongoing else "was stuck", thousands(high // MIB), thousands(high_events),
            thousands(max_events), thousands(oom_kills))
    if usage is not None:
        reason += "; it uses %s MiB now (%s%% of memory.high)" % (thousands(usage // MIB), pct)
    if full10 is not None or some10 is not None:
        reason += "; PSI full avg10 %s%%, some avg10 %s%%" % (full10, some10)
    if filled_by:
        reason += "; %s fills it: %s process(es), %s MiB RSS" % (
            filled_by["name"], thousands(filled_by["count"]), thousands(filled_by["rss_kb"] // 1024))
    reason += ". No kernel line records a stall: the CT answers little or nothing while it lasts."
    return {
        "kind": "memory_high_stall", "ongoing": bool(ongoing), "high_events": high_events,
        "max_events": max_events, "oom_events": counters.get("oom_events") or 0, "oom_kills": oom_kills,
        "usage_bytes": usage, "high_bytes": high, "limit_bytes": counters.get("limit_bytes"),
        "usage_pct_of_high": pct, "pressure": {"some_avg10": some10, "full_avg10": full10,
                                               "some_avg60": _avg(pressure, "some", "avg60"),
                                               "full_avg60": _avg(pressure, "full", "avg60")},
        "filled_by": filled_by, "reason": reason,
    }


def verdict(incidents, counters, census, vmid=0):
    """``{"oom_killed", "oom_kills", "likely_cause", "fork_storm", "headroom_pct", ...}`` for one CT."""
    kills_in_log = sum(incident["victims_total"] for incident in incidents)
    counted = (counters or {}).get("oom_kills") or 0
    cause, storm = (None, False)
    if incidents:
        cause, storm = _dump_cause(incidents)
        if cause is None:
            names = {}
            for incident in incidents:
                for name, count in incident["victims_by_name"].items():
                    names[name] = names.get(name, 0) + count
            listed = ", ".join("%s x%s" % (name, thousands(count))
                               for name, count in sorted(names.items(), key=lambda item: -item[1]))
            cause = "OOM kills of %s; the task dump is not in the log (partial events)" % (listed or "unknown")
    if census and census.get("fork_storm"):
        storm = True
        if cause is None or not incidents:
            cause = census["fork_storms"][0]["reason"]
        elif census["fork_storms"][0]["name"] not in cause:
            cause += "; now: " + census["fork_storms"][0]["reason"]
    if not incidents and counted and cause is None:
        cause = ("the kernel counted %s OOM kill(s) in this CT's cgroup, but no OOM report for it is in the "
                 "kernel log read (rotated, or the ring buffer wrapped)" % thousands(counted))
    stall = memory_high_stall(vmid, counters, census)
    if stall and not incidents and not counted:
        cause = stall["reason"] if cause is None else "%s; %s" % (cause, stall["reason"])
    return {
        "oom_killed": bool(incidents) or counted > 0,
        "incidents": len(incidents),
        "oom_kills_in_log": kills_in_log,
        "oom_kills_counted": counted,
        "likely_cause": cause,
        "fork_storm": storm,
        "headroom_pct": headroom_pct(counters),
        "memory_high_stall": stall is not None,
        "stall": stall,
    }


def headroom_pct(counters):
    """Room left above the peak (or current usage), in percent of the limit; None without a limit."""
    if not counters or not counters.get("limit_bytes"):
        return None
    used = counters.get("peak_bytes") or counters.get("usage_bytes")
    if used is None:
        return None
    return round(100.0 * (counters["limit_bytes"] - used) / counters["limit_bytes"], 1)


def _round_up(mib):
    return int(math.ceil(mib / float(ROUND_MB)) * ROUND_MB)


def recommend(vmid, the_verdict, counters, config, incidents):
    """``(memory_mb or None, reasoning)``: the memory CT ``vmid`` should get and why."""
    limit_mb = None
    if counters and counters.get("limit_bytes"):
        limit_mb = counters["limit_bytes"] // MIB
    elif config and config.get("memory_mb"):
        limit_mb = config["memory_mb"]
    else:
        limits = [incident["memory_at_oom"]["limit_kb"] // 1024 for incident in incidents if incident["memory_at_oom"]]
        limit_mb = max(limits) if limits else None
    if limit_mb is None:
        return None, ("CT %d: no memory limit known (no cgroup, no config, no limit in the OOM report), "
                      "so no size can be recommended." % vmid)
    peak_mb = None
    if counters:
        used = counters.get("peak_bytes") or counters.get("usage_bytes")
        peak_mb = used // MIB if used is not None else None
    peak_text = ("its peak usage is %s MiB (%s%% of the limit)" % (
        thousands(peak_mb), round(100.0 * peak_mb / limit_mb)) if peak_mb is not None and limit_mb
        else "its peak usage is not known (CT not running)")
    if the_verdict["oom_killed"]:
        # Doubled from the limit the OOM happened at (the kernel's report says it), not from today's: a CT
        # that was already raised after its incident is not raised again on every later run.
        oom_limits = [incident["memory_at_oom"]["limit_kb"] // 1024 for incident in incidents
                      if incident["memory_at_oom"] and incident["memory_at_oom"].get("limit_kb")]
        oom_limit_mb = max(oom_limits) if oom_limits else limit_mb
        target = max(2 * oom_limit_mb, _round_up((peak_mb or oom_limit_mb) * (1 + HEADROOM_TARGET)))
        times = the_verdict["incidents"] or the_verdict["oom_kills_counted"]
        kills = thousands(the_verdict["oom_kills_in_log"] or the_verdict["oom_kills_counted"])
        if limit_mb >= target:
            text = ("CT %d was OOM-killed (%s incident(s), %s kill(s)) at a %s MiB limit and has %s MiB now, at "
                    "least double that; %s: keep it." % (vmid, thousands(times), kills, thousands(oom_limit_mb),
                                                         thousands(limit_mb), peak_text))
            target = limit_mb
        else:
            text = ("CT %d was OOM-killed (%s incident(s), %s kill(s)) at its %s MiB limit; %s. The workload "
                    "needed more than the limit, so the limit is doubled to %s MiB." % (
                        vmid, thousands(times), kills, thousands(oom_limit_mb), peak_text, thousands(target)))
        if the_verdict["fork_storm"]:
            text += (" More memory does not cure the fork storm: each new client adds a process, so memory only "
                     "buys time; replace the forking process (for socat UDP forwarders: enva.pve.dns_relay).")
        return target, text
    if the_verdict.get("memory_high_stall"):
        target = max(2 * limit_mb, _round_up((peak_mb or limit_mb) * (1 + HEADROOM_TARGET)))
        text = ("CT %d was not OOM-killed but stalled at memory.high, its %s MiB limit all used: raise to %s MiB."
                % (vmid, thousands(limit_mb), thousands(target)))
        if the_verdict["fork_storm"] or (the_verdict["stall"].get("filled_by") or {}).get("count", 0) >= 100:
            text += (" More memory does not cure a fork storm: each new client adds a process; replace the "
                     "forking process (for socat UDP forwarders: enva.pve.dns_relay).")
        return target, text
    headroom = the_verdict["headroom_pct"]
    if headroom is not None and headroom < HEADROOM_LOW_PCT and peak_mb is not None:
        target = max(limit_mb, _round_up(peak_mb * (1 + HEADROOM_TARGET)))
        text = "CT %d was not OOM-killed, but %s, leaving %s%% headroom (< %d%%): raise to %s MiB for %d%% " \
            "room above the peak." % (vmid, peak_text, headroom, HEADROOM_LOW_PCT, thousands(target),
                                      HEADROOM_TARGET * 100)
        return target, text
    text = "CT %d: keep %s MiB: no OOM kill in the window and %s" % (vmid, thousands(limit_mb), peak_text)
    if headroom is not None:
        text += ", %s%% headroom" % headroom
    text += "."
    if the_verdict["fork_storm"]:
        text += " But " + the_verdict["likely_cause"] + ": fix the forking process before it fills the CT."
    return limit_mb, text


def ct_report(vmid, events, lifecycle, network, counters=None, census=None, config=None):
    """The report of one CT from its own OOM events, lifecycle events and veth lines (each sorted by time)."""
    groups = group_incidents(events)
    incidents = []
    for index, group in enumerate(groups):
        following_start = None
        for later in groups[index + 1:]:
            epochs = [event["epoch"] for event in later if event["epoch"] is not None]
            if epochs:
                following_start = min(epochs)
                break
        incidents.append(build_incident(group, lifecycle, network, following_start))
    the_verdict = verdict(incidents, counters, census, vmid)
    memory_mb, reasoning = recommend(vmid, the_verdict, counters, config, incidents)
    return {
        "vmid": vmid,
        "config": config,
        "incidents": incidents,
        "oom_events": len(events),
        "partial_events": sum(1 for event in events if event["partial"]),
        "lifecycle": lifecycle,
        "network": network,
        "counters": counters,
        "census": census,
        "stall": the_verdict["stall"],
        "verdict": the_verdict,
        "recommended_memory_mb": memory_mb,
        "recommendation": reasoning,
    }


def _by_vmid(items, since_epoch):
    grouped = {}
    for item in items:
        if item.get("vmid") is None:
            continue
        if since_epoch is not None and item["epoch"] is not None and item["epoch"] < since_epoch:
            continue
        grouped.setdefault(item["vmid"], []).append(item)
    return grouped


def build_report(kernel, lifecycle_events, vmids, counters=None, census=None, configs=None, since_epoch=None):
    """Reports for ``vmids`` from one parsed kernel log and one lifecycle event list.

    ``counters``, ``census`` and ``configs`` map VMID to what was read for it.
    Returns ``(reports by VMID, OOM events no CT could be named for)``.
    Everything is grouped by VMID once, so the cost grows with the input, not
    with the number of CTs times the input.
    """
    counters = counters or {}
    census = census or {}
    configs = configs or {}
    events = _by_vmid(kernel["events"], since_epoch)
    network = _by_vmid(kernel["network"], since_epoch)
    lifecycle = _by_vmid(lifecycle_events, since_epoch)
    for entries in lifecycle.values():
        entries.sort(key=lambda entry: entry["epoch"] if entry["epoch"] is not None else -1.0)
    reports = {}
    for vmid in sorted(vmids):
        reports[vmid] = ct_report(vmid, events.get(vmid, []), lifecycle.get(vmid, []), network.get(vmid, []),
                                  counters.get(vmid), census.get(vmid), configs.get(vmid))
    unattributed = [
        {"time": event["time"], "oom_memcg": event["oom_memcg"], "task_memcg": event["task_memcg"],
         "victims": [victim["name"] for victim in event["victims"]], "partial": event["partial"]}
        for event in kernel["events"]
        if event["vmid"] is None and (since_epoch is None or event["epoch"] is None or event["epoch"] >= since_epoch)]
    return reports, unattributed
