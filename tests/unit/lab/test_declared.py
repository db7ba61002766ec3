"""The declared file the lab builds its CTs from: read, extended with generated CTs, restored."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from enva_lab import declared, settings

SAMPLE = settings.SAMPLE.read_text()


def read(text):
    return declared.read_text(text, "enva.yaml")


def test_the_sample_declares_ct_2017_as_the_incident_found_it():
    by_vmid = {ct.vmid: ct for ct in read(SAMPLE)}
    haproxy = by_vmid[2017]
    assert (haproxy.hostname, haproxy.ip, haproxy.memory, haproxy.swap, haproxy.onboot) == \
        ("haproxy", "10.217.0.17", 1024, 1024, True)
    assert haproxy.is_haproxy and haproxy.role == "haproxy"
    assert len(by_vmid) >= 4 and all(ct.memory < 1024 for vmid, ct in by_vmid.items() if vmid != 2017)


def test_the_sample_is_a_realistic_site_file_with_comments_and_containers_last():
    assert SAMPLE.startswith("---\n") and SAMPLE.count("\n#") > 5
    assert list(yaml.safe_load(SAMPLE))[-1] == "containers"


@pytest.mark.parametrize("ordinary, vmids, generated", [
    (0, [2017], []),
    (2, [2017, 2101, 2102], []),
    (3, [2017, 2101, 2102, 2103], []),
    (5, [2017, 2101, 2102, 2103, 2104, 2105], [2104, 2105]),
])
def test_up_runs_2017_then_the_declared_ordinary_cts_then_generated_ones(ordinary, vmids, generated):
    cts, new = declared.plan_lab_cts(read(SAMPLE), ordinary)
    assert [ct.vmid for ct in cts] == vmids
    assert [ct.vmid for ct in new] == generated
    assert all(ct.ip == "10.217.0.%d" % (ct.vmid - 2000) and ct.hostname == "ct%d" % ct.vmid for ct in new)


def test_generated_cts_skip_taken_vmids_and_addresses():
    text = SAMPLE + "  - vmid: 2105\n    hostname: extra\n    ip: 10.217.0.104\n"
    _cts, new = declared.plan_lab_cts(read(text), 5)
    assert [(ct.vmid, ct.ip) for ct in new] == [(2106, "10.217.0.106")]


def test_appended_entries_keep_every_byte_before_them_and_read_back():
    _cts, new = declared.plan_lab_cts(read(SAMPLE), 5)
    text = declared.append_entries(SAMPLE, new, "enva.yaml")
    assert text.startswith(SAMPLE)
    assert "  - vmid: 2104\n    hostname: ct2104\n" in text
    again = {ct.vmid: ct for ct in read(text)}
    assert again[2105].memory == 512 and again[2105].tags == ("lab", "fleet")


def test_appending_when_containers_is_not_last_is_refused():
    text = SAMPLE + "monitoring:\n  enabled: true\n"
    _cts, new = declared.plan_lab_cts(read(text), 5)
    with pytest.raises(declared.DeclaredFileError, match="must be the last thing"):
        declared.append_entries(text, new, "enva.yaml")


def test_restore_entry_puts_back_the_samples_lines_only():
    edited = SAMPLE.replace("    memory: 1024\n    swap: 1024\n", "    memory: 2048\n    swap: 1024\n", 1)
    edited = edited.replace("memory: 768   # raised", "memory: 1536   # raised")
    restored = declared.restore_entry(edited, SAMPLE, 2017)
    assert "memory: 1536   # raised" in restored                       # 2102's edit stays
    assert restored == SAMPLE.replace("memory: 768   # raised", "memory: 1536   # raised")


def test_restore_entry_of_the_last_entry_and_of_an_unknown_one():
    edited = SAMPLE.replace("onboot: 0     # started by hand", "onboot: 1     # started by hand")
    assert declared.restore_entry(edited, SAMPLE, 2103) == SAMPLE
    assert declared.restore_entry(edited, SAMPLE, 2999) == edited


def test_reading_never_writes_the_sample():
    before = hashlib.sha256(settings.SAMPLE.read_bytes()).hexdigest()
    declared.plan_lab_cts(read(settings.SAMPLE.read_text()), 7)
    assert hashlib.sha256(settings.SAMPLE.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("text, message", [
    ("containers: [\n", "is not valid YAML"),
    ("site: lab\n", "no top-level 'containers:' list"),
    ("containers:\n  - 2017\n", "must be a mapping"),
    ("containers:\n  - vmid: 2017\n    hostname: Bad_Name\n    ip: 10.217.0.17\n", "hostname must be a DNS label"),
    ("containers:\n  - vmid: 2017\n    hostname: h\n", "no ip"),
    ("containers:\n  - vmid: 2017\n    hostname: h\n    ip: 192.168.1.5\n", "not a CT address on the lab bridge"),
    ("containers:\n  - vmid: 2017\n    hostname: h\n    ip: 10.217.0.53\n", "not a CT address on the lab bridge"),
    ("containers:\n  - vmid: 2017\n    hostname: h\n    ip: 10.217.0.17\n    memory: true\n", "memory must be"),
    ("containers:\n  - vmid: 2017\n    hostname: h\n    ip: 10.217.0.17\n    memory: 1G\n", "memory must be"),
    ("containers:\n  - {vmid: 2017, hostname: a, ip: 10.217.0.17}\n  - {vmid: 2017, hostname: b, ip: 10.217.0.18}\n",
     "vmid 2017 is declared twice"),
    ("containers:\n  - {vmid: 2017, hostname: a, ip: 10.217.0.17}\n  - {vmid: 2101, hostname: b, ip: 10.217.0.17}\n",
     "ip 10.217.0.17 is declared twice"),
])
def test_a_file_the_lab_cannot_use_is_named_with_what_is_wrong(text, message):
    with pytest.raises(declared.DeclaredFileError, match=message):
        read(text)


def test_without_ct_2017_the_lab_has_nothing_to_reproduce():
    with pytest.raises(declared.DeclaredFileError, match="no CT 2017"):
        declared.plan_lab_cts(read("containers:\n  - {vmid: 2101, hostname: web, ip: 10.217.0.101}\n"), 0)


def test_tags_as_a_pve_string():
    (ct,) = read("containers:\n  - {vmid: 2017, hostname: h, ip: 10.217.0.17/24, tags: 'a;b c'}\n")
    assert ct.tags == ("a", "b", "c") and ct.ip == "10.217.0.17"
