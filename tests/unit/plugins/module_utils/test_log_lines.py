"""log_lines: every line form a PVE node or a ticket holds, framed into time, source and message."""

from __future__ import annotations

import datetime
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.enva.pve.plugins.module_utils.log_lines import iso_utc, parse_line, parse_since

UTC = datetime.timezone.utc
CET = datetime.timezone(datetime.timedelta(hours=1))
REF = datetime.datetime(2024, 11, 24, 12, 0, tzinfo=UTC).timestamp()
BOOT = datetime.datetime(2024, 11, 10, 0, 0, tzinfo=UTC).timestamp()
MSG = "Memory cgroup out of memory: Killed process 1974108 (in:imuxsock)"


def epoch(*args, tz=UTC):
    return datetime.datetime(*args, tzinfo=tz).timestamp()


@pytest.mark.parametrize("line, expected_epoch, expected_mono, ident", [
    # journalctl -o short (zero-padded day) and syslog (space-padded day)
    ("Nov 24 00:35:38 pve1 kernel: " + MSG, epoch(2024, 11, 24, 0, 35, 38), None, "kernel"),
    ("Nov  4 00:35:38 pve1 kernel: " + MSG, epoch(2024, 11, 4, 0, 35, 38), None, "kernel"),
    # journalctl -o short-precise and -o short-monotonic
    ("Nov 24 00:35:38.412345 pve1 kernel: " + MSG, epoch(2024, 11, 24, 0, 35, 38, 412345), None, "kernel"),
    ("[1204711.250000] pve1 kernel: " + MSG, BOOT + 1204711.25, 1204711.25, "kernel"),
    # kern.log of older Debian/Ubuntu: syslog tag, then the kernel's own [uptime]
    ("Nov 24 00:35:38 pve1 kernel: [811203.222101] " + MSG, epoch(2024, 11, 24, 0, 35, 38), 811203.222101, "kernel"),
    # short-iso (both offset spellings) and short-iso-precise
    ("2024-11-24T00:35:38+0100 pve1 kernel: " + MSG, epoch(2024, 11, 23, 23, 35, 38), None, "kernel"),
    ("2024-11-24T00:35:38+01:00 pve1 kernel: " + MSG, epoch(2024, 11, 23, 23, 35, 38), None, "kernel"),
    ("2024-11-24T00:35:38.412345+01:00 pve1 kernel: " + MSG, epoch(2024, 11, 23, 23, 35, 38, 412345), None, "kernel"),
    ("2024-11-24T00:35:38.412345Z pve1 kernel: " + MSG, epoch(2024, 11, 24, 0, 35, 38, 412345), None, "kernel"),
    # dmesg --time-format iso: comma before the fraction, no host, no tag
    ("2024-11-24T00:35:38,412345+01:00 " + MSG, epoch(2024, 11, 23, 23, 35, 38, 412345), None, None),
    # raw dmesg and dmesg -r, converted with the boot time
    ("[1204711.250000] " + MSG, BOOT + 1204711.25, 1204711.25, None),
    ("<3>[   18.000001] " + MSG, BOOT + 18.000001, 18.000001, None),
    # dmesg -T (local time, here pinned to UTC)
    ("[Sun Nov 24 00:35:38 2024] " + MSG, epoch(2024, 11, 24, 0, 35, 38), None, None),
    # /dev/kmsg record
    ("3,8812,18000001,-;" + MSG, BOOT + 18.000001, 18.000001, None),
])
def test_line_forms(line, expected_epoch, expected_mono, ident):
    record = parse_line(line, REF, boot_epoch=BOOT, tz=UTC)
    assert record.message == MSG
    assert record.epoch == pytest.approx(expected_epoch, abs=1e-6)
    assert record.monotonic == (pytest.approx(expected_mono) if expected_mono is not None else None)
    assert record.ident == ident


def test_raw_dmesg_message_with_a_colon_is_not_a_syslog_tag():
    record = parse_line("[    7.000000] EXT4-fs (dm-1): mounted filesystem", REF, boot_epoch=BOOT)
    assert (record.ident, record.message) == (None, "EXT4-fs (dm-1): mounted filesystem")


def test_short_form_takes_the_zone_it_is_given():
    record = parse_line("Nov 24 00:35:38 pve1 kernel: " + MSG, REF, tz=CET)
    assert iso_utc(record.epoch) == "2024-11-23T23:35:38+00:00"


