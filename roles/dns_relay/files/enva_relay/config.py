# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The configuration: options (flags and [relay] INI keys alike), their defaults and checks."""

import argparse
import collections
import configparser
import ipaddress
import logging
import socket

from . import DOC, VERSION
from .netlink import interface_networks

LOG = logging.getLogger("enva-dns-relay")
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class ConfigError(Exception):
    """The configuration (file or flags) is not valid; the message says why."""


Endpoint = collections.namedtuple("Endpoint", "family sockaddr label")


def parse_endpoint(text, default_port=53):
    """``ADDR[:PORT]`` (IPv6 as ``[ADDR]:PORT``) to an Endpoint; raises ConfigError."""
    text = text.strip()
    host, port = text, None
    if text.startswith("["):
        host, _bracket, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ConfigError("%r: expected [IPv6]:PORT" % text)
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError("%r: not an IP address (names are not resolved)" % text)
    if port is None:
        number = default_port
    elif port.isdigit() and 1 <= int(port) <= 65535:
        number = int(port)
    else:
        raise ConfigError("%r: the port must be 1..65535" % text)
    if addr.version == 4:
        return Endpoint(socket.AF_INET, (str(addr), number), "%s:%d" % (addr, number))
    return Endpoint(socket.AF_INET6, (str(addr), number, 0, 0), "[%s]:%d" % (addr, number))


def parse_metrics(text):
    """``[ADDR:]PORT`` for the metrics endpoint: a bare port means 127.0.0.1."""
    text = text.strip()
    if text.isdigit():
        text = "127.0.0.1:" + text
    return parse_endpoint(text, default_port=9153)


def resolve_allow(tokens):
    """Allow-list tokens (CIDRs and ``local``) to a de-duplicated list of networks."""
    networks = []
    for token in tokens:
        if token == "local":
            networks.extend(LOOPBACK)
            try:
                networks.extend(interface_networks())
            except OSError as exc:
                LOG.warning("cannot read the interface addresses (%s): 'local' means loopback only", exc)
            continue
        try:
            networks.append(ipaddress.ip_network(token, strict=False))
        except ValueError:
            raise ConfigError("allow: %r is neither a CIDR nor 'local'" % token)
    unique = []
    for net in networks:
        if net not in unique:
            unique.append(net)
    return unique


def _number(kind, low, high):
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise ConfigError("%r is not a number" % text)
        if not low <= value <= high:
            raise ConfigError("%s is out of range %s..%s" % (text, low, high))
        return value
    return convert


def _level(text):
    if text.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("%r: use debug, info, warning or error" % text)
    return text.lower()


# name: (help, list?, default, converter)
OPTIONS = collections.OrderedDict((
    ("listen", ("address to listen on, UDP and TCP (repeatable)", True, "127.0.0.1:53", parse_endpoint)),
    ("upstream", ("DNS server to forward to, tried in this order (repeatable; required)", True, None, parse_endpoint)),
    ("timeout", ("seconds to wait for one upstream before trying the next (default 2)", False, "2", _number(float, 0.05, 60))),
    ("max-inflight", ("queries waiting for an upstream at once; more get REFUSED (default 4096)", False, "4096",
                      _number(int, 1, 65536))),
    ("allow", ("client CIDR allowed to query, or 'local' = loopback + this host's subnets (repeatable; default local)",
               True, "local", str)),
    ("metrics", ("serve Prometheus metrics on [ADDR:]PORT (ADDR defaults to 127.0.0.1)", False, None, parse_metrics)),
    ("log-level", ("debug (logs every query), info, warning or error (default info)", False, "info", _level)),
    ("tcp-idle-timeout", ("seconds a TCP client may go without sending a whole query (with none in flight) before it is "
                          "closed; stray bytes do not count (default 10)", False, "10", _number(float, 0.1, 3600))),
    ("tcp-frame-timeout", ("seconds a TCP query may take to arrive in full once its first byte has (default 2)", False, "2",
                           _number(float, 0.1, 60))),
    ("max-tcp-clients", ("TCP client connections at once; more wait in the kernel's backlog (default 256)", False, "256",
                         _number(int, 1, 65536))),
    ("max-tcp-per-client", ("TCP connections at once from one client address; more are closed at accept (default 16)", False,
                            "16", _number(int, 1, 65536))),
    ("tcp-buffer", ("KiB of unsent answers and unread queries one TCP client may hold in the relay; a client that lets more "
                    "pile up is closed (default 64)", False, "64", _number(int, 8, 4096))),
    ("tcp-buffer-budget", ("KiB of TCP client buffers for all clients together; the client that would go over it is closed "
                           "(default 4096)", False, "4096", _number(int, 64, 1048576))),
    ("max-upstream-tcp", ("TCP connections to each upstream, reused, queries pipelined on them (default 8)", False, "8",
                          _number(int, 1, 1024))),
    ("port-lifetime", ("seconds before a UDP socket to an upstream gets a new random port (also after 10000 queries; "
                       "default 60)", False, "60", _number(float, 1, 86400))),
))
TUNABLES = ("timeout", "max-inflight", "tcp-idle-timeout", "tcp-frame-timeout", "max-tcp-clients", "max-tcp-per-client",
            "tcp-buffer", "tcp-buffer-budget", "max-upstream-tcp", "port-lifetime")


