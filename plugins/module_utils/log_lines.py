# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Framing of log lines: the time, source and message of one line.

Pure functions over text, shared by the kernel OOM parser (oom_kernel) and the
CT lifecycle parser (ct_lifecycle). One line in any of the forms a PVE node or
an operator's ticket holds becomes a ``Record``:

* ``journalctl -o json`` (one JSON object per line; ``MESSAGE`` may be a
  string or a byte array, ``__REALTIME_TIMESTAMP`` is in microseconds);
* ``journalctl -o short`` and syslog files (``Nov 24 00:35:38 pve1 kernel: msg``,
  no year: it is inferred from a reference time);
* ``journalctl -o short-iso`` / ``short-iso-precise`` and RFC 3339 syslog
  (``2024-11-24T00:35:38.123456+01:00 pve1 kernel: msg``);
* ``journalctl -o short-precise`` and ``short-monotonic`` (``[12345.678901] pve1 kernel: msg``);
* raw ``dmesg`` (``[12345.678901] msg``, seconds since boot, converted with the
  boot time when it is known), ``dmesg -r`` (``<4>[...]``), ``dmesg -T``
  (``[Sun Nov 24 00:35:38 2024] msg``), ``dmesg --time-format iso``
  (``2024-11-24T00:35:38,123456+01:00 msg``) and ``/dev/kmsg`` records;
* a bare message (``dmesg -t``): no time.

Times are epoch seconds (float). Text without a UTC offset is local time of
the node that wrote it; callers may pass ``tz`` to say which zone that was.
"""

from __future__ import absolute_import, division, print_function

import calendar
import datetime
import json
import re
from collections import namedtuple

__metaclass__ = type

Record = namedtuple("Record", "epoch monotonic ident message unit")
"""One log line: wall time (epoch s or None), seconds since boot (or None),
syslog identifier (``kernel``, ``systemd``, ... or None when the form has
none), the message text, and the systemd unit a journal record names."""

MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:([.,])(\d+))?(Z|[+-]\d\d:?\d\d)?\s(.*)$")
_SHORT = re.compile(r"([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.(\d+))? (.*)$")
_DMESG_T = re.compile(r"\[[A-Z][a-z]{2} ([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4})\] ?(.*)$")
_MONO = re.compile(r"(?:<\d+>)?\[\s*(\d+\.\d+)\] ?(.*)$")
_KMSG = re.compile(r"\d+,\d+,(\d+),[^;]*;(.*)$")
_KMSG_FIELDS = re.compile(r"(\d+),(\d+),(\d+),[^;]*;(.*)$")
_MONOTONIC_TAG = re.compile(r"\S+ (kernel|systemd)(?:\[\d+\])?: (.*)$")
_TAG = re.compile(r"(\S+) ([^\s:\[\]]+)(?:\[\d+\])?: ?(.*)$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_DURATION_SECONDS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def _fraction(digits):
    return float("0." + digits) if digits else 0.0


def _offset_seconds(text):
    if not text or text == "Z":
        return 0
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)


def _local_epoch(year, month, day, hour, minute, second, tz):
    """Epoch seconds of a wall-clock time in ``tz`` (None: this machine's zone)."""
    moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=tz)
    return moment.timestamp()


def _iso_epoch(match, tz):
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = _fraction(match.group(8))
    offset = match.group(9)
    if offset:
        epoch = calendar.timegm((year, month, day, hour, minute, second)) - _offset_seconds(offset)
    else:
        epoch = _local_epoch(year, month, day, hour, minute, second, tz)
    return epoch + fraction


def _short_year(month, day, reference, tz):
    """The year of a year-less syslog date: the latest one not after ``reference`` + 2 days."""
    latest = reference + 2 * 86400
    year = datetime.datetime.fromtimestamp(reference, tz).year
    for candidate in (year, year - 1, year - 4):
        try:
            if datetime.datetime(candidate, month, day, tzinfo=tz).timestamp() <= latest:
                return candidate
        except ValueError:  # 29 February of a year that has none
            continue
    return year - 1


def _inner_monotonic(message):
    """``[ 518.050606] msg`` after a syslog tag (kern.log on older Ubuntu/Debian)."""
    if message.startswith("[") or message.startswith("<"):
        match = _MONO.match(message)
        if match:
            return float(match.group(1)), match.group(2)
    return None, message


def _tagged(rest):
    """Split ``host ident[pid]: message``; (None, rest) when the text has no tag."""
    match = _TAG.match(rest)
    if match:
        return match.group(2), match.group(3)
    return None, rest


def _journal_record(line):
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or "MESSAGE" not in entry:
        return None
    message = entry["MESSAGE"]
    if isinstance(message, list):
        try:
            message = bytes(message).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return None
    if not isinstance(message, str):
        return None
    epoch = None
    if entry.get("__REALTIME_TIMESTAMP"):
        try:
            epoch = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        except (TypeError, ValueError):
            epoch = None
    monotonic = None
    if entry.get("_SOURCE_MONOTONIC_TIMESTAMP"):
        try:
            monotonic = int(entry["_SOURCE_MONOTONIC_TIMESTAMP"]) / 1e6
        except (TypeError, ValueError):
            monotonic = None
    ident = entry.get("SYSLOG_IDENTIFIER")
    if not ident and entry.get("_TRANSPORT") == "kernel":
        ident = "kernel"
    unit = entry.get("UNIT") or entry.get("_SYSTEMD_UNIT") or entry.get("USER_UNIT")
    return Record(epoch, monotonic, ident, message.rstrip("\n"), unit)


