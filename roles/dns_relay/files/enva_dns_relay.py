# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""enva-dns-relay: a single-process DNS relay (UDP and TCP) for a container's stub resolvers.

It replaces `socat UDP4-LISTEN:53,fork,reuseaddr UDP4:UPSTREAM:53`, which starts
one child per client source port and never reaps it. This relay is one process
with one event loop; its memory is bounded by --max-inflight, not by the load
or by the number of distinct clients. Standard library only, Python 3.9+, Linux.

Run it as `python3 enva_dns_relay.py ...` (the file has no shebang on purpose:
a CT may have no `python`, and ansible-test allows only `#!/usr/bin/env python`).

    python3 enva_dns_relay.py --listen 10.0.0.17:53 --upstream 10.217.0.53:53
    python3 enva_dns_relay.py --config /etc/enva-dns-relay.ini
    python3 enva_dns_relay.py --config /etc/enva-dns-relay.ini --check-config

Configuration file (INI, section [relay]; every key is a long option's name,
a command-line flag replaces the file's value of the same key; lists are
separated by commas, blanks or new lines):

    [relay]
    listen = 127.0.0.1:53, 10.0.0.17:53
    upstream = 10.217.0.53:53, 10.217.0.54:53
    timeout = 2
    max-inflight = 4096
    allow = local, 192.0.2.0/24
    metrics = 127.0.0.1:9153
    log-level = info
    tcp-idle-timeout = 10
    max-tcp-clients = 256

Addresses are IP literals (`192.0.2.1:53`, `[2001:db8::1]:53`; the port
defaults to 53); names are never resolved. SIGHUP re-reads the file and
applies it (listeners and upstreams are opened or closed as needed, queries in
flight are kept and answered); a file that does not parse is logged and the
running configuration stays. `--check-config` prints the effective
configuration in this format and exits (0: valid, 2: not).

What it does with a query (RFC 1035, RFC 5452, RFC 7766):
- Checks it: at least a 12-byte header, QR=0, opcode QUERY, QDCOUNT=1, a
  question name of plain labels (no compression pointer, labels <= 63 bytes,
  name <= 255 bytes) followed by type and class, at most 4096 bytes. A message
  shorter than a header or with QR=1 is dropped (never answer an answer);
  another opcode gets NOTIMP; anything else malformed gets FORMERR. Each is
  counted; none is forwarded.
- Access control: clients outside --allow get REFUSED. The default, `local`,
  is loopback plus the subnets of the host's own interface addresses, read
  from the kernel over rtnetlink (RTM_GETADDR, what `ip addr` does; no
  external command) at start and on SIGHUP. Giving --allow replaces the
  default; list `local` too to keep it. The relay is never an open resolver
  unless told so (0.0.0.0/0 is accepted, with a warning).
- At most --max-inflight queries wait for an upstream at once; beyond that
  a query gets REFUSED at once (an answer, so that the stub tries its next
  server instead of waiting for a timeout).
- Forwards the client's bytes with only the ID replaced by a fresh random one
  (os.urandom, the generator `secrets` uses; importing `secrets` would load
  OpenSSL and cost 4 MiB of memory for nothing). UDP goes out on connected
  sockets (8 per upstream, each bound by the kernel to a random ephemeral
  port, replaced after 10,000 queries; the queries read in one wakeup of
  the loop go out on one of them, picked at random for each wakeup), so
  the kernel drops datagrams from any other source. An answer is accepted
  only if its ID is in flight on that socket and its question equals the
  query's (name compared case-insensitively, type and class exactly);
  anything else is counted and ignored while the query keeps waiting. The
  client gets its own ID and question bytes back; every other byte (flags,
  EDNS, TC=1 answers) passes through unchanged.
