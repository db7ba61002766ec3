# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CT start/stop events from ``journalctl -u pve-container@VMID`` (JSON or text).

systemd words them in two generations; both are recognised:

* ``Started PVE LXC Container: 2017.`` (systemd < 249) and
  ``Started pve-container@2017.service - PVE LXC Container: 2017.`` (252 on PVE 8);
* likewise ``Starting``, ``Stopping``, ``Stopped`` and ``Failed to start``;
* ``pve-container@2017.service: Deactivated successfully.``,
  ``pve-container@2017.service: Main process exited, code=exited, status=1/FAILURE``,
  ``pve-container@2017.service: Failed with result 'exit-code'.``

The VMID comes from the message, else from the journal record's unit, else
from the caller (a per-CT file named after its VMID).
"""

from __future__ import absolute_import, division, print_function

import re

from ansible_collections.enva.pve.plugins.module_utils.log_lines import iso_utc, parse_line

__metaclass__ = type

STOP_KINDS = ("stopping", "stopped", "deactivated", "main_exited", "failed")
"""Event kinds that mean the CT went (or was going) down."""

_UNIT = r"pve-container@(\d+)\.service"
_TITLE = r"(?:%s - )?PVE LXC Container: (\d+)" % _UNIT
_PATTERNS = (
    ("starting", re.compile(r"^Starting %s" % _TITLE)),
    ("started", re.compile(r"^Started %s" % _TITLE)),
    ("stopping", re.compile(r"^Stopping %s" % _TITLE)),
    ("stopped", re.compile(r"^Stopped %s" % _TITLE)),
    ("failed", re.compile(r"^Failed to start %s" % _TITLE)),
    ("deactivated", re.compile(r"^%s: Deactivated successfully" % _UNIT)),
    ("main_exited", re.compile(r"^%s: Main process exited, (.*?)\.?$" % _UNIT)),
    ("failed", re.compile(r"^%s: Failed with result '([^']*)'" % _UNIT)),
)
_UNIT_VMID = re.compile(r"^" + _UNIT + r"$")


def classify(message):
    """(kind, vmid or None, detail or None) of a lifecycle message, or None."""
    for kind, pattern in _PATTERNS:
        match = pattern.match(message)
        if match:
            groups = match.groups()
            vmid = next((int(group) for group in groups if group and group.isdigit()), None)
            detail = groups[-1] if kind in ("main_exited", "failed") and not groups[-1].isdigit() else None
            return kind, vmid, detail
    return None


def parse_lifecycle(lines, reference_epoch, vmid=None, tz=None):
    """Lifecycle events in the lines (any form log_lines reads), in order.

    ``vmid`` names the CT of a per-CT file whose lines do not name it.
    Each event: ``{"vmid", "event", "time", "epoch", "detail", "message"}``.
    """
    events = []
    for line in lines:
        record = parse_line(line, reference_epoch, tz=tz)
        if record is None:
            continue
        found = classify(record.message)
        if found is None:
            continue
        kind, event_vmid, detail = found
        if event_vmid is None and record.unit:
            match = _UNIT_VMID.match(record.unit)
            event_vmid = int(match.group(1)) if match else None
        if event_vmid is None:
            event_vmid = vmid
        if event_vmid is None:
            continue
        events.append({
            "vmid": event_vmid, "event": kind, "time": iso_utc(record.epoch), "epoch": record.epoch,
            "detail": detail, "message": record.message})
    return events


def vmid_from_filename(name):
    """The VMID a per-CT log file is named after (``2017.log``, ``pve-container@2017.jsonl``)."""
    match = re.search(r"(?:^|[@_-])(\d{3,9})$", name.split(".")[0])
    return int(match.group(1)) if match else None


def following(events, epoch, until=None):
    """The first stop after ``epoch`` (before ``until``, before any start), every
    stop-kind event up to the next start, and that next start.

    ``events`` are one CT's lifecycle events sorted by time. Events without a
    time cannot be placed and are skipped.
    """
    stop = None
    stops = []
    start = None
    for event in events:
        when = event["epoch"]
        if when is None or when < epoch - 1.0:
            continue
        if event["event"] == "started":
            if when < epoch:
                continue
            # A start before any stop means the stop was not logged: none to report.
            start = event if stop is not None else None
            break
        if event["event"] in STOP_KINDS:
            if stop is None:
                if until is not None and when >= until:
                    break
                stop = event
            stops.append(event)
    return stop, stops, start