def parse_line(line, reference_epoch, boot_epoch=None, tz=None):
    """One line of any supported form as a Record; None for a blank line.

    ``reference_epoch`` (usually now) gives the year of year-less syslog dates;
    ``boot_epoch`` turns dmesg's seconds since boot into wall time; ``tz`` is
    the zone of times written without an offset (None: this machine's zone).
    """
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    first = line[0]
    if first == "{":
        record = _journal_record(line)
        if record is not None:
            return record
    elif first == "[" or first == "<":
        match = _MONO.match(line)
        if match:
            monotonic = float(match.group(1))
            epoch = boot_epoch + monotonic if boot_epoch is not None else None
            message = match.group(2)
            tagged = _MONOTONIC_TAG.match(message)   # journalctl -o short-monotonic
            if tagged:
                return Record(epoch, monotonic, tagged.group(1), tagged.group(2), None)
            return Record(epoch, monotonic, None, message, None)
        match = _DMESG_T.match(line)
        if match:
            epoch = _local_epoch(int(match.group(6)), MONTHS.get(match.group(1), 1), int(match.group(2)),
                                 int(match.group(3)), int(match.group(4)), int(match.group(5)), tz)
            return Record(epoch, None, None, match.group(7), None)
    elif first.isdigit():
        match = _ISO.match(line)
        if match:
            epoch = _iso_epoch(match, tz)
            rest = match.group(10)
            if match.group(7) == ",":
                # dmesg --time-format iso: no host, no tag.
                return Record(epoch, None, None, rest, None)
            ident, message = _tagged(rest)
            monotonic, message = _inner_monotonic(message)
            return Record(epoch, monotonic, ident, message, None)
        match = _KMSG.match(line)
        if match:
            monotonic = int(match.group(1)) / 1e6
            epoch = boot_epoch + monotonic if boot_epoch is not None else None
            return Record(epoch, monotonic, None, match.group(2), None)
    elif first.isupper():
        match = _SHORT.match(line)
        if match and match.group(1) in MONTHS:
            month, day = MONTHS[match.group(1)], int(match.group(2))
            year = _short_year(month, day, reference_epoch, tz)
            epoch = _local_epoch(year, month, day, int(match.group(3)), int(match.group(4)),
                                 int(match.group(5)), tz) + _fraction(match.group(6))
            ident, message = _tagged(match.group(7))
            monotonic, message = _inner_monotonic(message)
            return Record(epoch, monotonic, ident, message, None)
    return Record(None, None, None, line, None)


def kmsg_fields(line):
    """A ``/dev/kmsg`` record (``prio,seq,usec,flags;message``) as ``(sequence, usec, message)``; None otherwise.

    The sequence numbers of the kernel's ring buffer grow by one per record, so
    a gap between two reads is the count of records lost to an overrun.
    """
    match = _KMSG_FIELDS.match(line.rstrip("\r\n"))
    if not match:
        return None
    return int(match.group(2)), int(match.group(3)), match.group(4)


def parse_since(value, now, tz=None):
    """``since`` as epoch seconds: a duration back from ``now`` (``7d``, ``12h``,
    ``30m``, ``2w``, ``90``), ``@EPOCH``, or a date/time (``2024-11-24``,
    ``2024-11-24 00:30``, ISO 8601 with or without offset). None or empty: None.

    Raises ValueError with a message that names the accepted forms.
    """
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    match = _DURATION.match(text)
    if match:
        unit = match.group(2).lower() if match.group(2) else None
        return now - float(match.group(1)) * _DURATION_SECONDS[unit]
    if text.startswith("@"):
        try:
            return float(text[1:])
        except ValueError:
            pass
    match = re.match(r"^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?)?"
                     r"\s*(Z|[+-]\d\d:?\d\d)?$", text)
    if match:
        parts = [int(match.group(i) or 0) for i in range(1, 7)]
        fraction = _fraction(match.group(7))
        try:
            local = _local_epoch(*(parts + [tz]))  # also checks that the date exists
        except ValueError:
            local = None
        if local is not None:
            if match.group(8):
                return calendar.timegm(tuple(parts)) - _offset_seconds(match.group(8)) + fraction
            return local + fraction
    raise ValueError(
        "since=%r is neither a duration (7d, 12h, 30m, 2w, 90s) nor a time "
        "(2024-11-24, 2024-11-24 00:30, 2024-11-24T00:30:00+01:00, @1732404938)" % (value,))


def iso_utc(epoch):
    """Epoch seconds as ISO 8601 in UTC with microseconds, or None."""
    if epoch is None:
        return None
    return (_EPOCH + datetime.timedelta(microseconds=round(epoch * 1e6))).isoformat()