@pytest.mark.parametrize("month_day, reference, year", [
    ("Nov 24", epoch(2024, 11, 24, 12, 0), 2024),
    ("Dec 31", epoch(2025, 1, 2, 0, 0), 2024),   # a log that crosses new year, read in January
    ("Jan  1", epoch(2025, 1, 2, 0, 0), 2025),
    ("Feb 29", epoch(2025, 3, 1, 0, 0), 2024),   # no 29 February in 2025
])
def test_year_of_short_dates(month_day, reference, year):
    record = parse_line("%s 10:00:00 pve1 kernel: x" % month_day, reference, tz=UTC)
    assert datetime.datetime.fromtimestamp(record.epoch, UTC).year == year


def test_raw_dmesg_without_boot_time_keeps_only_uptime():
    record = parse_line("[ 5189.791634] x", REF)
    assert (record.epoch, record.monotonic, record.message) == (None, 5189.791634, "x")


@pytest.mark.parametrize("message", [MSG, list(MSG.encode())])
def test_journal_json_string_or_byte_array(message):
    line = json.dumps({"__REALTIME_TIMESTAMP": "1732404938412345", "_SOURCE_MONOTONIC_TIMESTAMP": "18000001",
                       "_TRANSPORT": "kernel", "MESSAGE": message})
    record = parse_line(line, REF)
    assert record.message == MSG
    assert record.epoch == pytest.approx(1732404938.412345)
    assert record.monotonic == pytest.approx(18.000001)
    assert record.ident == "kernel"


def test_journal_json_unit_and_identifier():
    line = json.dumps({"__REALTIME_TIMESTAMP": "1", "SYSLOG_IDENTIFIER": "systemd",
                       "UNIT": "pve-container@2017.service", "MESSAGE": "x"})
    record = parse_line(line, REF)
    assert (record.ident, record.unit) == ("systemd", "pve-container@2017.service")


def test_invalid_utf8_byte_array_is_replaced_not_fatal():
    line = json.dumps({"MESSAGE": [0x75, 0xff, 0xfe]})
    assert parse_line(line, REF).message == "u\ufffd\ufffd"


@pytest.mark.parametrize("line", ["", "   ", "\n"])
def test_blank_lines(line):
    assert parse_line(line, REF) is None


@pytest.mark.parametrize("line", [
    "{not json at all", "-- Journal begins at Sat 2023-02-18 10:11:01 CET. --", "[  pid  ] garbage",
    "\x00\x00 torn write", "Foo 12 99:99:99 nonsense"])
def test_garbage_is_a_bare_message(line):
    record = parse_line(line, REF)
    assert record.epoch is None and record.ident is None and record.message == line.rstrip("\n")


NOW = epoch(2024, 11, 24, 12, 0)


@pytest.mark.parametrize("value, expected", [
    ("7d", NOW - 7 * 86400), ("12h", NOW - 12 * 3600), ("30m", NOW - 1800), ("2w", NOW - 14 * 86400),
    ("90s", NOW - 90), ("90", NOW - 90), ("1.5h", NOW - 5400),
    ("@1732404938", 1732404938.0),
    ("2024-11-24", epoch(2024, 11, 24)), ("2024-11-24 00:30", epoch(2024, 11, 24, 0, 30)),
    ("2024-11-24T00:30:00+01:00", epoch(2024, 11, 23, 23, 30)), ("2024-11-24T00:30:00Z", epoch(2024, 11, 24, 0, 30)),
    (None, None), ("", None),
])
def test_since(value, expected):
    assert parse_since(value, NOW, tz=UTC) == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("value", ["yesterday", "7 days", "2024-13-45", "2024-11-24x", "-3d"])
def test_since_rejects_what_it_cannot_read_and_says_what_it_takes(value):
    with pytest.raises(ValueError, match="neither a duration .*7d.* nor a time"):
        parse_since(value, NOW)


def test_iso_utc_is_exact_to_the_microsecond():
    assert iso_utc(1732404939.512345) == "2024-11-23T23:35:39.512345+00:00"
    assert iso_utc(None) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_line_frames_without_raising(line):
    record = parse_line(line, REF, boot_epoch=BOOT)
    assert record is None or isinstance(record.message, str)
