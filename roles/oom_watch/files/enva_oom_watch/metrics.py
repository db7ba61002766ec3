# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The textfile the watch writes: node_exporter's text format, one HELP and TYPE per metric.

Names have one ``enva_`` prefix, base units (bytes, seconds) and ``_total`` on counters; the only
labels are ``vmid`` and ``node``, so a node's series are bounded by its CTs. No timestamps (the
textfile collector refuses them); ``enva_oom_watch_last_scan_timestamp_seconds`` lets an alert see a
dead or stuck agent, and node_exporter adds ``node_textfile_mtime_seconds`` for the file.
"""

# (name, type, help, key): key reads a CT's value from the row dicts that agent.ct_rows builds.
CT_METRICS = (
    ("enva_ct_up", "gauge", "1 when the CT has a memory cgroup now (running), 0 for a CT seen before that has none.",
     "up"),
    ("enva_ct_oom_kills_total", "counter",
     "Processes of the CT the kernel OOM killer killed, read from the kernel log as printed; kept after the "
     "cgroup is gone.", "oom_kills"),
    ("enva_ct_memory_high_events_total", "counter",
     "memory.events high: times the CT was throttled over memory.high (cgroup v2), monotonic across restarts.",
     "high"),
    ("enva_ct_memory_max_events_total", "counter",
     "memory.events max (v2) or memory.failcnt (v1): times the CT's usage hit its limit, monotonic across restarts.",
     "max"),
    ("enva_ct_memory_oom_events_total", "counter",
     "memory.events oom: times the CT's cgroup went out of memory (v2), monotonic across restarts.", "oom"),
    ("enva_ct_memory_oom_kill_events_total", "counter",
     "memory.events oom_kill (v2) or memory.oom_control oom_kill (v1): OOM kills the cgroup counted, "
     "monotonic across restarts.", "oom_kill"),
    ("enva_ct_memory_oom_group_kill_events_total", "counter",
     "memory.events oom_group_kill: group OOM kills of the CT's cgroup (v2), monotonic across restarts.",
     "oom_group_kill"),
    ("enva_ct_memory_pressure_some_seconds_total", "counter",
     "memory.pressure some total: time some of the CT's tasks stalled on memory (v2), monotonic across restarts.",
     "pressure_some"),
    ("enva_ct_memory_pressure_full_seconds_total", "counter",
     "memory.pressure full total: time all of the CT's tasks stalled on memory (v2), monotonic across restarts.",
     "pressure_full"),
    ("enva_ct_memory_stalled", "gauge",
     "1 while the CT stalls on memory (a PSI trigger fired, or sampled some-pressure over the threshold).",
     "stalled"),
    ("enva_ct_memory_under_oom", "gauge", "memory.oom_control under_oom: 1 while the CT waits in OOM (v1).",
     "under_oom"),
    ("enva_ct_memory_usage_bytes", "gauge", "memory.current (v2) or memory.usage_in_bytes (v1), page cache included.",
     "usage"),
    ("enva_ct_memory_page_cache_bytes", "gauge",
     "Page cache in memory.stat (v2 file, v1 total_cache); usage less this is what PVE shows as the CT's mem.",
     "page_cache"),
    ("enva_ct_memory_limit_bytes", "gauge", "memory.max (v2) or memory.limit_in_bytes (v1); absent when unlimited.",
     "limit"),
    ("enva_ct_memory_high_bytes", "gauge", "memory.high (v2); absent when unlimited.", "high_limit"),
    ("enva_ct_swap_usage_bytes", "gauge", "Swap the CT uses (v2 memory.swap.current; v1 memsw less memory).",
     "swap_usage"),
    ("enva_ct_swap_limit_bytes", "gauge", "The CT's swap limit (v2 memory.swap.max; v1 memsw less memory).",
     "swap_limit"),
    ("enva_ct_tasks", "gauge", "Tasks in the CT's cgroup (pids.current, else counted).", "tasks"),
    ("enva_ct_last_oom_kill_timestamp_seconds", "gauge",
     "When the kernel log last named an OOM kill in the CT (Unix time).", "last_kill"),
)

AGENT_METRICS = (
    ("enva_oom_watch_last_scan_timestamp_seconds", "gauge", "When the watch last finished a scan (Unix time).",
     "last_scan"),
    ("enva_oom_watch_scan_duration_seconds", "gauge", "How long the last scan took.", "scan_duration"),
    ("enva_oom_watch_scans_total", "counter", "Scans since the agent started.", "scans"),
    ("enva_oom_watch_scan_errors_total", "counter",
     "Files that could not be read in scans (a CT going away mid-read, permissions), across restarts.",
     "scan_errors"),
    ("enva_oom_watch_write_errors_total", "counter",
     "Writes of the textfile, state or flight records that failed (full disk, missing directory); the old file "
     "stays.", "write_errors"),
    ("enva_oom_watch_kmsg_lost_lines_total", "counter",
     "Kernel log records lost before the watch read them (sequence gaps after a ring buffer overrun).", "kmsg_lost"),
    ("enva_oom_watch_kmsg_overruns_total", "counter", "Reads of /dev/kmsg that failed with EPIPE (overrun).",
     "kmsg_overruns"),
    ("enva_oom_watch_kmsg_up", "gauge", "1 when the watch follows the kernel log.", "kmsg_up"),
    ("enva_oom_watch_oom_kills_outside_cts_total", "counter",
     "OOM kills the kernel log printed for no CT (host processes).", "host_kills"),
    ("enva_oom_watch_flight_records_total", "counter", "Flight records written.", "flight_records"),
    ("enva_oom_watch_psi_triggers", "gauge", "CTs watched by a PSI trigger (v2, where the kernel allows it).",
     "psi_triggers"),
    ("enva_oom_watch_cts", "gauge", "CTs with a memory cgroup in the last scan.", "cts"),
    ("enva_oom_watch_start_time_seconds", "gauge", "When the agent started (Unix time).", "start_time"),
)


def escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def render(node, rows, agent):
    """The whole file: ``rows`` is ``[(vmid, {key: value})]``, ``agent`` a ``{key: value}``; None values skipped."""
    node_label = escape(node)
    out = []
    for name, kind, text, key in CT_METRICS:
        out.append("# HELP %s %s\n# TYPE %s %s\n" % (name, text, name, kind))
        for vmid, row in rows:
            value = row.get(key)
            if value is not None:
                out.append('%s{node="%s",vmid="%d"} %s\n' % (name, node_label, vmid, number(value)))
    for name, kind, text, key in AGENT_METRICS:
        value = agent.get(key)
        if value is None:
            continue
        out.append('# HELP %s %s\n# TYPE %s %s\n%s{node="%s"} %s\n' % (
            name, text, name, kind, name, node_label, number(value)))
    return "".join(out)
