# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which addresses are "local": the host's interface subnets, read from the kernel over rtnetlink."""

import ipaddress
import socket
import struct

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
