"""The relay's configuration, pure: addresses, the INI file, precedence, allow tokens, rtnetlink parsing, log format."""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct

import pytest

from ansible_collections.enva.pve.roles.dns_relay.files.enva_relay import config, netlink, systemd


@pytest.mark.parametrize("text, family, sockaddr, label", [
    ("192.0.2.1:53", socket.AF_INET, ("192.0.2.1", 53), "192.0.2.1:53"),
    (" 192.0.2.1 ", socket.AF_INET, ("192.0.2.1", 53), "192.0.2.1:53"),
    ("127.0.0.1:5353", socket.AF_INET, ("127.0.0.1", 5353), "127.0.0.1:5353"),
    ("[2001:db8::1]:5353", socket.AF_INET6, ("2001:db8::1", 5353, 0, 0), "[2001:db8::1]:5353"),
    ("[2001:DB8::1]", socket.AF_INET6, ("2001:db8::1", 53, 0, 0), "[2001:db8::1]:53"),
    ("::1", socket.AF_INET6, ("::1", 53, 0, 0), "[::1]:53"),
])
def test_parse_endpoint(text, family, sockaddr, label):
    assert config.parse_endpoint(text) == config.Endpoint(family, sockaddr, label)


@pytest.mark.parametrize("text, message", [
    ("dns.example:53", "not an IP address"),
    ("192.0.2.1:0", "1..65535"),
    ("192.0.2.1:65536", "1..65535"),
    ("192.0.2.1:dns", "1..65535"),
    ("[2001:db8::1]53", r"expected \[IPv6\]:PORT"),
    ("", "not an IP address"),
])
def test_parse_endpoint_errors(text, message):
    with pytest.raises(config.ConfigError, match=message):
        config.parse_endpoint(text)


@pytest.mark.parametrize("text, label", [("9153", "127.0.0.1:9153"), ("0.0.0.0:9100", "0.0.0.0:9100"), ("[::1]", "[::1]:9153")])
def test_metrics_address_defaults_to_loopback(text, label):
    assert config.parse_metrics(text).label == label


def write(tmp_path, text):
    path = tmp_path / "relay.ini"
    path.write_text(text)
    return str(path)


def test_config_file_lists_and_keys(tmp_path):
    path = write(tmp_path, "[relay]\nlisten = 127.0.0.1:5300, 127.0.0.2:5300\n  127.0.0.3:5300\nupstream = 192.0.2.53\n"
                           "max_inflight = 100\nlog-level = warning\n")
    assert config.read_config_file(path) == {
        "listen": ["127.0.0.1:5300", "127.0.0.2:5300", "127.0.0.3:5300"], "upstream": ["192.0.2.53"],
        "max-inflight": "100", "log-level": "warning"}


@pytest.mark.parametrize("text, message", [
    ("[relay]\nupstreams = 192.0.2.1\n", "unknown key 'upstreams'"),
    ("upstream = 192.0.2.1\n", "cannot read"),
    ("[resolver]\nupstream = 192.0.2.1\n", r"expected exactly one section, \[relay\] \(found: resolver\)"),
    ("[relay]\n[other]\n", "found: relay, other"),
    ("", "found: none"),
])
def test_config_file_errors(tmp_path, text, message):
    with pytest.raises(config.ConfigError, match=message):
        config.read_config_file(write(tmp_path, text))


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(config.ConfigError, match="cannot read .*missing.ini"):
        config.read_config_file(str(tmp_path / "missing.ini"))


def test_flags_override_the_file_which_overrides_the_defaults(tmp_path):
    path = write(tmp_path, "[relay]\nupstream = 192.0.2.1, 192.0.2.2\ntimeout = 3\nmax-inflight = 10\n")
    args = config.build_parser().parse_args(["--config", path, "--timeout", "0.5", "--upstream", "198.51.100.1"])
    settings = config.load_settings(args)
    assert [e.label for e in settings.upstream] == ["198.51.100.1:53"], "a flag replaces the whole list"
    assert settings.timeout == 0.5 and settings.max_inflight == 10
    assert [e.label for e in settings.listen] == ["127.0.0.1:53"] and settings.tcp_idle_timeout == 10.0
    assert settings.metrics is None and settings.log_level == "info"


