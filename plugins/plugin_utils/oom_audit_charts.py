# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The geometry of the HTML report's two charts, computed from the fleet report; the template draws the SVG.

* :func:`headroom` -- one bar per CT: used now (dark) and peak (light) from the left, on an axis that reads
  headroom, the share of the limit still free: 100% at the left, 0% at the right, so where a bar ends the axis
  gives what is left (a bar that ends at the 20% tick has 20% headroom);
* :func:`timeline` -- OOM incidents on a time axis over the report's window, one lane per CT.

Only numbers and text come out; the template escapes the text, and the SVG it draws is inline (no script, no
outside request).
"""

from __future__ import absolute_import, division, print_function

import datetime
import math

from ansible_collections.enva.pve.plugins.module_utils.report_format import iso_seconds, or_dash, percent, thousands
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_report as model

__metaclass__ = type

CHART_CTS = 40
"""CTs drawn in the headroom chart (the highest ranked); the table lists all."""
TIMELINE_CTS = 25
"""CT rows of the incident timeline (those with incidents, highest ranked first)."""
HEADROOM_TICKS = (100, 80, 60, 40, 20, 0)


def label(entry, width=26):
    text = "%d %s" % (entry["vmid"], entry["name"] or "")
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def headroom(report, limit=CHART_CTS):
    """``{width, height, left, top, bar_width, axis_y, ticks, threshold, bars, notes, empty}`` of the headroom chart."""
    with_limit = [entry for entry in report["cts"] if (entry["limit_mb"] or entry["memory_mb"])]
    entries = with_limit[:limit]
    row, top, left, bar_width = 20, 48, 210, 520
    bottom = top + row * max(len(entries), 1)
    low = model.HEADROOM_LOW_PCT
    bars = []
    for index, entry in enumerate(entries):
        limit_mb = entry["limit_mb"] or entry["memory_mb"]
        used = entry["usage_mb"] or 0
        peak = entry["peak_mb"] if entry["peak_mb"] is not None else used
        bars.append({
            "vmid": entry["vmid"], "y": top + index * row, "label": label(entry),
            "color": model.COLORS[entry["severity"]],
            "used_w": round(min(bar_width, bar_width * used / float(limit_mb)), 1),
            "peak_w": round(min(bar_width, bar_width * peak / float(limit_mb)), 1),
            "value": "%s headroom, %s MiB limit" % (percent(entry["headroom_pct"], none="n/a"), or_dash(limit_mb)),
            "tip": "CT %d %s: limit %s MiB, used %s MiB, peak %s MiB, headroom %s" % (
                entry["vmid"], entry["name"] or "", or_dash(limit_mb), or_dash(entry["usage_mb"]),
                or_dash(entry["peak_mb"]),
                percent(entry["headroom_pct"], none="n/a")),
        })
    ticks = [{"x": round(left + bar_width * (100 - value) / 100.0, 1), "label": "%d%%" % value,
              "anchor": "start" if value == 100 else ("end" if value == 0 else "middle")}
             for value in HEADROOM_TICKS]
    notes = ["Dark: used now; light: peak. The axis reads headroom: where a bar ends, the axis gives the share",
             "of the limit still free. Dashed: %d%% headroom." % low]
    more = len(with_limit) - len(entries)
    if more > 0:
        notes[1] += " %s more CTs in the table." % thousands(more)
    return {
        "width": left + bar_width + 250, "height": bottom + 60, "left": left, "top": top, "bar_width": bar_width,
        "axis_y": top - 10, "axis_title": "headroom left, % of the memory limit (100% = nothing used)",
        "ticks": ticks, "bars": bars,
        "notes": [{"y": bottom + 30 + 16 * index, "text": text} for index, text in enumerate(notes)],
        "threshold": {"x": round(left + bar_width * (100 - low) / 100.0, 1), "y1": top - 6, "y2": bottom},
        "empty": None if entries else "No CT with a known memory limit",
    }


def _ticks(start, end, count=6):
    if end <= start:
        return [start]
    step = (end - start) / float(count - 1)
    return [start + step * index for index in range(count)]


def timeline(report, limit=TIMELINE_CTS):
    """``{width, height, left, span, top, bottom, title, ticks, lanes, empty}`` of the OOM incident timeline."""
    rows = [entry for entry in report["cts"] if entry["incidents"]][:limit]
    epochs = [incident["epoch"] for entry in rows for incident in entry["incidents"] if incident["epoch"] is not None]
    start, end = report["window"]["since_epoch"], report["window"]["now_epoch"]
    if epochs:
        start = min([start] + epochs) if start is not None else min(epochs)
        end = max([end] + epochs) if end is not None else max(epochs)
    if start is None or end is None:
        start = end = 0.0
    if end - start < 60:
        start, end = start - 30, end + 30
    row, top, left, span, pad = 24, 40, 210, 700, 14
    bottom = top + row * max(len(rows), 1)

    def x_of(epoch):
        return round(left + pad + (span - 2 * pad) * (epoch - start) / (end - start), 1)

    lanes = []
    for index, entry in enumerate(rows):
        dots = []
        for incident in entry["incidents"]:
            if incident["epoch"] is None:
                continue
            kills = max(incident["victims_total"], 1)
            dots.append({"x": x_of(incident["epoch"]), "r": round(min(4 + 2.5 * math.sqrt(kills), 11), 1),
                         "color": model.COLORS[entry["severity"]], "vmid": entry["vmid"],
                         "tip": "CT %d %s, %s: %s victim(s) %s" % (
                             entry["vmid"], entry["name"] or "", incident["start"],
                             thousands(incident["victims_total"]),
                             model._victims_text(incident["victims_by_name"]))})
        lanes.append({"y": top + index * row + row / 2.0, "label": label(entry), "dots": dots})
    return {
        "width": left + span + 40, "height": bottom + 34, "left": left, "span": span, "top": top, "bottom": bottom,
        "title": "OOM incidents on a timeline (%s to %s)" % (iso_seconds(start), iso_seconds(end)),
        "ticks": [{"x": x_of(tick), "label": datetime.datetime.fromtimestamp(
            tick, datetime.timezone.utc).strftime("%m-%d %H:%M")} for tick in _ticks(start, end)],
        "lanes": lanes, "empty": None if rows else "No OOM incident in the window",
    }
