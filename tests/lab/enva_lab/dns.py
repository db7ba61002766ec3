"""The lab's DNS: the zone ``lab.enva.test``, the unbound that serves it (the SiNS stand-in), and a
minimal DNS client for the flood and the self-checks.

unbound never recurses: ``local-zone: "." refuse`` answers every name outside the lab's zones
with REFUSED before the iterator sees it, and the only forwarder it knows is loopback's discard
port, which ``do-not-query-localhost`` forbids it to use. Its statistics
(``total.num.cachemiss``, ``total.num.recursivereplies``, ``total.requestlist.max``) stay 0, which
:func:`recursion_counters` reads to prove it.
"""

import hashlib
import ipaddress
import os
import random
import socket
import struct
from pathlib import Path

from enva_lab import settings

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
BIG_TXT_NAME = "big.%s" % settings.ZONE
BIG_TXT_PARTS = 8
FLOOD_NAMES = ("www", "api", "sins", "web", "db", "mail", "haproxy", "pve1")


UNBOUND_STATE = Path("/var/lib/unbound")
"""Where Debian's AppArmor profile for unbound (``/etc/apparmor.d/usr.sbin.unbound``, the same in
bookworm's 1.17.1 and trixie's 1.26.2) lets it read (``/var/lib/unbound/** r``) and write files it owns
(``owner /var/lib/unbound/** rw``). The profile attaches to ``/usr/sbin/unbound`` wherever the kernel has
AppArmor (Debian enables it by default); it does not allow ``/var/lib/enva-lab/**``, and the kernel denied
the lab's unbound its config there. Its local include (``local/usr.sbin.unbound``) is meant for the site's
admin, not for a test lab to widen a system profile, so the lab's unbound keeps to the profile instead."""


def unbound_dir(labdir):
    """The directory of the lab's unbound (config, log, control socket): under :data:`UNBOUND_STATE`, one per
    lab directory. ``<labdir>/dns`` is a link to it, so every command line still names the lab directory
    (``down`` finds a stray unbound by it) while AppArmor, which mediates the resolved path, sees
    ``/var/lib/unbound/...``. ``labctl down`` removes it."""
    labdir = Path(labdir)
    if labdir == Path("/var/lib/enva-lab"):
        return UNBOUND_STATE / "enva-lab"
    return UNBOUND_STATE / ("enva-lab-%s" % hashlib.sha256(str(labdir).encode()).hexdigest()[:12])


def link_unbound_dir(layout_dns, labdir):
    """Make ``layout_dns`` (``<labdir>/dns``) a link to :func:`unbound_dir`; returns the real directory.
    A ``dns`` directory left by an older lab is replaced (it held only unbound's generated files)."""
    target = unbound_dir(labdir)
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o755)
    link = Path(layout_dns)
    if link.is_symlink() and os.readlink(link) == str(target):
        return target
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        for child in link.iterdir():
            child.unlink()
        link.rmdir()
    link.symlink_to(target)
    return target


def apparmor_mode(profiles=Path("/sys/kernel/security/apparmor/profiles")):
    """The mode AppArmor holds unbound's profile in here (``enforce``, ``complain``), or None: no AppArmor,
    or no profile loaded for it."""
    try:
        text = profiles.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _sep, mode = line.rpartition(" (")
        if name in ("unbound", "/usr/sbin/unbound"):
            return mode.rstrip(")")
    return None


def denials_hint(profiles=Path("/sys/kernel/security/apparmor/profiles")):
    """What to add to "unbound did not start" when AppArmor confines it: where the kernel says what it denied."""
    mode = apparmor_mode(profiles)
    if mode is None:
        return ""
    return ("; AppArmor holds /usr/sbin/unbound in its profile 'unbound' (%s): the kernel's log names what it "
            "denied (journalctl -k | grep 'apparmor=\"DENIED\".*profile=\"unbound\"'); the lab's files must stay "
            "under %s" % (mode, UNBOUND_STATE))