@pytest.mark.parametrize("argv", [
    ["--allow", "192.0.2.0/24", "--allow", "198.51.100.0/24", "--allow", "local"],
    ["--allow", "192.0.2.0/24", "198.51.100.0/24", "local"],
    ["--allow", "192.0.2.0/24,198.51.100.0/24", "--allow", "local"],
])
def test_allow_takes_several_cidrs_after_one_flag_or_repeated(argv):
    args = config.build_parser().parse_args(
        ["--upstream", "192.0.2.53", "--listen", "127.0.0.1:5300", "--listen", "[::1]:5300"] + argv)
    settings = config.load_settings(args)
    assert settings.raw["allow"] == ["192.0.2.0/24", "198.51.100.0/24", "local"]
    assert [str(n) for n in settings.allow[:4]] == ["192.0.2.0/24", "198.51.100.0/24", "127.0.0.0/8", "::1/128"]
    assert [e.label for e in settings.listen] == ["127.0.0.1:5300", "[::1]:5300"]


def test_duplicate_addresses_are_refused():
    args = config.build_parser().parse_args(["--upstream", "192.0.2.1", "--upstream", "192.0.2.1:53"])
    with pytest.raises(config.ConfigError, match="upstream: an address is given twice"):
        config.load_settings(args)


def test_allow_tokens():
    networks = config.resolve_allow(["10.1.2.3/8", "10.0.0.0/8", "2001:db8::/32"])
    assert networks == [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]
    with pytest.raises(config.ConfigError, match="'everyone' is neither a CIDR nor 'local'"):
        config.resolve_allow(["everyone"])


def nlmsg(kind, payload, flags=2):
    return struct.pack("=IHHII", 16 + len(payload), kind, flags, 1, 0) + payload + b"\x00" * (-len(payload) % 4)


def rtattr(kind, data):
    return struct.pack("=HH", 4 + len(data), kind) + data + b"\x00" * (-len(data) % 4)


def test_parse_rtm_newaddr_prefers_the_local_address_and_stops_at_done():
    v4 = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 2) + rtattr(netlink.IFA_ADDRESS, bytes([10, 9, 8, 1])) + \
        rtattr(netlink.IFA_LOCAL, bytes([192, 168, 7, 9]))  # point-to-point: ADDRESS is the peer
    v6 = struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 2) + rtattr(netlink.IFA_ADDRESS, ipaddress.ip_address("fd00::5").packed)
    other = struct.pack("=BBBBI", 17, 0, 0, 0, 2)  # AF_PACKET: ignored
    data = nlmsg(netlink.RTM_NEWADDR, v4) + nlmsg(netlink.RTM_NEWADDR, v6) + nlmsg(netlink.RTM_NEWADDR, other)
    assert netlink.parse_rtm_newaddr(data) == ([ipaddress.ip_network("192.168.7.0/24"), ipaddress.ip_network("fd00::/64")], False)
    assert netlink.parse_rtm_newaddr(data + nlmsg(netlink.NLMSG_DONE, b"\x00" * 4))[1] is True
    with pytest.raises(OSError, match="rtnetlink error 1"):
        netlink.parse_rtm_newaddr(nlmsg(netlink.NLMSG_ERROR, struct.pack("=i", -1) + b"\x00" * 16))


@pytest.mark.parametrize("level, prefix", [(logging.ERROR, "<3>"), (logging.WARNING, "<4>"), (logging.INFO, "<6>"), (logging.DEBUG, "<7>")])
def test_journal_lines_carry_the_syslog_priority(level, prefix):
    record = logging.LogRecord("enva-dns-relay", level, __file__, 1, "upstream %s down", ("192.0.2.1:53",), None)
    assert systemd.JournalFormatter("%(message)s").format(record) == prefix + "upstream 192.0.2.1:53 down"
