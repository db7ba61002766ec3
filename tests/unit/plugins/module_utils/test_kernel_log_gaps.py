"""kernel_log_gaps: what the log itself says it lost, read from the lines journald and the kernel write."""

from __future__ import annotations

import pytest

from ansible_collections.enva.pve.plugins.module_utils import kernel_log_gaps as gaps
from ansible_collections.enva.pve.plugins.module_utils.log_lines import parse_line
from ansible_collections.enva.pve.plugins.module_utils.oom_kernel import parse_kernel_log
from support import journald_notices as notices
from support.oom_corpus import journal_json, killed_line

BOOT = 1796450000.0
T = 1796455934.0


def gap_of(line):
    return gaps.record_gap(parse_line(line, T + 60))


@pytest.mark.parametrize("line, kind, count, source, affects, vmid", [
    (notices.missed(T, 1021, BOOT), "journal_missed", 1021, "systemd-journald", "kernel_log", None),
    (notices.overrun(T, BOOT), "journal_overrun", None, "systemd-journald", "kernel_log", None),
    (notices.dropped(T, 4117, "pve-container@2017.service", BOOT), "journal_dropped", 4117,
     "pve-container@2017.service", "lifecycle_log", 2017),
    (notices.dropped(T, 12, "pvedaemon.service", BOOT), "journal_dropped", 12, "pvedaemon.service", "none", None),
    (notices.kernel(T, "oom_kill_process: 42 callbacks suppressed", BOOT), "kernel_ratelimit", 42,
     "oom_kill_process", "kernel_log", None),
    (notices.kernel(T, "net_ratelimit: 7 callbacks suppressed", BOOT), "kernel_ratelimit", 7, "net_ratelimit",
     "none", None),
    ("[ 1019.149587] __alloc_pages_slowpath: 87666 callbacks suppressed", "kernel_ratelimit", 87666,
     "__alloc_pages_slowpath", "none", None),
    (notices.kernel(T, "printk: systemd: 18 output lines suppressed due to ratelimiting", BOOT),
     "devkmsg_ratelimit", 18, "systemd", "none", None),
    ("Sep 03 12:05:42 pve1 kernel: systemd-shutdow: 36 output lines suppressed due to ratelimiting",
     "devkmsg_ratelimit", 36, "systemd-shutdow", "none", None),
    (notices.kernel(T, "printk: 12 messages suppressed.", BOOT), "printk_suppressed", 12, "printk", "kernel_log",
     None),
])
def test_each_kind_from_the_line_as_written(line, kind, count, source, affects, vmid):
    gap = gap_of(line)
    assert (gap["kind"], gap["count"], gap["source"], gap["affects"], gap["vmid"]) == (
        kind, count, source, affects, vmid)
    assert gap["meaning"] and gap["message"] in line.replace("\\/", "/")


@pytest.mark.parametrize("line", [
    notices.kernel(T, "Memory cgroup out of memory: Killed process 2609 (socat) total-vm:8216kB, anon-rss:2816kB, "
                      "file-rss:1024kB, shmem-rss:0kB, UID:100000 pgtables:56kB oom_score_adj:0", BOOT),
    # the same words written by a program that is not journald are not journald's notice
    notices.missed(T, 3, BOOT).replace('"SYSLOG_IDENTIFIER": "systemd-journald"', '"SYSLOG_IDENTIFIER": "bash"'),
    # journald's other notices
    notices.missed(T, 3, BOOT).replace("Missed 3 kernel messages", "Journal started"),
    # journald's overrun as raw dmesg shows it: the ring buffer itself lost nothing
    "[ 1022.822657] systemd-journald[375]: /dev/kmsg buffer overrun, some messages lost.",
    "",
])
def test_lines_that_are_no_gap(line):
    assert gap_of(line) is None


def test_merge_sums_one_kind_and_keeps_the_span_and_the_window():
    found = [gap_of(notices.missed(T + offset, count, BOOT)) for offset, count in ((0, 1021), (1.5, 700), (3, 21))]
    found.append(gap_of(notices.missed(T - 3600, 99, BOOT)))        # before the window
    found.append(gap_of(notices.dropped(T + 2, 4117, "pve-container@2017.service", BOOT)))
    merged = gaps.merge(found, since_epoch=T - 60)
    assert [gap["kind"] for gap in merged] == ["journal_missed", "journal_dropped"]
    missed = merged[0]
    assert (missed["count"], missed["lines"]) == (1742, 3)
    assert missed["first_time"] == "2026-12-05T07:32:14+00:00" and missed["last_time"] == "2026-12-05T07:32:17+00:00"
    assert missed["message"] == "Missed 21 kernel messages"
    assert "first_epoch" not in missed