def ipv6_for(ip):
    """The zone's AAAA for a CT address (DNS data only; the bridge is IPv4): 10.217.0.17 -> fd10:217::17."""
    return "fd10:217::%d" % int(ip.rsplit(".", 1)[1])


def big_txt_strings():
    """The strings of the large TXT RRset: about 2 KiB, more than 512 (no EDNS) and 1232 (EDNS) bytes."""
    strings = []
    for part in range(1, BIG_TXT_PARTS + 1):
        head = "part %d of %d: this RRset is larger than a UDP answer may be, so it comes back truncated " \
               "with TC set and the client asks again over TCP. " % (part, BIG_TXT_PARTS)
        strings.append((head + "x" * 250)[:250])
    return strings


def zone_records(cts):
    """The zone's records as ``(name, type, rdata)``; ``cts`` are every DeclaredCt of the lab's declared file.

    unbound does not chase a CNAME inside its local data (the answer holds the CNAME alone), so the
    names clients resolve (www, api, the CTs') are A records; ``ct<VMID>`` names are the CNAMEs.
    """
    zone = settings.ZONE
    records = [
        (zone, "SOA", "sins.%s. hostmaster.%s. 2026112401 3600 600 604800 300" % (zone, zone)),
        (zone, "NS", "sins.%s." % zone),
        (zone, "MX", "10 mail.%s." % zone),
        (zone, "TXT", '"v=spf1 ip4:%s -all"' % settings.SUBNET),
        ("sins.%s" % zone, "A", settings.DNS_IP),
        ("pve1.%s" % zone, "A", settings.HOST_IP),
    ]
    for ct in sorted(cts, key=lambda item: item.vmid):
        name = "%s.%s" % (ct.hostname, zone)
        records += [(name, "A", ct.ip), (name, "AAAA", ipv6_for(ct.ip))]
        if ct.hostname != "ct%d" % ct.vmid:
            records.append(("ct%d.%s" % (ct.vmid, zone), "CNAME", name + "."))
    haproxy = next((ct for ct in cts if ct.is_haproxy), None)
    if haproxy is not None:
        records += [("www.%s" % zone, "A", haproxy.ip), ("api.%s" % zone, "A", haproxy.ip)]
    records += [(BIG_TXT_NAME, "TXT", '"%s"' % text) for text in big_txt_strings()]
    return records


def _reverse_zone():
    network = ipaddress.ip_network(settings.SUBNET)
    return ".".join(reversed(str(network.network_address).split(".")[:3])) + ".in-addr.arpa"


def unbound_conf(cts, directory, logfile, control_socket, interface=settings.DNS_IP, port=settings.DNS_PORT):
    """unbound's config for the SiNS stand-in (authoritative for the lab's zones, never recursing)."""
    zone = settings.ZONE
    lines = [
        "# The enva.pve lab's SiNS stand-in; written by labctl up. It answers for %s and" % zone,
        "# %s and REFUSES everything else: it never sends a query anywhere." % _reverse_zone(),
        "server:",
        "    interface: %s" % interface,
        "    port: %d" % port,
        "    do-ip4: yes",
        "    do-ip6: no",
        "    do-udp: yes",
        "    do-tcp: yes",
        "    access-control: 0.0.0.0/0 refuse",
        "    access-control: %s allow" % settings.SUBNET,
        "    access-control: 127.0.0.0/8 allow",
        "    username: \"\"",
        "    chroot: \"\"",
        "    directory: \"%s\"" % directory,
        "    logfile: \"%s\"" % logfile,
        "    use-syslog: no",
        "    log-time-ascii: yes",
        "    verbosity: 1",
        "    num-threads: 1",
        "    module-config: \"iterator\"",
        "    do-not-query-localhost: yes",
        "    extended-statistics: yes",
        "    statistics-cumulative: yes",
        "    edns-buffer-size: 1232",
        "    # unbound 1.26 (trixie) asks for a 4 MiB send buffer with SO_SNDBUFFORCE, which needs CAP_NET_ADMIN:",
        "    # Debian's AppArmor profile denies it (a DENIED line in the kernel log). The system's default will do.",
        "    so-sndbuf: 0",
        "    local-zone: \".\" refuse",
        "    local-zone: \"%s.\" static" % zone,
        "    local-zone: \"%s.\" static" % _reverse_zone(),
    ]
    for name, rtype, rdata in zone_records(cts):
        lines.append("    local-data: '%s. 300 IN %s %s'" % (name, rtype, rdata))
    lines.append("    local-data-ptr: \"%s sins.%s\"" % (settings.DNS_IP, zone))
    lines.append("    local-data-ptr: \"%s pve1.%s\"" % (settings.HOST_IP, zone))
    for ct in sorted(cts, key=lambda item: item.vmid):
        lines.append("    local-data-ptr: \"%s %s.%s\"" % (ct.ip, ct.hostname, zone))
    lines += [
        "remote-control:",
        "    control-enable: yes",
        "    control-interface: \"%s\"" % control_socket,
        "    control-use-cert: no",
        "# A safety net only: even a name that slipped past the refuse zone could go nowhere but",
        "# loopback's discard port, and do-not-query-localhost forbids that too.",
        "forward-zone:",
        "    name: \".\"",
        "    forward-addr: 127.0.0.1@9",
    ]
    return "\n".join(lines) + "\n"


