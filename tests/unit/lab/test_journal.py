"""The lab's pve-container@VMID journal: systemd 252's words, journalctl's shapes, and the
collection's own lifecycle parser reading them back."""

from __future__ import annotations

import datetime
import json
import signal

import pytest

from ansible_collections.enva.pve.plugins.module_utils.ct_lifecycle import parse_lifecycle, vmid_from_filename
from enva_lab import journal
from enva_lab.settings import Layout

TITLE = "pve-container@2017.service - PVE LXC Container: 2017"
UNIT = "pve-container@2017.service"


@pytest.mark.parametrize("usec, expected", [
    (0, "0"),
    (312000, "312ms"),
    (312999, "312ms"),
    (1100000, "1.100s"),
    (4551000, "4.551s"),
    (59999900, "59.999s"),
    (62345000, "1min 2.345s"),
    (120000000, "2min"),
    ((3 * 3600 + 12 * 60 + 4) * 10 ** 6 + 551000, "3h 12min 4.551s"),
    ((27 * 3600) * 10 ** 6, "1d 3h"),
    (999, "999us"),
    (60 * 10 ** 6 + 400, "1min"),
])
def test_format_timespan_as_systemd_prints_cpu_time(usec, expected):
    assert journal.format_timespan(usec) == expected


@pytest.mark.parametrize("code, status, expected", [
    ("exited", 1, "code=exited, status=1/FAILURE"),
    ("exited", 2, "code=exited, status=2/INVALIDARGUMENT"),
    ("exited", 78, "code=exited, status=78/CONFIG"),
    ("exited", 123, "code=exited, status=123/n/a"),
    ("killed", signal.SIGKILL, "code=killed, status=9/KILL"),
    ("dumped", signal.SIGSEGV, "code=dumped, status=11/SEGV"),
])
def test_exit_descriptions(code, status, expected):
    assert journal.exit_description(code, status) == expected


def messages(event, **detail):
    return [(kind, priority, message) for kind, priority, message, _extra in
            journal.lifecycle_messages(2017, event, **detail)]


def test_start_is_starting_then_started():
    assert messages("start") == [("starting", "info", "Starting %s..." % TITLE),
                                 ("started", "info", "Started %s." % TITLE)]


def test_the_ct_stopping_by_itself_with_success_is_deactivated_then_consumed():
    assert messages("exit", code="exited", status=0, cpu_usec=6881000) == [
        ("success", "info", "%s: Deactivated successfully." % UNIT),
        ("resources", "info", "%s: Consumed 6.881s CPU time." % UNIT)]


def test_a_failing_main_process_is_reported_as_systemd_does():
    assert messages("exit", code="exited", status=1, cpu_usec=1500) == [
        ("process_exit", "notice", "%s: Main process exited, code=exited, status=1/FAILURE" % UNIT),
        ("failure_result", "warning", "%s: Failed with result 'exit-code'." % UNIT),
        ("resources", "info", "%s: Consumed 1ms CPU time." % UNIT)]
    assert messages("exit", code="killed", status=9)[1][2] == "%s: Failed with result 'signal'." % UNIT


def test_a_requested_stop_is_stopping_result_stopped_consumed():
    assert [kind for kind, _p, _m in messages("stopping") + messages("exit", code="exited", status=0, cpu_usec=503000,
                                                                     requested=True)] == [
        "stopping", "success", "stopped", "resources"]
    assert messages("exit", code="exited", status=0, requested=True)[-1][2] == "Stopped %s." % TITLE


def test_a_record_has_journalctl_json_fields():
    record = journal.record(2017, "started", "info", "Started %s." % TITLE, {"JOB_TYPE": "start"},
                            1732404967220000, 123456789, "a" * 32, "b" * 32, "c" * 32)
    assert record["__REALTIME_TIMESTAMP"] == "1732404967220000" and record["_HOSTNAME"] == "pve1"
    assert (record["UNIT"], record["_SYSTEMD_UNIT"], record["SYSLOG_IDENTIFIER"], record["_PID"]) == (
        UNIT, "init.scope", "systemd", "1")
    assert record["MESSAGE_ID"] == "39f53479d3a045ac8e11786248231fbf" and record["PRIORITY"] == "6"
    assert all(isinstance(value, str) for value in record.values())
    assert journal.dumps(record).startswith('{"__REALTIME_TIMESTAMP":"1732404967220000",')


def fixed_records():
    times = iter(range(1732404967000000, 1732404968000000, 250000))
    records = []
    for event, detail in (("start", {}), ("exit", {"code": "exited", "status": 0, "cpu_usec": 6881000})):
        for kind, priority, message, extra in journal.lifecycle_messages(2017, event, **detail):
            records.append(journal.record(2017, kind, priority, message, extra, next(times), 1, "i" * 32, "b" * 32))
    return records


def test_render_short_is_what_journalctl_u_prints():
    assert journal.render(fixed_records(), "short", tz=3600) == (
        "Nov 24 00:36:07 pve1 systemd[1]: Starting %s...\n"
        "Nov 24 00:36:07 pve1 systemd[1]: Started %s.\n"
        "Nov 24 00:36:07 pve1 systemd[1]: %s: Deactivated successfully.\n"
        "Nov 24 00:36:07 pve1 systemd[1]: %s: Consumed 6.881s CPU time.\n" % (TITLE, TITLE, UNIT, UNIT))


def test_render_iso_forms_use_systemd_252s_offset_without_colon():
    line = journal.render(fixed_records()[:1], "short-iso-precise", tz=3600)
    assert line.startswith("2024-11-24T00:36:07.000000+0100 pve1 systemd[1]: Starting ")
    assert journal.render(fixed_records()[:1], "short-iso", tz=-5400).startswith("2024-11-23T22:06:07-0130 ")


def test_render_of_nothing_says_no_entries():
    assert journal.render([], "short") == "-- No entries --\n"
    assert journal.render([], "json") == ""


@pytest.mark.parametrize("style", ["json", "short-iso-precise", "short-iso", "short"])
def test_the_collections_lifecycle_parser_reads_every_form(style):
    text = journal.render(fixed_records(), style, tz=0)
    events = parse_lifecycle(text.splitlines(), 1732404967, vmid=2017, tz=datetime.timezone.utc)
    assert [(event["vmid"], event["event"]) for event in events] == [
        (2017, "starting"), (2017, "started"), (2017, "deactivated")]


def test_journal_appends_json_lines_to_the_cts_file(tmp_path):
    layout = Layout(root=tmp_path)
    book = journal.Journal(layout)
    book.write(2017, "start", "1" * 32)
    book.write(2017, "stopping", "1" * 32)
    book.write(2017, "exit", "1" * 32, code="killed", status=9, cpu_usec=2000000, requested=True)
    path = layout.journal_file(2017)
    assert path.name == "pve-container@2017.jsonl" and vmid_from_filename(path.name) == 2017
    lines = path.read_text().splitlines()
    assert [json.loads(line)["MESSAGE"] for line in lines] == [
        "Starting %s..." % TITLE, "Started %s." % TITLE, "Stopping %s..." % TITLE,
        "%s: Main process exited, code=killed, status=9/KILL" % UNIT, "%s: Failed with result 'signal'." % UNIT,
        "Stopped %s." % TITLE, "%s: Consumed 2s CPU time." % UNIT]
    stamps = [int(json.loads(line)["__REALTIME_TIMESTAMP"]) for line in lines]
    assert stamps == sorted(stamps)
    assert journal.read(path) == [json.loads(line) for line in lines]
    assert journal.read(tmp_path / "missing.jsonl") == []
