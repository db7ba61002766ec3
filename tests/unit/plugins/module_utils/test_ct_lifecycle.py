"""ct_lifecycle: pve-container@VMID start/stop events and what followed an OOM."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.enva.pve.plugins.module_utils.ct_lifecycle import (
    classify, following, parse_lifecycle, vmid_from_filename)

LIFECYCLE = Path(__file__).resolve().parents[2] / "fixtures" / "lifecycle"
UTC = datetime.timezone.utc
REF = datetime.datetime(2024, 12, 31, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("message, expected", [
    ("Started PVE LXC Container: 2017.", ("started", 2017, None)),
    ("Started pve-container@2017.service - PVE LXC Container: 2017.", ("started", 2017, None)),
    ("Starting PVE LXC Container: 703...", ("starting", 703, None)),
    ("Stopping pve-container@101.service - PVE LXC Container: 101...", ("stopping", 101, None)),
    ("Stopped PVE LXC Container: 703.", ("stopped", 703, None)),
    ("pve-container@2017.service: Deactivated successfully.", ("deactivated", 2017, None)),
    ("pve-container@703.service: Main process exited, code=exited, status=1/FAILURE",
     ("main_exited", 703, "code=exited, status=1/FAILURE")),
    ("pve-container@703.service: Failed with result 'exit-code'.", ("failed", 703, "exit-code")),
    ("Failed to start PVE LXC Container: 703.", ("failed", 703, None)),
    ("pve-container@2017.service: Consumed 3h 12min 4.551s CPU time.", None),
    ("Started Session 4711 of user root.", None),
    ("Started pve-guests.service - PVE guests.", None),
])
def test_classify(message, expected):
    assert classify(message) == expected


def test_journal_json_file():
    with open(LIFECYCLE / "pve-container@2017.jsonl") as handle:
        events = parse_lifecycle(handle, REF)
    assert [(e["vmid"], e["event"]) for e in events] == [
        (2017, "starting"), (2017, "started"), (2017, "deactivated"), (2017, "starting"), (2017, "started")]
    assert events[2]["time"] == "2024-11-23T23:36:07.220000+00:00"     # 00:36:07 at +01:00


def test_journalctl_short_text_with_old_wording():
    with open(LIFECYCLE / "pve-container@703.short.log") as handle:
        events = parse_lifecycle(handle, REF, tz=UTC)
    assert [e["event"] for e in events] == [
        "starting", "started", "main_exited", "failed", "stopped", "starting", "failed", "starting", "started"]
    assert events[2]["time"] == "2024-03-03T14:02:13+00:00"
    assert events[3]["detail"] == "exit-code"


def test_vmid_from_the_journal_unit_field_or_the_file():
    line = '{"__REALTIME_TIMESTAMP": "1732405272640000", "UNIT": "pve-container@2017.service", ' \
           '"MESSAGE": "pve-container@x.service: Deactivated successfully."}'
    assert parse_lifecycle([line], REF) == []          # no VMID anywhere: nothing to attribute
    plain = ["Nov 24 00:36:07 pve1 systemd[1]: Started PVE LXC Container: 2017."]
    assert parse_lifecycle(plain, REF, vmid=9)[0]["vmid"] == 2017     # the message wins over the hint


@pytest.mark.parametrize("name, vmid", [
    ("2017.log", 2017), ("pve-container@2017.jsonl", 2017), ("pve-container@2017.service.log", 2017),
    ("ct-703.json", 703), ("101.short-iso.log", 101), ("journal.jsonl", None), ("2.log", None)])
def test_vmid_from_filename(name, vmid):
    assert vmid_from_filename(name) == vmid


def _events(*specs):
    return [{"vmid": 1, "event": kind, "epoch": when, "time": str(when), "detail": None, "message": kind}
            for kind, when in specs]


@pytest.mark.parametrize("events, oom, until, stop, stops, start", [
    # the seed: OOM at 00:35:38, Deactivated at 00:36:07, started again later
    (_events(("started", 0), ("deactivated", 29), ("started", 334)), 0.5, None, 29, [29], 334),
    (_events(("main_exited", 10), ("failed", 10), ("stopped", 10), ("started", 200)), 5, None, 10, [10, 10, 10], 200),
    (_events(("stopped", 3)), 5, None, None, [], None),                     # stopped before the OOM
    (_events(("stopped", 4.5)), 5, None, 4.5, [4.5], None),                  # within a second of it
    (_events(("started", 50), ("stopped", 60)), 5, None, None, [], None),    # a start first: the stop was not logged
    (_events(("stopped", 500)), 5, 100, None, [], None),                     # after the next incident began
    (_events(("stopped", None), ("stopped", 10)), 5, None, 10, [10], None),  # no time: cannot be placed
])
def test_following(events, oom, until, stop, stops, start):
    got_stop, got_stops, got_start = following(events, oom, until)
    assert (got_stop["epoch"] if got_stop else None) == stop
    assert [event["epoch"] for event in got_stops] == stops
    assert (got_start["epoch"] if got_start else None) == start


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=30))
def test_any_text_never_raises(lines):
    assert all(event["vmid"] is not None for event in parse_lifecycle(lines, REF, vmid=None))
