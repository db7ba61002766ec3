"""The lab's unbound keeps to Debian's AppArmor profile for /usr/sbin/unbound: its files sit under
/var/lib/unbound (``/var/lib/unbound/** r``, ``owner /var/lib/unbound/** rw``), reached through <labdir>/dns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enva_lab import dns


def test_the_default_lab_uses_one_directory_the_profile_allows():
    assert dns.unbound_dir("/var/lib/enva-lab") == Path("/var/lib/unbound/enva-lab")


def test_another_lab_directory_gets_its_own_and_stays_under_var_lib_unbound():
    one, other = dns.unbound_dir("/tmp/a/lab"), dns.unbound_dir("/tmp/b/lab")
    assert one != other
    assert one.parent == other.parent == Path("/var/lib/unbound")


@pytest.fixture()
def state(tmp_path, monkeypatch):
    monkeypatch.setattr(dns, "UNBOUND_STATE", tmp_path / "var-lib-unbound")
    return tmp_path


def test_labdir_dns_becomes_a_link_and_an_old_directory_goes(state):
    old = state / "lab" / "dns"
    old.mkdir(parents=True)
    (old / "unbound.conf").write_text("old\n")
    target = dns.link_unbound_dir(old, state / "lab")
    assert old.is_symlink() and os.readlink(old) == str(target)
    assert target.parent == state / "var-lib-unbound" and target.is_dir()
    (old / "unbound.conf").write_text("new\n")          # writes land in the real directory
    assert (target / "unbound.conf").read_text() == "new\n"
    assert dns.link_unbound_dir(old, state / "lab") == target and old.is_symlink()


def test_the_config_names_files_under_the_link(state):
    link = state / "lab" / "dns"
    link.parent.mkdir()
    dns.link_unbound_dir(link, state / "lab")
    text = dns.unbound_conf([], link, link / "unbound.log", link / "unbound.ctl")
    assert 'directory: "%s"' % link in text and 'logfile: "%s/unbound.log"' % link in text


@pytest.mark.parametrize("listing, mode", [
    ("unbound (enforce)\nlxc-container-default (enforce)\n", "enforce"),
    ("/usr/sbin/unbound (complain)\n", "complain"),
    ("lxc-container-default (enforce)\n", None),
])
def test_the_hint_says_when_apparmor_holds_unbound(tmp_path, listing, mode):
    profiles = tmp_path / "profiles"
    profiles.write_text(listing)
    assert dns.apparmor_mode(profiles) == mode
    hint = dns.denials_hint(profiles)
    assert (mode in hint and "DENIED" in hint and "/var/lib/unbound" in hint) if mode else hint == ""


def test_no_apparmor_no_hint(tmp_path):
    assert dns.apparmor_mode(tmp_path / "absent") is None and dns.denials_hint(tmp_path / "absent") == ""
