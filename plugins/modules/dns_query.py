#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: dns_query
short_description: Ask one DNS server one question and check the answer
version_added: "0.1.0"
description:
  - Sends one DNS query to the given server and port with dnspython, over UDP, TCP, or UDP with TCP after a
    truncated answer, and returns the rcode, the answers, the TTL, the header flags and the latency.
  - Fails, with a message that names the server, port, protocol, name and type and says what came back,
    when the rcode is not O(expected_rcode), when O(expected_answers) is given and the answers differ, or
    when no answer comes within O(timeout).
  - Answers are compared as DNS data of the queried type, as sets. Order, letter case of names, a missing
    final dot and IPv6 spelling do not matter.
  - Runs wherever the task runs. Used inside a CT to test its own listen address, or on the controller
    (C(delegate_to=localhost)) to test a CT from outside.
  - The query has no EDNS, like the glibc stub resolver, so a UDP answer larger than 512 bytes comes back
    truncated (TC flag), which O(protocol=auto) retries over TCP.
author:
  - enva.pve developers (@enva)
requirements:
  - dnspython (on the host that runs the task)
options:
  server:
    description:
      - The IP address (IPv4 or IPv6) of the DNS server to ask. A host name is refused; resolving it would
        need the DNS that is being tested.
    type: str
    required: true
  port:
    description: The server's port.
    type: int
    default: 53
  name:
    description: The name to look up. It is taken as absolute (C(www.example.org) is C(www.example.org.)).
    type: str
    required: true
  type:
    description: The record type to ask for (V(A), V(AAAA), V(TXT), V(MX), V(SOA), V(NS), V(PTR), ...).
    type: str
    default: A
  protocol:
    description:
      - V(udp) sends the query over UDP only; a truncated answer is returned as it came (with C(flags.tc)).
      - V(tcp) sends it over TCP only.
      - V(auto) sends it over UDP and again over TCP when the UDP answer is truncated, as stub resolvers do.
        RV(protocol) says which one answered.
    type: str
    choices: [udp, tcp, auto]
    default: udp
  timeout:
    description: Seconds to wait for each answer (each try, and the TCP retry of O(protocol=auto)).
    type: float
    default: 2.0
  retries:
    description: How many more times to send the query when no answer comes within O(timeout).
    type: int
    default: 0
  recursion_desired:
    description: Set the RD flag, asking the server to resolve the name for us, as stub resolvers do.
    type: bool
    default: true
  expected_rcode:
    description:
      - The rcode the answer must have, such as V(NOERROR), V(NXDOMAIN) for a name that must not exist, or
        V(REFUSED) for a client the server must turn away.
    type: str
    default: NOERROR
  expected_answers:
    description:
      - The answers of the queried type that must come back, in any order, as record data
        (V(192.0.2.17), V(2001:db8::17), V(10 mail.example.org), V(v=spf1 -all) for TXT).
      - A TXT answer is its text (one string) or, for several strings, record data with quotes
        (V("part one" "part two")).
      - An empty list means the answer must have no records of the type (NODATA). Omitted means any
        answers will do.
    type: list
    elements: str
extends_documentation_fragment:
  - enva.pve.attributes
  - enva.pve.attributes.read_only
attributes:
  check_mode:
    details:
      - The query only reads, so check mode sends it too and checks the answer as usual.
notes:
  - The latency is measured on the host that runs the task, from sending the query to the full answer
    (both exchanges when V(auto) falls back to TCP).
"""

EXAMPLES = r"""
- name: The relay answers from inside the CT, over UDP and TCP
  enva.pve.dns_query:
    server: 127.0.0.1
    name: www.example.org
    protocol: "{{ item }}"
    expected_answers: [192.0.2.17]
  loop: [udp, tcp]

- name: And from the controller to the CT's address
  enva.pve.dns_query:
    server: 192.0.2.17
    name: www.example.org
    timeout: 1.5
    retries: 2
  delegate_to: localhost
  register: through_relay

- name: Show the latency
  ansible.builtin.debug:
    msg: "{{ through_relay.answers }} in {{ through_relay.latency_ms }} ms"

- name: A name that does not exist must say so
  enva.pve.dns_query:
    server: 192.0.2.17
    name: no-such-host.example.org
    expected_rcode: NXDOMAIN
  delegate_to: localhost

- name: Mail exchangers, in any order, names with or without the final dot
  enva.pve.dns_query:
    server: 192.0.2.53
    name: example.org
    type: MX
    expected_answers:
      - 20 mx2.example.org
      - 10 mail.example.org.
"""

RETURN = r"""
server:
  description: The server asked.
  returned: always
  type: str
  sample: 192.0.2.17
port:
  description: Its port.
  returned: always
  type: int
  sample: 53
name:
  description: The name asked for, absolute.
  returned: always
  type: str
  sample: www.example.org.
type:
  description: The record type asked for.
  returned: always
  type: str
  sample: A
protocol:
  description: The protocol that brought the answer (V(tcp) when V(auto) fell back); the one asked for when none came.
  returned: always
  type: str
  sample: udp
rcode:
  description: The answer's rcode; null when no answer came.
  returned: always
  type: str
  sample: NOERROR
answers:
  description: The record data of the answers of the queried type, as the server sent them (TXT with its quotes).
  returned: always
  type: list
  elements: str
  sample: [192.0.2.17]
records:
  description: Every record of the answer section as text (name, TTL, class, type, data), CNAMEs included.
  returned: always
  type: list
  elements: str
  sample: [www.example.org. 300 IN A 192.0.2.17]
ttl:
  description: The lowest TTL of the answers of the queried type; null without any.
  returned: always
  type: int
  sample: 300
