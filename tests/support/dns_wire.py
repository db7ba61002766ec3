"""A DNS query built by hand (RFC 1035 wire format, no dnspython): for load generators and benchmarks that
send many of them, and for a Python without dnspython."""

from __future__ import annotations

import struct

RD = 0x0100  # flags: recursion desired


def qname_wire(name):
    """``name`` (text, the trailing dot optional) as length-prefixed labels ending in the root label."""
    labels = [label.encode("ascii") for label in name.strip(".").split(".") if label]
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def query_wire(name, qid=0x4242, qtype=1):
    """A recursive query for ``name`` (one question, class IN, type ``qtype``: 1 is A), no EDNS."""
    return struct.pack("!HHHHHH", qid, RD, 1, 0, 0, 0) + qname_wire(name) + struct.pack("!HH", qtype, 1)


def tcp_frame(wire):
    """``wire`` with the two-byte length DNS over TCP puts before each message."""
    return len(wire).to_bytes(2, "big") + wire