class Settings:
    """The effective configuration: defaults < config file < command-line flags."""

    def __init__(self, values, config=None):
        self.config = config
        self.raw = values
        self.listen = [parse_endpoint(v) for v in values["listen"]]
        self.upstream = [parse_endpoint(v) for v in values["upstream"]]
        for name in TUNABLES:  # self.timeout, self.max_inflight, self.tcp_idle_timeout, ...
            setattr(self, name.replace("-", "_"), OPTIONS[name][3](values[name]))
        self.allow = resolve_allow(values["allow"])
        self.metrics = parse_metrics(values["metrics"]) if values["metrics"] else None
        self.log_level = _level(values["log-level"])
        if not self.listen:
            raise ConfigError("listen: no address")
        if not self.upstream:
            raise ConfigError("upstream: at least one is required (--upstream ADDR:PORT or 'upstream =' in [relay])")
        for name in ("listen", "upstream"):
            labels = [e.label for e in getattr(self, name)]
            if len(set(labels)) != len(labels):
                raise ConfigError("%s: an address is given twice" % name)

    def to_ini(self):
        """The effective configuration as a config file ('local' expanded in a comment)."""
        lines = ["[relay]"]
        for name in OPTIONS:
            value = self.raw[name]
            if isinstance(value, list):
                value = ", ".join(value)
            lines.append("%s = %s" % (name, value if value is not None else ""))
        lines.append("# allow resolves to: %s" % ", ".join(str(n) for n in self.allow))
        return "\n".join(lines) + "\n"


def split_list(text):
    """``a, b c\\nd`` -> [a, b, c, d]."""
    return [item for item in text.replace(",", " ").split() if item]


def read_config_file(path):
    """The [relay] section of an INI file as {option: str or list}; raises ConfigError."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc))
    if parser.sections() != ["relay"]:
        raise ConfigError("%s: expected exactly one section, [relay] (found: %s)" % (path, ", ".join(parser.sections()) or "none"))
    values = {}
    for key, value in parser.items("relay"):
        name = key.replace("_", "-")
        if name not in OPTIONS:
            raise ConfigError("%s: unknown key %r (known: %s)" % (path, key, ", ".join(OPTIONS)))
        values[name] = split_list(value) if OPTIONS[name][1] else value.strip()
    return values


def build_parser():
    """The command line; every option defaults to None so that we know which ones were given."""
    head, _blank, body = DOC.partition("\n\n")
    parser = argparse.ArgumentParser(prog="enva-dns-relay", description=head, epilog=body,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, (text, multi, _default, _convert) in OPTIONS.items():
        metavar = {"listen": "ADDR:PORT", "upstream": "ADDR:PORT", "allow": "CIDR", "metrics": "[ADDR:]PORT",
                   "log-level": "LEVEL", "tcp-buffer": "KIB", "tcp-buffer-budget": "KIB"}.get(name, "N" if name.startswith("max") else "S")
        if name == "allow":  # --allow A --allow B and --allow A B alike
            parser.add_argument("--" + name, action="append", nargs="+", metavar=metavar, help=text)
        else:
            parser.add_argument("--" + name, action="append" if multi else "store", metavar=metavar, help=text)
    parser.add_argument("--config", metavar="FILE", help="INI file with a [relay] section (see below); flags override it")
    parser.add_argument("--check-config", action="store_true", help="print the effective configuration and exit (2 if invalid)")
    parser.add_argument("--version", action="version", version="%(prog)s " + VERSION)
    return parser


def load_settings(args):
    """Defaults, then the config file, then flags; returns Settings or raises ConfigError."""
    values = {}
    for name, (_text, multi, default, _convert) in OPTIONS.items():
        values[name] = split_list(default) if multi and default else ([] if multi else default)
    if args.config:
        values.update(read_config_file(args.config))
    for name, (_text, multi, _default, _convert) in OPTIONS.items():
        given = getattr(args, name.replace("-", "_"))
        if given is not None:
            if multi:
                texts = [text for group in given for text in (group if isinstance(group, list) else [group])]
                values[name] = [item for text in texts for item in split_list(text)]
            else:
                values[name] = given
    try:
        return Settings(values, args.config)
    except ConfigError as exc:
        raise ConfigError("configuration: %s" % exc)
