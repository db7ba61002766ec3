# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What answers DNS in this CT, read-only; run by enva.pve.haproxy_dns with the CT's python3.

Standard library only (Python 3.9+). Prints one JSON object:

- ``listeners``: every UDP socket and listening TCP socket on --port (from /proc/net), with the
  process that holds it: pid, command, argv and its systemd unit (from /proc/PID/cgroup);
- ``forwarder``: those in one line (``socat [dns-forwarder.service] on udp 0.0.0.0:53``);
- ``processes``: how many processes run each command (``socat`` included even when 0);
- ``nameservers``: the nameserver lines of /etc/resolv.conf;
- ``haproxy_names``: the host names HAProxy's config resolves (``server NAME HOST:PORT`` and
  ``server-template`` lines, IP addresses left out), with --haproxy-config;
- ``resolved``: for each --resolve NAME, the IPv4 addresses the CT's own resolver
  (getaddrinfo, i.e. /etc/resolv.conf) gives, or the error;
- ``identity``: the CT's host name and the MAC addresses of its interfaces (what the play checks
  against the CT's PVE config, so it never changes another CT than the one it was told);
- ``upstreams``: for each --probe ADDR:PORT, whether a name server answers there (any DNS answer,
  even REFUSED, within 2 s, one query over UDP from this CT).
"""

import argparse
import ipaddress
import json
import os
import re
import socket
import struct

STATES_LISTEN = {"udp": None, "tcp": "0A"}     # TCP: only LISTEN sockets; UDP: every bound socket


def _hex_address(text):
    """``0100007F:0035`` (or the IPv6 form) as (address, port)."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        address = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        address = socket.inet_ntop(socket.AF_INET6, words)
    return address, int(port, 16)


def sockets(port):
    """(proto, address, port, inode) of the sockets on ``port``."""
    found = []
    for proto, state in STATES_LISTEN.items():
        for suffix in ("", "6"):
            try:
                with open("/proc/net/%s%s" % (proto, suffix)) as handle:
                    rows = handle.read().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                fields = row.split()
                if len(fields) < 10:
                    continue
                address, local_port = _hex_address(fields[1])
                if local_port != port or (state and fields[3] != state):
                    continue
                found.append((proto + suffix, address, local_port, fields[9]))
    return found


def _read(path, default=""):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return default


def process(pid):
    argv = [part for part in _read("/proc/%s/cmdline" % pid).split("\0") if part]
    unit = None
    for line in _read("/proc/%s/cgroup" % pid).splitlines():
        match = re.search(r"/([^/]+\.(?:service|scope))$", line)
        if match:
            unit = match.group(1)
            break
    return {"pid": int(pid), "command": _read("/proc/%s/comm" % pid).strip(), "argv": argv, "unit": unit}


def socket_owners():
    """inode -> pid of the first process holding it."""
    owners = {}
    for pid in sorted((name for name in os.listdir("/proc") if name.isdigit()), key=int):
        try:
            fds = os.listdir("/proc/%s/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink("/proc/%s/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                owners.setdefault(target[8:-1], pid)
    return owners


def process_counts(top=10):
    """Processes per command: the ``top`` most frequent, and socat always."""
    counts = {}
    for pid in (name for name in os.listdir("/proc") if name.isdigit()):
        command = _read("/proc/%s/comm" % pid).strip()
        if command:
            counts[command] = counts.get(command, 0) + 1
    kept = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top])
    kept["socat"] = counts.get("socat", 0)
    kept["total"] = sum(counts.values())
    return kept


def nameservers(path="/etc/resolv.conf"):
    return [line.split()[1] for line in _read(path).splitlines() if line.split()[:1] == ["nameserver"]
            and len(line.split()) > 1]


def haproxy_names(path):
    """The host names of ``server``/``server-template`` lines (what HAProxy resolves), in order."""
    names = []
    for line in _read(path).splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] not in ("server", "server-template"):
            continue
        target = words[3] if words[0] == "server-template" and len(words) > 3 else (words[2] if len(words) > 2 else "")
        if target.startswith("["):
            host = target[1:].split("]", 1)[0]
        else:
            host = target.rsplit(":", 1)[0] if target.count(":") == 1 else target
        if not host or host.startswith(("/", "@", "unix@", "abns@", "ipv4@", "ipv6@")):
            continue
        try:
            ipaddress.ip_address(host)
            continue
        except ValueError:
            pass
        if host not in names:
            names.append(host)
    return names


def resolve(name):
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_DGRAM)
    except socket.gaierror as error:
        return {"name": name, "addresses": [], "error": str(error)}
    return {"name": name, "addresses": sorted({info[4][0] for info in infos}), "error": None}


def identity():
    """The host name and the MAC addresses (upper case) of every interface but loopback."""
    hwaddrs = []
    try:
        names = sorted(os.listdir("/sys/class/net"))
    except OSError:
        names = []
    for name in names:
        try:
            with open("/sys/class/net/%s/address" % name) as handle:
                address = handle.read().strip().upper()
        except OSError:
            continue
        if address and address != "00:00:00:00:00:00":
            hwaddrs.append({"name": name, "hwaddr": address})
    return {"hostname": socket.gethostname(), "interfaces": hwaddrs}


def probe(target, timeout=2.0):
    """Whether a DNS server answers at ``ADDR:PORT`` (``[v6]:PORT`` too): one query for ``. NS``."""
    host, _sep, port = target.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    query_id = int.from_bytes(os.urandom(2), "big")
    query = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + b"\x00\x00\x02\x00\x01"
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.connect((host, int(port)))       # connected: an ICMP refusal fails at once
            sock.send(query)
            while True:
                data = sock.recv(4096)
                if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == query_id and data[2] & 0x80:
                    return {"upstream": target, "answered": True, "rcode": data[3] & 0x0F, "error": None}
    except (OSError, ValueError) as error:
        return {"upstream": target, "answered": False, "rcode": None, "error": str(error) or type(error).__name__}


def describe(listeners):
    """One line: who answers on the port, e.g. ``socat [dns-forwarder.service] on udp 0.0.0.0:53``."""
    groups = {}
    for entry in listeners:
        key = "%s [%s]" % (entry["command"] or "?", entry["unit"] or "no unit")
        where = "%s %s:%d" % (entry["proto"], entry["address"] if ":" not in entry["address"]
                              else "[%s]" % entry["address"], entry["port"])
        groups.setdefault(key, [])
        if where not in groups[key]:
            groups[key].append(where)
    return "; ".join("%s on %s" % (key, ", ".join(wheres)) for key, wheres in groups.items()) or "nothing"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--haproxy-config")
    parser.add_argument("--resolve", action="append", default=[], metavar="NAME")
    parser.add_argument("--probe", action="append", default=[], metavar="ADDR:PORT")
    args = parser.parse_args()
    owners = socket_owners()
    listeners = []
    for proto, address, port, inode in sockets(args.port):
        entry = {"proto": proto, "address": address, "port": port}
        unknown = {"pid": None, "command": None, "argv": [], "unit": None}
        entry.update(process(owners[inode]) if inode in owners else unknown)
        listeners.append(entry)
    result = {"listeners": listeners, "forwarder": describe(listeners), "processes": process_counts(),
              "nameservers": nameservers(),
              "haproxy_names": haproxy_names(args.haproxy_config) if args.haproxy_config else [],
              "resolved": [resolve(name) for name in args.resolve], "identity": identity(),
              "upstreams": [probe(target) for target in args.probe]}
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