flags:
  description: The answer's header flags C(qr), C(aa), C(tc), C(rd), C(ra), C(ad) and C(cd); empty when no answer came.
  returned: always
  type: dict
  sample: {qr: true, aa: true, tc: false, rd: true, ra: true, ad: false, cd: false}
latency_ms:
  description: Milliseconds from sending the query to the whole answer; null when no answer came.
  returned: always
  type: float
  sample: 0.412
tries:
  description: How many times the query was sent over the first protocol.
  returned: always
  type: int
  sample: 1
"""

import ipaddress
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.enva.pve.plugins.module_utils import dns_check

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.query
    import dns.rdatatype
except ImportError:
    pass    # dns_check.HAS_DNSPYTHON says so, and main() fails with missing_required_lib


PROTOCOL_WORDS = {"udp": "udp", "tcp": "tcp", "auto": "udp (then tcp if truncated)"}


class QueryError(Exception):
    """The query got no usable answer; the message says what happened."""

    def __init__(self, message, tries):
        super(QueryError, self).__init__(message)
        self.tries = tries


def exchange(message, server, port, protocol, timeout, retries):
    """``(response, protocol that answered, latency in ms, tries)``; QueryError when no usable answer came."""
    for tries in range(1, retries + 2):
        start = time.perf_counter()
        try:
            if protocol == "tcp":
                response, used = dns.query.tcp(message, server, timeout=timeout, port=port), "tcp"
            else:
                response, used = dns.query.udp(message, server, timeout=timeout, port=port,
                                               ignore_unexpected=True), "udp"
                if protocol == "auto" and response.flags & dns.flags.TC:
                    response, used = dns.query.tcp(message, server, timeout=timeout, port=port), "tcp"
        except dns.exception.Timeout:
            continue
        except ConnectionRefusedError:
            raise QueryError("connection refused: nothing listens on tcp port %d" % port, tries)
        except EOFError:
            raise QueryError("the server closed the TCP connection without an answer", tries)
        except dns.exception.FormError as error:
            raise QueryError("the answer is not a valid DNS answer to this question: %s" % error, tries)
        except dns.exception.DNSException as error:
            raise QueryError("the exchange failed: %s" % error, tries)
        except OSError as error:
            raise QueryError("cannot reach the server: %s" % (error.strerror or error), tries)
        return response, used, round((time.perf_counter() - start) * 1000, 3), tries
    raise QueryError("no answer within %s s%s" % (timeout, " (%d tries)" % (retries + 1) if retries else ""),
                     retries + 1)


def check_inputs(params):
    """``(name, rdtype, rcode, expected rdata or None)``; ValueError for inputs that cannot be asked."""
    try:
        ipaddress.ip_address(params["server"])
    except ValueError:
        raise ValueError("server %r is not an IP address; give the server's IPv4 or IPv6 address (a host name would "
                         "need DNS to find it)" % params["server"])
    if not 0 < params["port"] < 65536:
        raise ValueError("port %d is not a port number (1-65535)" % params["port"])
    if params["timeout"] <= 0:
        raise ValueError("timeout must be more than 0 seconds, not %s" % params["timeout"])
    if params["retries"] < 0:
        raise ValueError("retries must be 0 or more, not %d" % params["retries"])
    name = dns_check.parse_name(params["name"])
    rdtype = dns_check.parse_type(params["type"])
    rcode = dns_check.parse_rcode(params["expected_rcode"])
    expected = None
    if params["expected_answers"] is not None:
        expected = dns_check.parse_expected(params["expected_answers"], rdtype)
    return name, rdtype, rcode, expected


def run(params):
    """``(result, problem)``: what came back, and why it is not what was expected (None when it is)."""
    name, rdtype, rcode, expected = check_inputs(params)
    result = {
        "server": params["server"], "port": params["port"], "name": name.to_text(),
        "type": dns.rdatatype.to_text(rdtype), "protocol": params["protocol"], "rcode": None, "answers": [],
        "records": [], "ttl": None, "flags": {}, "latency_ms": None, "tries": 0,
    }
    message = dns.message.make_query(name, rdtype)
    if not params["recursion_desired"]:
        message.flags &= ~dns.flags.RD
    try:
        response, used, latency_ms, tries = exchange(message, params["server"], params["port"], params["protocol"],
                                                     params["timeout"], params["retries"])
    except QueryError as error:
        result["tries"] = error.tries
        return result, str(error)
    result.update(dns_check.summarize(response, rdtype), protocol=used, latency_ms=latency_ms, tries=tries)
    return result, dns_check.mismatch(result, dns_check.answer_rdatas(response, rdtype), rcode, expected)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            server=dict(type="str", required=True),
            port=dict(type="int", default=53),
            name=dict(type="str", required=True),
            type=dict(type="str", default="A"),
            protocol=dict(type="str", choices=["udp", "tcp", "auto"], default="udp"),
            timeout=dict(type="float", default=2.0),
            retries=dict(type="int", default=0),
            recursion_desired=dict(type="bool", default=True),
            expected_rcode=dict(type="str", default="NOERROR"),
            expected_answers=dict(type="list", elements="str"),
        ),
        supports_check_mode=True,
    )
    if not dns_check.HAS_DNSPYTHON:
        module.fail_json(msg=missing_required_lib("dnspython"), exception=dns_check.DNSPYTHON_IMPORT_ERROR)
    try:
        result, problem = run(module.params)
    except ValueError as error:
        module.fail_json(msg=str(error), changed=False)
    if problem:
        asked = dict(result, protocol=PROTOCOL_WORDS[module.params["protocol"]])
        module.fail_json(msg=dns_check.describe(asked, problem), changed=False, **result)
    if result["flags"].get("tc"):
        module.warn("the answer from %s port %d was truncated (TC flag); protocol tcp or auto gets the whole answer"
                    % (result["server"], result["port"]))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