def recursion_counters(stats_text):
    """The counters that show whether unbound ever recursed, from ``unbound-control stats_noreset``."""
    wanted = ("total.num.queries", "total.num.cachemiss", "total.num.recursivereplies", "total.requestlist.max",
              "num.answer.rcode.REFUSED", "num.answer.rcode.NOERROR")
    counters = {}
    for line in stats_text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in wanted:
            counters[key] = int(float(value))
    return counters


def build_query(name, qtype="A", qid=None, edns=False):
    """A DNS query (RD set) for ``name``; ``edns`` adds an OPT record with a 1232-byte buffer."""
    qid = random.getrandbits(16) if qid is None else qid
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    labels = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.rstrip(".").split(".") if label)
    question = labels + b"\x00" + struct.pack("!HH", TYPES[qtype], 1)
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0) if edns else b""
    return header + question + opt


class Answer:
    """The parts of a DNS response the lab looks at."""

    def __init__(self, qid, rcode, truncated, answers):
        self.qid = qid
        self.rcode = rcode
        self.truncated = truncated
        self.answers = answers

    @property
    def rcode_name(self):
        return RCODES.get(self.rcode, str(self.rcode))


def parse_answer(data):
    """An Answer from a response's header; ValueError for something that is not a DNS response."""
    if len(data) < 12:
        raise ValueError("a DNS message has at least 12 bytes, this has %d" % len(data))
    qid, flags, _qd, ancount, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
    if not flags & 0x8000:
        raise ValueError("not a response (QR=0)")
    return Answer(qid, flags & 0x000F, bool(flags & 0x0200), ancount)


def query(server, name, qtype="A", timeout=2.0, tcp=False):
    """Ask ``server`` (address, port) one question over UDP or TCP; the Answer, or None on a timeout."""
    message = build_query(name, qtype)
    qid = struct.unpack("!H", message[:2])[0]
    family = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, family) as sock:
        sock.settimeout(timeout)
        try:
            if tcp:
                sock.connect(server)
                sock.sendall(struct.pack("!H", len(message)) + message)
                length = struct.unpack("!H", _recv_exact(sock, 2))[0]
                data = _recv_exact(sock, length)
            else:
                sock.sendto(message, server)
                data = sock.recv(65535)
        except (socket.timeout, ConnectionError):
            return None
    answer = parse_answer(data)
    if answer.qid != qid:
        raise ValueError("answer ID %d does not match query ID %d" % (answer.qid, qid))
    return answer


def _recv_exact(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(data), size))
        data += chunk
    return data
