"""roles/ct_logging: its defaults change nothing, and the measuring helper's pure parts (HAProxy's config edit,
lines appended to a file); its argument spec is checked with every role's in test_role_specs.py."""

from __future__ import annotations


import pytest

from support import role_specs
from support.role_specs import ROOT
from support.scripts import load_script

ROLE = ROOT / "roles" / "ct_logging"


def load_helper():
    return load_script(ROLE / "files" / "ct_logging.py", "ct_logging_helper")


helper = load_helper()


def test_with_the_defaults_the_role_changes_nothing():
    defaults = role_specs.role_defaults(ROLE)
    reducing = {name: value for name, value in defaults.items()
                if name.startswith(("ct_logging_journald_", "ct_logging_single", "ct_logging_journal_vacuum",
                                    "ct_logging_rsyslog_rate", "ct_logging_haproxy_dontlog", "ct_logging_haproxy_log"))}
    assert reducing and all(value in (None, False) for value in reducing.values())


CONFIG = """global
\tlog /dev/log\tlocal0
\tlog /dev/log\tlocal1 notice # errors too
\tchroot /var/lib/haproxy

defaults
\tlog\tglobal
\tmode\thttp
\toption\thttplog
\ttimeout connect 5s

frontend www
\tbind :80
\tlog 127.0.0.1:514 local2
\tno option dontlog-normal
\tdefault_backend web

backend web
\tserver web1 web.example.org:8080
"""


def test_haproxy_edit_touches_only_global_and_defaults():
    text, notes = helper.edit_haproxy(CONFIG, dontlog_normal=True, level="notice")
    assert "\tlog /dev/log\tlocal0 notice\n" in text
    assert "\tlog /dev/log\tlocal1 notice # errors too\n" in text
    assert "\toption\thttplog\n\toption\tdontlog-normal\n\ttimeout connect 5s\n" in text
    frontend = text[text.index("frontend www"):]
    assert frontend == CONFIG[CONFIG.index("frontend www"):]
    assert notes == ["frontend www has log lines of its own: their level is left as it is",
                     "frontend www says no option dontlog-normal: it keeps logging every request"]
    again, _notes = helper.edit_haproxy(text, dontlog_normal=True, level="notice")
    assert again == text                                        # idempotent


def test_haproxy_edit_with_nothing_asked_changes_nothing():
    assert helper.edit_haproxy(CONFIG)[0] == CONFIG


@pytest.mark.parametrize("line, level, expected", [
    ("\tlog /dev/log local0", "notice", "\tlog /dev/log local0 notice"),
    ("log 127.0.0.1:514 len 2048 format rfc5424 local2 info debug", "warning",
     "log 127.0.0.1:514 len 2048 format rfc5424 local2 warning debug"),
    ("log /dev/log local0 info notice", "err", "log /dev/log local0 err notice"),   # the minimum only caps
    ("log global", "err", None),
    ("log /dev/log nofacility", "err", None),
])
def test_log_level_on_one_line(line, level, expected):
    assert helper._with_level(line, level) == expected           # pylint: disable=protected-access


def test_haproxy_without_defaults_says_dontlog_normal_was_not_set():
    text, notes = helper.edit_haproxy("frontend f\n\tbind :80\n", dontlog_normal=True, level="notice")
    assert text == "frontend f\n\tbind :80\n"
    assert any("no defaults section" in note for note in notes)
    assert any("no global section" in note for note in notes)


def test_lines_appended_to_a_file_and_after_a_rotation(tmp_path):
    path = tmp_path / "syslog"
    path.write_text("a\nb\n")
    before = helper.file_state([str(path)])[str(path)]
    with path.open("a") as handle:
        handle.write("c\nd\ne\n")
    after = helper.file_state([str(path)])[str(path)]
    assert helper.count_lines(str(path), before, after) == (3, 6)
    assert helper.count_lines(str(path), None, after) == (5, 10)           # a new file: all of it
    rotated = dict(before, inode=before["inode"] + 1)
    assert helper.count_lines(str(path), rotated, after) == (5, 10)


def test_snapshot_and_compare_run_here(tmp_path):
    """The helper's snapshot on this machine (no journal needed): it must not fail where things are absent."""
    path = tmp_path / "haproxy.log"
    path.write_text("x\n")
    before = helper.snapshot([str(path), str(tmp_path / "missing.log")])
    path.write_text("x\ny\n")
    result = helper.compare(before, helper.snapshot([str(path)]))
    assert result["targets"][str(path)]["lines"] == 1
    assert set(result) >= {"lines_kept_per_s", "bytes_written", "rss_bytes", "cgroup", "journal_by_unit"}