- TCP: 2-byte length framing, pipelined queries answered as they complete,
  idle connections closed after --tcp-idle-timeout, at most --max-tcp-clients
  connections (more wait in the kernel's backlog). A TCP query goes to the
  upstream over a TCP connection of its own.
- Each try waits --timeout seconds (default 2), then the next upstream is
  tried; when all have been tried the client gets SERVFAIL (never silence).
  Upstreams are tried in the configured order, healthy ones first. Three
  failed tries in a row, with no answer at all for --timeout seconds, mark an
  upstream down; a down upstream gets a probe (`. NS`) every second and is up
  again on its first answer.

Each TCP query uses a connection (a file descriptor) of its own to the
upstream: the relay raises its soft RLIMIT_NOFILE to what --max-inflight and
--max-tcp-clients need; when descriptors still run out, the query gets
SERVFAIL and new TCP clients wait in the backlog. --log-level debug logs
every query (name, type, client) and every SERVFAIL it synthesizes.

Counters (queries, responses per rcode, malformed, refused, ignored answers,
timeouts, upstream answers and RTT, in flight) go to the log on SIGUSR1 and,
with --metrics [ADDR:]PORT, to a Prometheus text endpoint (HTTP GET, any
path). The metrics address defaults to 127.0.0.1; give another address only
on purpose.

systemd: Type=notify readiness (READY=1 once every socket is bound),
RELOADING=1/READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM, and
WATCHDOG=1 at half of $WATCHDOG_USEC, sent from the event loop (a stuck loop
stops the pings), all through $NOTIFY_SOCKET without libsystemd. Under
journald ($JOURNAL_STREAM) log lines carry <N> priority prefixes. SIGTERM or
SIGINT: stop listening, give queries in flight up to --timeout to finish, exit
0. Exit status 2: bad configuration; 1: a socket could not be opened.

The loop is a plain epoll loop that drains each ready socket (asyncio costs
several times more per datagram), so uvloop would not help and is not used.
Listening on a wildcard address works, but on a host with several addresses
on one interface the answer may leave from another source address than the
query was sent to; listen on the specific addresses instead.
"""

import argparse
import bisect
import collections
import configparser
import errno
import ipaddress
import logging
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

VERSION = "1.0.0"
LOG = logging.getLogger("enva-dns-relay")

# DNS wire format -----------------------------------------------------------
HEADER_LEN = 12
MAX_QUERY = 4096
MAX_ANSWER = 65535
MAX_LABEL = 63
MAX_NAME = 255
FORMERR, SERVFAIL, NOTIMP, REFUSED = 1, 2, 4, 5
RCODE_NAMES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
               "NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI", "RCODE12", "RCODE13", "RCODE14", "RCODE15")
ONE_QUESTION = b"\x00\x01"
# Malformed queries that get no answer at all (the rest get FORMERR or NOTIMP).
SILENT_REASONS = frozenset(("short", "response"))

# Relay tuning ----------------------------------------------------------------
UDP_SOCKETS_PER_UPSTREAM = 8  # a power of two: a random byte picks one
ROTATE_AFTER = 10000  # queries before a UDP upstream socket gets a new port
FAIL_THRESHOLD = 3  # timeouts in a row that mark an upstream down
PROBE_INTERVAL = 1.0
TICK = 0.05  # timers (timeouts, probes, idle TCP, watchdog) run this often
BURST = range(64)  # datagrams read from one socket per wakeup, for fairness
TCP_PIPELINE = 64  # queries in flight per TCP client before we stop reading it
TCP_WBUF_MAX = 1 << 20  # a client that does not read its answers is dropped
METRICS_CLIENTS = 8
ACL_CACHE = 1024  # access decisions remembered, by client address (cleared when full)
RANDOM_POOL = 3 * 4096
SOCKET_BUFFER = 1 << 21
RTT_BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
EPOLL_BAD = select.EPOLLERR | select.EPOLLHUP


class MessageError(ValueError):
    """A DNS message the relay does not forward; ``reason`` names its counter."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class ConfigError(Exception):
    """The configuration (file or flags) is not valid; the message says why."""


# Wire format: pure functions ------------------------------------------------

def question_end(msg):
    """Offset just past the question (name, type, class) that starts at byte 12 of ``msg``.

    The name must be plain labels: a query's only name has nothing earlier to
    point to, so a compression pointer there is always an error.
    """
    end = len(msg)
    pos = HEADER_LEN
    while True:
        if pos >= end:
            raise MessageError("truncated")
        length = msg[pos]
        if not length:
            break
        if length > MAX_LABEL:
            raise MessageError("pointer" if length >= 0xC0 else "label")
        pos += length + 1
        if pos - HEADER_LEN >= MAX_NAME:
            raise MessageError("name-length")
    pos += 5
    if pos > end:
        raise MessageError("truncated")
    return pos


def check_query(msg):
    """Check a client's message; return where its question ends or raise MessageError."""
    if len(msg) < HEADER_LEN:
        raise MessageError("short")
    flags = msg[2]
    if flags & 0x80:
        raise MessageError("response")
    if len(msg) > MAX_QUERY:
        raise MessageError("oversize")
    if flags & 0x78:
        raise MessageError("opcode")
    if msg[4:6] != ONE_QUESTION:
        raise MessageError("qdcount")
    return question_end(msg)


Query = collections.namedtuple("Query", "header labels qtype qclass rest")


def parse_query(msg):
    """Split a query into its header, question labels, type, class and the bytes after the question.

    Raises MessageError (and nothing else) for anything the relay would not
    forward; ``encode_query(parse_query(msg)) == msg`` for everything it accepts.
    """
    qend = check_query(msg)
    labels = []
    pos = HEADER_LEN
    while msg[pos]:
        labels.append(bytes(msg[pos + 1:pos + 1 + msg[pos]]))
        pos += msg[pos] + 1
    qtype, qclass = struct.unpack_from("!HH", msg, qend - 4)
    return Query(bytes(msg[:HEADER_LEN]), tuple(labels), qtype, qclass, bytes(msg[qend:]))


def encode_query(query):
    """The wire form of a Query (the inverse of parse_query)."""
    name = b"".join(bytes((len(label),)) + label for label in query.labels) + b"\x00"
    return query.header + name + struct.pack("!HH", query.qtype, query.qclass) + query.rest


def name_text(labels):
    """Labels as presentation text (for logs): ``www.Example.org.``; dots, backslashes and unprintables escaped."""
    return "".join("".join(chr(b) if 0x21 <= b < 0x7F and b not in (0x2E, 0x5C) else "\\%03d" % b for b in label) + "."
                   for label in labels) or "."


def describe(msg):
    """``name type N`` of a query, for debug logs."""
    query = parse_query(msg)
    return "%s type %d" % (name_text(query.labels), query.qtype)


def answer_matches(answer, question):
    """True if ``answer`` is a response whose one question equals ``question`` (wire bytes, name + type + class).

    The name is compared case-insensitively (ASCII, RFC 4343), type and class
    exactly. Label length bytes are at most 63, below 'A', so lowering both
    sides never makes different label structures equal.
    """
    qlen = len(question)
    if len(answer) < HEADER_LEN + qlen or not answer[2] & 0x80 or answer[4:6] != ONE_QUESTION:
        return False
    got = answer[HEADER_LEN:HEADER_LEN + qlen]
    if got == question:
        return True
    return got[-4:] == question[-4:] and got[:-4].lower() == question[:-4].lower()


def restore_answer(answer, query, qlen):
    """The upstream's answer with the client's ID and question bytes (``query``'s) put back."""
    return query[:2] + answer[2:HEADER_LEN] + query[HEADER_LEN:HEADER_LEN + qlen] + answer[HEADER_LEN + qlen:]


# The health probe: ". IN NS", RD=0 (any answer with our ID and question means the upstream is alive).
PROBE_QUERY = encode_query(Query(b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00", (), 2, 1, b""))


def synthesize(query, rcode, qend=0):
    """An answer of our own to ``query``: QR, RA, opcode/RD/CD copied; the question echoed if ``qend``."""
    flags = bytes((0x80 | (query[2] & 0x79), 0x80 | (query[3] & 0x10) | rcode))
    if qend:
        return query[:2] + flags + b"\x00\x01\x00\x00\x00\x00\x00\x00" + query[HEADER_LEN:qend]
    return query[:2] + flags + bytes(8)


# Configuration -----------------------------------------------------------------

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


RTM_NEWADDR, RTM_GETADDR = 20, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300


def parse_rtm_newaddr(data):
    """Networks (ip_network) of the RTM_NEWADDR messages in one rtnetlink dump reply.

    Returns (networks, done): ``done`` once NLMSG_DONE was seen. Uses IFA_LOCAL
    (the interface's own address) when present, else IFA_ADDRESS.
    """
    networks = []
    pos = 0
    while pos + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, pos)
        if length < 16:
            break
        if kind == NLMSG_DONE:
            return networks, True
        if kind == NLMSG_ERROR:
            raise OSError("rtnetlink error %d" % -struct.unpack_from("=i", data, pos + 16)[0])
        if kind == RTM_NEWADDR:
            family, prefixlen = struct.unpack_from("=BB", data, pos + 16)
            attrs = {}
            apos = pos + 24
            while apos + 4 <= pos + length:
                alen, atype = struct.unpack_from("=HH", data, apos)
                if alen < 4:
                    break
                attrs[atype] = data[apos + 4:apos + alen]
                apos += (alen + 3) & ~3
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw and family in (socket.AF_INET, socket.AF_INET6):
                addr = ipaddress.ip_address(bytes(raw))
                networks.append(ipaddress.ip_network((addr, prefixlen), strict=False))
        pos += (length + 3) & ~3
    return networks, False


def interface_networks():
    """The subnets of this host's interface addresses, from the kernel over rtnetlink."""
    networks = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
        sock.settimeout(2.0)
        sock.bind((0, 0))
        body = struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)  # struct ifaddrmsg: any family
        sock.send(struct.pack("=IHHII", 16 + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
        done = False
        while not done:
            found, done = parse_rtm_newaddr(sock.recv(65536))
            networks.extend(found)
    return networks


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
    ("tcp-idle-timeout", ("seconds before an idle TCP client is closed (default 10)", False, "10", _number(float, 0.1, 3600))),
    ("max-tcp-clients", ("TCP client connections at once (default 256)", False, "256", _number(int, 1, 65536))),
))


class Settings:
    """The effective configuration: defaults < config file < command-line flags."""

    def __init__(self, values, config=None):
        self.config = config
        self.raw = values
        self.listen = [parse_endpoint(v) for v in values["listen"]]
        self.upstream = [parse_endpoint(v) for v in values["upstream"]]
        self.timeout = OPTIONS["timeout"][3](values["timeout"])
        self.max_inflight = OPTIONS["max-inflight"][3](values["max-inflight"])
        self.allow = resolve_allow(values["allow"])
        self.metrics = parse_metrics(values["metrics"]) if values["metrics"] else None
        self.log_level = _level(values["log-level"])
        self.tcp_idle_timeout = OPTIONS["tcp-idle-timeout"][3](values["tcp-idle-timeout"])
        self.max_tcp_clients = OPTIONS["max-tcp-clients"][3](values["max-tcp-clients"])
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
    head, _blank, body = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(prog="enva-dns-relay", description=head, epilog=body,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, (text, multi, _default, _convert) in OPTIONS.items():
        metavar = {"listen": "ADDR:PORT", "upstream": "ADDR:PORT", "allow": "CIDR", "metrics": "[ADDR:]PORT",
                   "log-level": "LEVEL"}.get(name, "N" if name.startswith("max") else "S")
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


# systemd -----------------------------------------------------------------------

class Notifier:
    """sd_notify(3) without libsystemd: datagrams to $NOTIFY_SOCKET; a no-op without it."""

    def __init__(self, environ=None):
        environ = os.environ if environ is None else environ
        self.path = environ.get("NOTIFY_SOCKET") or None
        if self.path and self.path.startswith("@"):
            self.path = "\0" + self.path[1:]
        self.sock = None
        self.watchdog = None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog = int(usec) / 2e6

    def send(self, state):
        """Send one state string (e.g. ``READY=1``); errors are logged, never raised."""
        if not self.path:
            return False
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self.sock.connect(self.path)
            self.sock.send(state.encode())
            return True
        except OSError as exc:
            LOG.warning("sd_notify %s failed: %s", state.split("=")[0], exc)
            self.close()
            return False

    def close(self):
        """Forget the socket (the next send reconnects)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class JournalFormatter(logging.Formatter):
    """``<N>message``: journald reads N as the syslog priority (SyslogLevelPrefix=)."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record):
        return "<%d>%s" % (self.PRIORITY.get(record.levelno, 6), super().format(record))


def setup_logging(level):
    """stderr logging; priority prefixes instead of timestamps when stderr is the journal."""
    handler = logging.StreamHandler(sys.stderr)
    stream = os.environ.get("JOURNAL_STREAM", "")
    journal = False
    try:
        info = os.fstat(sys.stderr.fileno())
        journal = stream == "%d:%d" % (info.st_dev, info.st_ino)
    except (OSError, ValueError):
        pass
    if journal:
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s enva-dns-relay %(levelname)s %(message)s"))
    LOG.handlers[:] = [handler]
    LOG.propagate = False
    LOG.setLevel(level.upper())


# The relay -----------------------------------------------------------------------

class Upstream:
    """One upstream server: its UDP socket pool, health and counters."""

    __slots__ = ("endpoint", "label", "up", "fails", "last_answer", "sockets", "queries", "answers", "timeouts", "errors",
                 "rtt_sum", "rtt_buckets", "retired")

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.label = endpoint.label
        self.up = True
        self.fails = 0  # tries in a row that got no answer
        self.last_answer = float("-inf")  # monotonic time of its last answer
        self.sockets = []
        self.queries = self.answers = self.timeouts = self.errors = 0
        self.rtt_sum = 0.0
        self.rtt_buckets = [0] * (len(RTT_BOUNDS) + 1)
        self.retired = False


class UpSocket:
    """A connected UDP socket to an upstream; ``base`` | ID is the key of its queries in flight."""

    __slots__ = ("sock", "upstream", "base", "sent")

    def __init__(self, sock, upstream, base):
        self.sock = sock
        self.upstream = upstream
        self.base = base
        self.sent = 0


class Pending:
    """A query in flight: the client's bytes, where to answer, which upstreams were tried."""

    __slots__ = ("query", "question", "reply", "addr", "tried", "key", "deadline", "sent_at", "conn")

    def __init__(self, query, question, reply, addr, tried=(), key=0, deadline=0.0):
        self.query = query  # the client's message, as received
        self.question = question  # its question section (name, type, class)
        self.reply = reply  # UDP: the listening socket; TCP: the TcpClient; probe: None
        self.addr = addr  # UDP: the client's address; TCP and probe: None
        self.tried = tried  # the upstreams tried so far, the current one last
        self.key = key  # upstream socket's base | the ID it went out with
        self.deadline = deadline  # monotonic time this try times out
        self.sent_at = time.monotonic()
        self.conn = None  # TCP: the TcpUpstream carrying this try


class TcpClient:
    """A client's TCP connection: framed queries in, framed answers out."""

    __slots__ = ("sock", "peer", "allowed", "rbuf", "wbuf", "pending", "last", "eof", "mask", "closed")

    def __init__(self, sock, peer, allowed, now):
        self.sock = sock
        self.peer = peer
        self.allowed = allowed
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.pending = 0
        self.last = now
        self.eof = False
        self.mask = EPOLLIN
        self.closed = False


class TcpUpstream:
    """One query's TCP connection to an upstream."""

    __slots__ = ("sock", "pending", "upstream", "out", "rbuf", "connected")

    def __init__(self, sock, pending, upstream, out):
        self.sock = sock
        self.pending = pending
        self.upstream = upstream
        self.out = out
        self.rbuf = bytearray()
        self.connected = False


class MetricsClient:
    """An HTTP request to the metrics endpoint."""

    __slots__ = ("sock", "rbuf", "wbuf", "since")

    def __init__(self, sock, now):
        self.sock = sock
        self.rbuf = b""
        self.wbuf = b""
        self.since = now


def raise_fd_limit(settings):
    """Raise the soft RLIMIT_NOFILE to what the limits can use (each TCP query has its own upstream connection)."""
    needed = (settings.max_inflight + settings.max_tcp_clients + UDP_SOCKETS_PER_UPSTREAM * len(settings.upstream)
              + 2 * len(settings.listen) + METRICS_CLIENTS + 64)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < needed:
        LOG.warning("only %d file descriptors (hard limit); TCP queries beyond that get SERVFAIL", wanted)


def open_listener(kind, endpoint):
    """A bound, non-blocking UDP or TCP listening socket."""
    sock = socket.socket(endpoint.family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    try:
        if endpoint.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == "udp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(endpoint.sockaddr)
        if kind != "udp":
            sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Relay:
    """The event loop and everything it serves."""

    def __init__(self, settings, loader=None, notifier=None):
        self.loader = loader
        self.notifier = notifier or Notifier()
        self.epoll = select.epoll()
        self.handlers = {}
        self.now = time.monotonic()
        self.inflight = {}
        self.listeners = {}  # (kind, label) -> socket
        self.metrics_sock = None
        self.metrics_label = None
        self.metrics_clients = []
        self.upstreams = []
        self.order = ()
        self.retired = collections.deque()  # (close_at, UpSocket)
        self.tcp_clients = set()
        self.accept_paused = False
        self.random = b""
        self.random_pos = RANDOM_POOL
        self.next_index = 1
        self.acl_cache = {}
        self.running = True
        self.stopping = False
        self.stop_deadline = 0.0
        self.next_tick = self.now
        self.next_probe = self.now
        self.next_watchdog = self.now
        self.udp_queries = 0
        self.tcp_queries = 0
        self.rcodes = [0] * 16
        self.events = collections.Counter()
        self.settings = None
        self.timeout = self.max_inflight = self.allow = self.tcp_idle_timeout = self.max_tcp_clients = None
        self.log_queries = False
        self.signal_r, self.signal_w = socket.socketpair()
        for sock in (self.signal_r, self.signal_w):
            sock.setblocking(False)
        self._register(self.signal_r, EPOLLIN, self._on_signal, None)
        self.apply(settings)

    # registration ---------------------------------------------------------------

    def _register(self, sock, mask, handler, obj):
        fd = sock.fileno()
        self.epoll.register(fd, mask)
        self.handlers[fd] = (handler, obj)

    def _unregister(self, sock):
        fd = sock.fileno()
        if fd >= 0 and self.handlers.pop(fd, None) is not None:
            self.epoll.unregister(fd)
        sock.close()

    # configuration --------------------------------------------------------------

    def apply(self, settings):
        """Make ``settings`` the running configuration; on OSError nothing changed."""
        wanted = collections.OrderedDict()
        for endpoint in settings.listen:
            for kind in ("udp", "tcp"):
                wanted[(kind, endpoint.label)] = (kind, endpoint)
        current = {u.label: u for u in self.upstreams}
        metrics_label = settings.metrics.label if settings.metrics else None
        opened, fresh, metrics_sock = {}, {}, None
        what = None
        try:
            for key, (kind, endpoint) in wanted.items():
                if key not in self.listeners:
                    what = "listen on %s/%s" % (endpoint.label, kind)
                    opened[key] = open_listener(kind, endpoint)
            if metrics_label != self.metrics_label and settings.metrics:
                what = "serve metrics on %s" % metrics_label
                metrics_sock = open_listener("tcp", settings.metrics)
            for endpoint in settings.upstream:
                if endpoint.label not in current:
                    what = "open a socket to upstream %s" % endpoint.label
                    fresh[endpoint.label] = upstream = Upstream(endpoint)
                    for _slot in range(UDP_SOCKETS_PER_UPSTREAM):
                        upstream.sockets.append(self._open_upsocket(upstream))
        except OSError as exc:
            for sock in list(opened.values()) + [metrics_sock]:
                if sock is not None:
                    sock.close()
            for upstream in fresh.values():
                for usock in upstream.sockets:
                    self._unregister(usock.sock)
            raise OSError(exc.errno, "cannot %s: %s" % (what, exc.strerror or exc))
        for key in list(self.listeners):
            if key not in wanted:
                self._unregister(self.listeners.pop(key))
                LOG.info("stopped listening on %s/%s", key[1], key[0])
        for key, sock in opened.items():
            self.listeners[key] = sock
            self._register(sock, EPOLLIN, self._on_udp_query if key[0] == "udp" else self._on_tcp_accept, sock)
            LOG.info("listening on %s/%s", key[1], key[0])
        if metrics_label != self.metrics_label:
            if self.metrics_sock is not None:
                self._unregister(self.metrics_sock)
            self.metrics_sock, self.metrics_label = metrics_sock, metrics_label
            if metrics_sock is not None:
                self._register(metrics_sock, EPOLLIN, self._on_metrics_accept, None)
                LOG.info("metrics on http://%s/metrics", metrics_label)
        self.upstreams = [current.pop(e.label, None) or fresh[e.label] for e in settings.upstream]
        for upstream in current.values():  # removed: answers to its queries in flight still arrive
            upstream.retired = True
            for usock in upstream.sockets:
                self.retired.append((self.now + settings.timeout + 1.0, usock))
            LOG.info("upstream %s removed", upstream.label)
        self._reorder()
        self.timeout = settings.timeout
        self.max_inflight = settings.max_inflight
        self.allow = settings.allow
        self.acl_cache.clear()
        for conn in self.tcp_clients:
            conn.allowed = self._allowed(conn.peer[0])
        self.tcp_idle_timeout = settings.tcp_idle_timeout
        self.max_tcp_clients = settings.max_tcp_clients
        LOG.setLevel(settings.log_level.upper())
        self.log_queries = settings.log_level == "debug"
        raise_fd_limit(settings)
        open_to_all = [str(n) for n in self.allow if n.prefixlen == 0]
        if open_to_all:
            LOG.warning("allow includes %s: this relay answers anyone who can reach it", ", ".join(open_to_all))
        self.settings = settings

    def _open_upsocket(self, upstream):
        sock = socket.socket(upstream.endpoint.family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            sock.setblocking(False)
            sock.connect(upstream.endpoint.sockaddr)  # the kernel binds a random ephemeral port
        except OSError:
            sock.close()
            raise
        usock = UpSocket(sock, upstream, self.next_index << 16)
        self.next_index += 1
        self._register(sock, EPOLLIN, self._on_udp_answer, usock)
        return usock

    def _reorder(self):
        self.order = tuple([u for u in self.upstreams if u.up] + [u for u in self.upstreams if not u.up])

    def _allowed(self, host):
        try:
            addr = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        allowed = any(addr in net for net in self.allow)
        if len(self.acl_cache) >= ACL_CACHE:
            self.acl_cache.clear()
        self.acl_cache[host] = allowed
        return allowed

    # the hot path: queries ------------------------------------------------------

    def _on_udp_query(self, lsock, _events):
        """Drain a UDP listener (up to BURST datagrams).

        The common case, an allowed client's well-formed query with room in
        flight, is handled inline; everything else goes through _query(). The
        queries forwarded in one wakeup leave through one of the upstream's
        sockets, picked at random per wakeup: each query's port is as
        unpredictable as with a pick per query, and the answers arrive
        together on one socket, which the loop then drains in one go.
        """
        recvfrom = lsock.recvfrom
        cache = self.acl_cache
        inflight = self.inflight
        limit = self.max_inflight if not self.log_queries else -1
        upstream = self.order[0]
        usock = None
        count = sent = 0
        try:
            for _burst in BURST:
                try:
                    data, addr = recvfrom(MAX_QUERY + 1)
                except BlockingIOError:
                    return
                except OSError as exc:
                    self.events["dropped:recv-error"] += 1
                    LOG.debug("recvfrom: %s", exc)
                    return
                count += 1
                allowed = cache.get(addr[0])
                if allowed is None:
                    allowed = self._allowed(addr[0])
                if not (allowed and len(inflight) < limit and HEADER_LEN < len(data) <= MAX_QUERY and not data[2] & 0xF8
                        and not data[4] and data[5] == 1):
                    self._query(data, lsock, addr, allowed)
                    continue
                try:
                    qend = question_end(data)
                except MessageError:
                    self._query(data, lsock, addr, allowed)
                    continue
                if usock is None:
                    usock = upstream.sockets[self._random_bytes(1)[0] & (UDP_SOCKETS_PER_UPSTREAM - 1)]
                    send = usock.sock.send
                    base = usock.base
                    deadline = self.now + self.timeout
                rand = self._random_bytes(2)
                key = base | rand[0] << 8 | rand[1]
                while key in inflight:  # an ID already in flight on this socket: draw another
                    rand = self._random_bytes(2)
                    key = base | rand[0] << 8 | rand[1]
                pending = inflight[key] = Pending(data, data[HEADER_LEN:qend], lsock, addr, (upstream,), key, deadline)
                sent += 1
                try:
                    send(rand + data[2:])
                except OSError:
                    self._send_failed(usock, rand + data[2:])
        finally:
            self.udp_queries += count
            if sent:
                upstream.queries += sent
                usock.sent += sent
                if usock.sent >= ROTATE_AFTER:
                    self._rotate(usock)

    def _query(self, data, reply, addr, allowed):
        """A client's message (UDP: ``addr`` is its address; TCP: ``reply`` is its TcpClient, ``addr`` None)."""
        try:
            qend = check_query(data)
        except MessageError as exc:
            self._malformed(data, reply, addr, exc.reason, allowed)
            return
        if not allowed:
            self.events["refused:acl"] += 1
            self._respond(reply, addr, synthesize(data, REFUSED, qend))
            return
        if len(self.inflight) >= self.max_inflight:
            self.events["refused:inflight"] += 1
            self._respond(reply, addr, synthesize(data, REFUSED, qend))
            return
        if self.log_queries:
            LOG.debug("query %s from %s", describe(data), addr or reply.peer)
        pending = Pending(data, data[HEADER_LEN:qend], reply, addr)
        if addr is None:
            reply.pending += 1
        self._forward(pending)

    def _malformed(self, data, reply, addr, reason, allowed):
        self.events["malformed:" + reason] += 1
        if reason in SILENT_REASONS:
            return
        if not allowed:
            self.events["refused:acl"] += 1
            self._respond(reply, addr, synthesize(data, REFUSED))
        else:
            self._respond(reply, addr, synthesize(data, NOTIMP if reason == "opcode" else FORMERR))

    def _random_bytes(self, count):
        """``count`` unpredictable bytes, from a pool refilled from os.urandom."""
        pos = self.random_pos
        if pos + count > RANDOM_POOL:
            self.random = os.urandom(RANDOM_POOL)
            pos = 0
        self.random_pos = pos + count
        return self.random[pos:pos + count]

    def _forward(self, pending):
        """Send ``pending`` to the next upstream it has not tried, or SERVFAIL when none is left."""
        tried = pending.tried
        for upstream in self.order:
            if upstream not in tried:
                break
        else:
            self.events["servfail:exhausted"] += 1
            if self.log_queries:
                LOG.debug("SERVFAIL for %s: no upstream answered", describe(pending.query))
            self._finish(pending, synthesize(pending.query, SERVFAIL, HEADER_LEN + len(pending.question)))
            return
        pending.tried = tried + (upstream,)
        if pending.addr is None and pending.reply is not None:
            self._forward_tcp(pending, upstream)
        else:
            self._send_udp(pending, upstream)

    def _send_udp(self, pending, upstream):
        inflight = self.inflight
        usock = upstream.sockets[self._random_bytes(1)[0] & (UDP_SOCKETS_PER_UPSTREAM - 1)]
        rand = self._random_bytes(2)
        key = usock.base | rand[0] << 8 | rand[1]
        while key in inflight:  # an ID already in flight on this socket: draw another
            rand = self._random_bytes(2)
            key = usock.base | rand[0] << 8 | rand[1]
        pending.key = key
        pending.deadline = self.now + self.timeout
        pending.sent_at = time.monotonic()
        inflight[key] = pending
        upstream.queries += 1
        try:
            usock.sock.send(rand + pending.query[2:])
        except OSError:
            self._send_failed(usock, rand + pending.query[2:])
        usock.sent += 1
        if usock.sent >= ROTATE_AFTER:
            self._rotate(usock)

    def _send_failed(self, usock, out):
        """A send to an upstream failed: a pending ICMP error of an earlier datagram is reported once; try again."""
        try:
            usock.sock.send(out)
        except OSError as exc:
            usock.upstream.errors += 1
            LOG.debug("send to %s: %s", usock.upstream.label, exc)

    def _rotate(self, usock):
        """Give the upstream a fresh socket (new random port); the old one stays open for late answers."""
        upstream = usock.upstream
        if usock not in upstream.sockets:  # already replaced
            return
        try:
            fresh = self._open_upsocket(upstream)
        except OSError as exc:
            LOG.warning("cannot open a new socket to %s: %s", upstream.label, exc)
            usock.sent = 0
            return
        upstream.sockets[upstream.sockets.index(usock)] = fresh
        self.retired.append((self.now + self.timeout + 1.0, usock))

    # the hot path: answers ------------------------------------------------------

    def _on_udp_answer(self, usock, _events):
        """Drain an upstream socket (up to BURST datagrams); the common case (an answer to a UDP client's query) inline."""
        recv = usock.sock.recv
        inflight = self.inflight
        base = usock.base
        upstream = usock.upstream
        if not upstream.up or upstream.fails:
            fast = False
        else:
            fast = True
            monotonic = time.monotonic
            rcodes = self.rcodes
            buckets = upstream.rtt_buckets
            answered = 0
            rtt_sum = 0.0
        try:
            for _burst in BURST:
                try:
                    data = recv(MAX_ANSWER)
                except BlockingIOError:
                    return
                except OSError as exc:  # ICMP unreachable and the like
                    upstream.errors += 1
                    LOG.debug("recv from %s: %s", upstream.label, exc)
                    continue
                if len(data) < HEADER_LEN:
                    self.events["ignored:short"] += 1
                    continue
                pending = inflight.get(base | data[0] << 8 | data[1])
                if pending is None:
                    self.events["ignored:id"] += 1
                    continue
                question = pending.question
                end = HEADER_LEN + len(question)
                if data[HEADER_LEN:end] == question and data[2] & 0x80 and not data[4] and data[5] == 1:
                    same = True
                elif answer_matches(data, question):
                    same = False
                else:
                    self.events["ignored:question"] += 1
                    continue
                del inflight[pending.key]
                if not fast or pending.addr is None:
                    self._answered(pending, upstream, data)
                    continue
                rtt = monotonic() - pending.sent_at
                rtt_sum += rtt
                answered += 1
                buckets[bisect.bisect_left(RTT_BOUNDS, rtt)] += 1
                rcodes[data[3] & 15] += 1
                query = pending.query
                try:
                    pending.reply.sendto(query[:2] + data[2:] if same else restore_answer(data, query, end - HEADER_LEN), pending.addr)
                except OSError as exc:
                    self.events["dropped:send-error"] += 1
                    LOG.debug("sendto %s: %s", pending.addr, exc)
        finally:
            if fast and answered:
                upstream.answers += answered
                upstream.rtt_sum += rtt_sum
                upstream.last_answer = self.now

    def _answered(self, pending, upstream, data):
        rtt = time.monotonic() - pending.sent_at
        upstream.answers += 1
        upstream.rtt_sum += rtt
        upstream.rtt_buckets[bisect.bisect_left(RTT_BOUNDS, rtt)] += 1
        upstream.last_answer = self.now
        if upstream.fails:
            upstream.fails = 0
        if not upstream.up:
            self._set_health(upstream, True)
        if pending.reply is not None:
            self._finish(pending, restore_answer(data, pending.query, len(pending.question)))

    def _finish(self, pending, out):
        """The final answer to a client's query."""
        if pending.addr is None:
            conn = pending.reply
            conn.pending -= 1
            self._respond(conn, None, out)
            if conn.pending == TCP_PIPELINE - 1 and not conn.closed:
                self._tcp_frames(conn)
            return
        self._respond(pending.reply, pending.addr, out)

    def _respond(self, reply, addr, out):
        self.rcodes[out[3] & 15] += 1
        if addr is not None:
            try:
                reply.sendto(out, addr)
            except OSError as exc:
                self.events["dropped:send-error"] += 1
                LOG.debug("sendto %s: %s", addr, exc)
            return
        self._tcp_send(reply, out)

    # timers ----------------------------------------------------------------------

    def _tick(self, now):
        self.next_tick = now + TICK
        inflight = self.inflight
        if inflight:
            expired = []
            for pending in inflight.values():  # insertion order is deadline order
                if pending.deadline > now:
                    break
                expired.append(pending)
            for pending in expired:
                self._expire(pending)
        if now >= self.next_probe:
            self.next_probe = now + PROBE_INTERVAL
            for upstream in self.upstreams:
                if not upstream.up:
                    self._send_udp(Pending(PROBE_QUERY, PROBE_QUERY[HEADER_LEN:], None, None, (upstream,)), upstream)
        retired = self.retired
        while retired and retired[0][0] <= now:
            self._unregister(retired.popleft()[1].sock)
        if self.accept_paused and len(self.tcp_clients) < self.max_tcp_clients and not self.stopping:
            self._pause_accept(False)
        if self.tcp_clients:
            idle = now - self.tcp_idle_timeout
            for conn in [c for c in self.tcp_clients if c.last < idle and not c.pending]:
                self.events["tcp:idle-closed"] += 1
                self._close_client(conn)
        for client in [c for c in self.metrics_clients if c.since < now - 5.0]:
            self._close_metrics(client)
        if self.notifier.watchdog and now >= self.next_watchdog:
            self.next_watchdog = now + self.notifier.watchdog
            self.notifier.send("WATCHDOG=1")
        if self.stopping and (now >= self.stop_deadline or not any(p.reply is not None for p in inflight.values())):
            self.running = False

    def _expire(self, pending):
        del self.inflight[pending.key]
        upstream = pending.tried[-1]
        if pending.conn is not None:
            self._close_upstream_conn(pending.conn)
            pending.conn = None
        if pending.reply is None:  # a probe: the upstream stays down
            return
        upstream.timeouts += 1
        self._upstream_failed(upstream)
        self._forward(pending)

    def _upstream_failed(self, upstream):
        """Count a try without an answer; down after FAIL_THRESHOLD of them and a whole timeout of silence.

        The silence condition keeps a busy upstream that drops a burst of
        queries (its answers to the others still arriving) in service.
        """
        upstream.fails += 1
        if (upstream.up and upstream.fails >= FAIL_THRESHOLD and upstream.last_answer <= self.now - self.timeout
                and not upstream.retired):
            self._set_health(upstream, False)

    def _set_health(self, upstream, up):
        upstream.up = up
        if up:
            LOG.warning("upstream %s answers again", upstream.label)
        else:
            LOG.warning("upstream %s: %d queries in a row failed; skipping it, probing it every %gs",
                        upstream.label, upstream.fails, PROBE_INTERVAL)
        self._reorder()

    # TCP clients -----------------------------------------------------------------

    def _on_tcp_accept(self, lsock, _events):
        for _burst in BURST:
            if len(self.tcp_clients) >= self.max_tcp_clients:
                self._pause_accept(True)
                return
            try:
                sock, peer = lsock.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE and the like: the connection stays queued; retry on the next tick
                self.events["tcp:accept-error"] += 1
                LOG.debug("accept: %s", exc)
                self._pause_accept(True)
                return
            sock.setblocking(False)
            allowed = self.acl_cache.get(peer[0])
            if allowed is None:
                allowed = self._allowed(peer[0])
            conn = TcpClient(sock, peer, allowed, self.now)
            self.tcp_clients.add(conn)
            self._register(sock, EPOLLIN, self._on_tcp_client, conn)

    def _pause_accept(self, pause):
        """Stop (or resume) polling the TCP listeners; connections wait in the kernel's backlog meanwhile."""
        if pause == self.accept_paused:
            return
        self.accept_paused = pause
        for (kind, _label), sock in self.listeners.items():
            if kind == "tcp":
                self.epoll.modify(sock.fileno(), 0 if pause else EPOLLIN)
        if pause:
            LOG.warning("%d TCP clients: not accepting more for now", len(self.tcp_clients))

    def _on_tcp_client(self, conn, events):
        if events & EPOLLOUT:
            self._tcp_flush(conn)
        if conn.closed or conn.eof or not events & (EPOLLIN | EPOLL_BAD):
            return
        try:
            chunk = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._close_client(conn)
            return
        if not chunk:
            conn.eof = True
            if conn.pending or conn.wbuf:
                self._tcp_interest(conn)
            else:
                self._close_client(conn)
            return
        conn.last = self.now
        conn.rbuf += chunk
        self._tcp_frames(conn)

    def _tcp_frames(self, conn):
        """Handle the complete queries in ``conn``'s buffer, up to TCP_PIPELINE in flight."""
        rbuf = conn.rbuf
        while len(rbuf) >= 2 and conn.pending < TCP_PIPELINE and not conn.closed:
            size = rbuf[0] << 8 | rbuf[1]
            if len(rbuf) < size + 2:
                break
            data = bytes(rbuf[2:size + 2])
            del rbuf[:size + 2]
            self.tcp_queries += 1
            self._query(data, conn, None, conn.allowed)
        if not conn.closed:
            self._tcp_interest(conn)

    def _tcp_interest(self, conn):
        mask = 0
        if not conn.eof and conn.pending < TCP_PIPELINE:
            mask |= EPOLLIN
        if conn.wbuf:
            mask |= EPOLLOUT
        if mask != conn.mask:
            conn.mask = mask
            self.epoll.modify(conn.sock.fileno(), mask)

    def _tcp_send(self, conn, out):
        if conn.closed:
            return
        conn.wbuf += len(out).to_bytes(2, "big") + out
        if len(conn.wbuf) > TCP_WBUF_MAX:
            self.events["tcp:slow-reader-closed"] += 1
            self._close_client(conn)
            return
        self._tcp_flush(conn)

    def _tcp_flush(self, conn):
        if conn.closed:
            return
        if conn.wbuf:
            try:
                sent = conn.sock.send(conn.wbuf)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._close_client(conn)
                return
            if sent:
                del conn.wbuf[:sent]
                conn.last = self.now
        if conn.eof and not conn.wbuf and not conn.pending:
            self._close_client(conn)
        else:
            self._tcp_interest(conn)

    def _close_client(self, conn):
        if conn.closed:
            return
        conn.closed = True
        self.tcp_clients.discard(conn)
        self._unregister(conn.sock)

    # TCP to upstreams ------------------------------------------------------------

    def _forward_tcp(self, pending, upstream):
        rand = self._random_bytes(2)
        key = self.next_index << 16 | rand[0] << 8 | rand[1]
        self.next_index += 1
        try:
            sock = socket.socket(upstream.endpoint.family, socket.SOCK_STREAM)
        except OSError as exc:  # out of file descriptors: a local problem, not the upstream's
            self.events["servfail:no-socket"] += 1
            LOG.debug("TCP socket for %s: %s", upstream.label, exc)
            self._finish(pending, synthesize(pending.query, SERVFAIL, HEADER_LEN + len(pending.question)))
            return
        sock.setblocking(False)
        err = sock.connect_ex(upstream.endpoint.sockaddr)
        upstream.queries += 1
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            upstream.errors += 1
            LOG.debug("connect to %s: %s", upstream.label, os.strerror(err))
            self._upstream_failed(upstream)
            self._forward(pending)
            return
        query = pending.query
        conn = TcpUpstream(sock, pending, upstream, len(query).to_bytes(2, "big") + rand[:2] + query[2:])
        pending.key = key
        pending.conn = conn
        pending.deadline = self.now + self.timeout
        pending.sent_at = time.monotonic()
        self.inflight[key] = pending
        self._register(sock, EPOLLOUT, self._on_tcp_upstream, conn)

    def _on_tcp_upstream(self, conn, events):
        sock = conn.sock
        if not conn.connected:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._tcp_upstream_failed(conn, os.strerror(err))
                return
            conn.connected = True
        if conn.out:
            try:
                sent = sock.send(conn.out)
            except BlockingIOError:
                return
            except OSError as exc:
                self._tcp_upstream_failed(conn, str(exc))
                return
            conn.out = conn.out[sent:]
            if not conn.out:
                self.epoll.modify(sock.fileno(), EPOLLIN)
            return
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._tcp_upstream_failed(conn, str(exc))
            return
        if not chunk:
            self._tcp_upstream_failed(conn, "closed before answering")
            return
        rbuf = conn.rbuf
        rbuf += chunk
        pending = conn.pending
        while len(rbuf) >= 2:
            size = rbuf[0] << 8 | rbuf[1]
            if len(rbuf) < size + 2:
                return
            data = bytes(rbuf[2:size + 2])
            del rbuf[:size + 2]
            if len(data) >= HEADER_LEN and (data[0] << 8 | data[1]) == pending.key & 0xFFFF and answer_matches(data, pending.question):
                del self.inflight[pending.key]
                pending.conn = None
                self._close_upstream_conn(conn)
                self._answered(pending, conn.upstream, data)
                return
            self.events["ignored:tcp"] += 1

    def _tcp_upstream_failed(self, conn, why):
        pending = conn.pending
        self._close_upstream_conn(conn)
        if self.inflight.get(pending.key) is not pending:
            return
        del self.inflight[pending.key]
        pending.conn = None
        conn.upstream.errors += 1
        LOG.debug("TCP to %s: %s", conn.upstream.label, why)
        self._upstream_failed(conn.upstream)
        self._forward(pending)

    def _close_upstream_conn(self, conn):
        if conn.sock.fileno() >= 0:
            self._unregister(conn.sock)

    # metrics endpoint --------------------------------------------------------------

    def _on_metrics_accept(self, _obj, _events):
        try:
            sock, _peer = self.metrics_sock.accept()
        except BlockingIOError:
            return
        except OSError as exc:  # EMFILE: refuse it rather than spin on a listener that stays readable
            LOG.warning("metrics: accept failed (%s); closing the metrics endpoint until the next reload", exc)
            self._unregister(self.metrics_sock)
            self.metrics_sock = self.metrics_label = None
            return
        if len(self.metrics_clients) >= METRICS_CLIENTS:
            sock.close()
            return
        sock.setblocking(False)
        client = MetricsClient(sock, self.now)
        self.metrics_clients.append(client)
        self._register(sock, EPOLLIN, self._on_metrics_client, client)

    def _on_metrics_client(self, client, _events):
        try:
            if not client.wbuf:
                chunk = client.sock.recv(4096)
                client.rbuf += chunk
                if not chunk or len(client.rbuf) > 8192:
                    self._close_metrics(client)
                    return
                if b"\r\n\r\n" not in client.rbuf and b"\n\n" not in client.rbuf:
                    return
                body = self.metrics_text().encode()
                client.wbuf = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                               b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body
            client.wbuf = client.wbuf[client.sock.send(client.wbuf):]
        except BlockingIOError:
            return
        except OSError:
            self._close_metrics(client)
            return
        if client.wbuf:
            self.epoll.modify(client.sock.fileno(), EPOLLOUT)
        else:
            self._close_metrics(client)

    def _close_metrics(self, client):
        if client in self.metrics_clients:
            self.metrics_clients.remove(client)
            self._unregister(client.sock)

    # counters -----------------------------------------------------------------------

    def snapshot(self):
        """Every counter, as {name: value} with Prometheus-style label suffixes."""
        values = collections.OrderedDict()
        values['queries_total{transport="udp"}'] = self.udp_queries
        values['queries_total{transport="tcp"}'] = self.tcp_queries
        for rcode, count in enumerate(self.rcodes):
            if count or rcode in (0, 1, 2, 3, 4, 5):
                values['responses_total{rcode="%s"}' % RCODE_NAMES[rcode]] = count
        for name in ("malformed", "refused", "ignored", "servfail", "dropped", "tcp", "reload", "errors"):
            for key in sorted(k for k in self.events if k.startswith(name + ":")):
                values['%s_total{reason="%s"}' % (name, key.partition(":")[2])] = self.events[key]
        values["inflight"] = sum(1 for p in self.inflight.values() if p.reply is not None)
        values["tcp_clients"] = len(self.tcp_clients)
        for upstream in self.upstreams:
            label = '{upstream="%s"}' % upstream.label
            values["upstream_up" + label] = int(upstream.up)
            values["upstream_queries_total" + label] = upstream.queries
            values["upstream_answers_total" + label] = upstream.answers
            values["upstream_timeouts_total" + label] = upstream.timeouts
            values["upstream_errors_total" + label] = upstream.errors
        values["resident_memory_bytes"] = resident_bytes()
        return values

    def metrics_text(self):
        """The Prometheus text exposition of snapshot() plus the upstream RTT histograms."""
        lines = []
        seen = set()
        for key, value in self.snapshot().items():
            name = "enva_dns_relay_" + key.partition("{")[0]
            if name not in seen:
                seen.add(name)
                kind = "counter" if name.endswith("_total") else "gauge"
                lines.append("# TYPE %s %s" % (name, kind))
            lines.append("enva_dns_relay_%s %s" % (key, value))
        lines.append("# TYPE enva_dns_relay_upstream_rtt_seconds histogram")
        for upstream in self.upstreams:
            total = 0
            for bound, count in zip(RTT_BOUNDS + (float("inf"),), upstream.rtt_buckets):
                total += count
                edge = "+Inf" if bound == float("inf") else repr(bound)
                lines.append('enva_dns_relay_upstream_rtt_seconds_bucket{upstream="%s",le="%s"} %d' % (upstream.label, edge, total))
            lines.append('enva_dns_relay_upstream_rtt_seconds_sum{upstream="%s"} %.6f' % (upstream.label, upstream.rtt_sum))
            lines.append('enva_dns_relay_upstream_rtt_seconds_count{upstream="%s"} %d' % (upstream.label, upstream.answers))
        return "\n".join(lines) + "\n"

    def log_counters(self, why):
        """One log line with every counter and the mean upstream RTTs."""
        parts = ["%s=%s" % (key, value) for key, value in self.snapshot().items()]
        for upstream in self.upstreams:
            if upstream.answers:
                parts.append('upstream_rtt_mean_ms{upstream="%s"}=%.3f' % (upstream.label, 1000 * upstream.rtt_sum / upstream.answers))
        LOG.info("counters (%s): %s", why, " ".join(parts))

    # signals and the loop --------------------------------------------------------

    def _on_signal(self, _obj, _events):
        try:
            numbers = self.signal_r.recv(64)
        except BlockingIOError:
            return
        for number in numbers:
            if number in (signal.SIGTERM, signal.SIGINT):
                self.stop()
            elif number == signal.SIGHUP:
                self.reload()
            elif number == signal.SIGUSR1:
                self.log_counters("SIGUSR1")

    def reload(self):
        """Re-read the configuration (SIGHUP); keep the running one if the new one fails."""
        if self.loader is None or self.stopping:
            return
        self.notifier.send("RELOADING=1\nMONOTONIC_USEC=%d" % (time.monotonic_ns() // 1000))
        try:
            self.apply(self.loader())
            LOG.info("configuration reloaded: %s", " ".join(
                "%s=%s" % (k, ",".join(v) if isinstance(v, list) else v) for k, v in self.settings.raw.items() if v))
        except (ConfigError, OSError) as exc:
            self.events["reload:failed"] += 1
            LOG.error("reload failed, the running configuration stays: %s", exc)
        self.notifier.send("READY=1\nSTATUS=%s" % self.status())

    def stop(self):
        """Stop listening; the loop ends once queries in flight are answered (at most --timeout)."""
        if self.stopping:
            self.running = False  # a second signal: now
            return
        self.stopping = True
        self.notifier.send("STOPPING=1")
        LOG.info("stopping: no new queries, %d in flight", len(self.inflight))
        for (kind, label), sock in list(self.listeners.items()):
            if kind == "tcp":
                self._unregister(self.listeners.pop((kind, label)))
            else:  # answers in flight still leave through it: only stop reading
                self.epoll.unregister(sock.fileno())
                del self.handlers[sock.fileno()]
        self.stop_deadline = self.now + self.timeout
        self.next_tick = self.now

    def status(self):
        """The one-line STATUS= text for systemd."""
        return "listening on %s, forwarding to %s" % (", ".join(sorted({k[1] for k in self.listeners})),
                                                      ", ".join(u.label for u in self.upstreams))

    def run(self):
        """Serve until SIGTERM/SIGINT; returns the exit status."""
        previous = {}
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            previous[number] = signal.signal(number, _ignore_signal)
        old_wakeup = signal.set_wakeup_fd(self.signal_w.fileno(), warn_on_full_buffer=False)
        self.notifier.send("READY=1\nMAINPID=%d\nSTATUS=%s" % (os.getpid(), self.status()))
        LOG.info("ready (%s; timeout %gs, max-inflight %d, allow %s)", self.status(), self.timeout, self.max_inflight,
                 ", ".join(str(n) for n in self.allow))
        poll = self.epoll.poll
        handlers = self.handlers
        monotonic = time.monotonic
        try:
            while self.running:
                events = poll(max(0.0, self.next_tick - self.now), 256)
                now = self.now = monotonic()
                try:
                    for fd, mask in events:
                        entry = handlers.get(fd)
                        if entry is not None:
                            entry[0](entry[1], mask)
                    if now >= self.next_tick:
                        self._tick(now)
                except Exception:  # pylint: disable=broad-exception-caught  # a bug must not take DNS down
                    self.events["errors:internal"] += 1
                    LOG.exception("internal error (the relay goes on; please report this)")
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for number, handler in previous.items():
                signal.signal(number, handler)
        self.log_counters("exit")
        self.close()
        return 0

    def close(self):
        """Close every socket."""
        for fd, (_handler, obj) in list(self.handlers.items()):
            del self.handlers[fd]
            sock = getattr(obj, "sock", obj)
            if isinstance(sock, socket.socket):
                sock.close()
        for sock in list(self.listeners.values()) + [self.metrics_sock, self.signal_r, self.signal_w]:
            if sock is not None:
                sock.close()
        for _close_at, usock in self.retired:
            usock.sock.close()
        self.epoll.close()
        self.notifier.close()


def _ignore_signal(_number, _frame):
    """Signals are handled in the loop (set_wakeup_fd); the handler only has to exist."""


def resident_bytes():
    """This process's resident set size, from /proc/self/statm."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    setup_logging("info")
    try:
        settings = load_settings(args)
    except ConfigError as exc:
        sys.stderr.write("enva-dns-relay: %s\n" % exc)
        return 2
    if args.check_config:
        sys.stdout.write(settings.to_ini())
        return 0
    try:
        relay = Relay(settings, loader=lambda: load_settings(args))
    except OSError as exc:
        LOG.error("%s", exc.strerror or exc)
        return 1
    return relay.run()


if __name__ == "__main__":
    sys.exit(main())