@pytest.mark.parametrize("first, since, late", [
    (T + 5000, T, True),
    (T + 1, T, False),                       # within the slack: the buffer covers the window
    (T - 10, T, False),
    (T + 5000, None, False),                  # no window start: nothing to compare
    (None, T, False),                         # an empty ring buffer has no first line
])
def test_dmesg_starting_after_the_window(first, since, late):
    gap = gaps.dmesg_starts_late(first, since)
    assert (gap is not None) is late
    if late:
        merged = gaps.merge([gap])[0]
        assert merged["kind"] == "dmesg_starts_late" and merged["affects"] == "kernel_log"
        assert merged["first_time"] == "2026-12-05T07:32:14+00:00"
        assert merged["last_time"] == "2026-12-05T08:55:34+00:00"


def test_apply_marks_the_verdicts_the_gaps_touch():
    reports = {vmid: {"verdict": {"oom_killed": False}} for vmid in (101, 2017)}
    found = gaps.merge([gap_of(notices.dropped(T, 40, "pve-container@2017.service", BOOT))])
    gaps.apply(reports, found)
    assert reports[2017]["verdict"]["lifecycle_log_complete"] is False
    assert reports[101]["verdict"]["lifecycle_log_complete"] is True
    assert reports[101]["verdict"]["kernel_log_complete"] is True and reports[101]["verdict"]["log_gaps"] == []
    gaps.apply(reports, found + gaps.merge([gap_of(notices.missed(T, 5, BOOT))]))
    assert [report["verdict"]["kernel_log_complete"] for report in reports.values()] == [False, False]
    assert reports[2017]["verdict"]["log_gaps"] == ["journal_dropped", "journal_missed"]


def test_the_kernel_parser_reports_the_rate_limit_and_still_reads_the_kills():
    lines = [journal_json(T, killed_line(2609, "socat"), BOOT),
             notices.kernel(T + 5, "oom_kill_process: 42 callbacks suppressed", BOOT),
             notices.overrun(T + 6, BOOT),
             journal_json(T + 7, killed_line(2610, "socat"), BOOT)]
    result = parse_kernel_log(lines, T + 60)
    assert [gap["kind"] for gap in result["gaps"]] == ["kernel_ratelimit", "journal_overrun"]
    assert sum(len(event["victims"]) for event in result["events"]) == 2
    assert result["kernel_lines"] == 3           # journald's own line is no kernel line


def test_warning_names_kind_source_count_and_span():
    (gap,) = gaps.merge([gap_of(notices.missed(T, 1021, BOOT))])
    text = gaps.warning(gap)
    assert text.startswith("kernel_log gap (journal_missed), from systemd-journald, 1021 line(s) or message(s), "
                           "2026-12-05T07:32:14+00:00 to 2026-12-05T07:32:14+00:00: journald lost")
    assert text.endswith("('Missed 1021 kernel messages')")


def test_journald_notices_query_and_its_failure():
    calls = []

    def run(argv):
        calls.append(argv)
        return 0, "\n".join([notices.missed(T, 8, BOOT), notices.dropped(T, 3, "cron.service", BOOT)]), ""

    found = gaps.journald_notices(run, ["--since", "@1796455000"], T + 60)
    assert calls == [["journalctl", "--no-pager", "-o", "json", "_TRANSPORT=driver",
                      "SYSLOG_IDENTIFIER=systemd-journald", "--since", "@1796455000"]]
    assert [gap["kind"] for gap in found] == ["journal_missed", "journal_dropped"]
    (failed,) = gaps.journald_notices(lambda argv: (1, "", "Failed to open journal: Permission denied\n"), [], T)
    assert failed["kind"] == "journald_notices_unreadable" and failed["affects"] == "none"
    assert failed["message"] == "Failed to open journal: Permission denied"
