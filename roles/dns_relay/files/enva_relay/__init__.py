# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""enva-dns-relay as a package: wire format, config, rtnetlink, systemd, the forwarding path, UDP, TCP both sides, metrics, the loop.

Modules: wire (pure DNS message functions), config (options, INI, flags),
netlink (the host's subnets), systemd (sd_notify, journald, rate-limited
warnings), state (RelayState: what the parts share, declared once; the
records the loop keeps), forwarding (the path every query takes, UDP or
TCP), udp (UDP socket I/O, clients' and upstreams'), tcp_clients,
tcp_upstreams, metrics (each part receives the RelayState and the parts it
calls), relay (the loop, configuration changes, timers, signals), main (the
command line).
DOC below is the --help text.
"""

VERSION = "1.1.0"

DOC = """\
enva-dns-relay: a single-process DNS relay (UDP and TCP) for a container's stub resolvers.

It replaces `socat UDP4-LISTEN:53,fork,reuseaddr UDP4:UPSTREAM:53`, which starts
one child per client source port and never reaps it. This relay is one process
with one event loop; its memory is bounded by --max-inflight (UDP) and by the
TCP limits below, not by the load or by the number of distinct clients.
Standard library only, Python 3.9+, Linux.

Run it as `python3 enva_dns_relay.py ...`: that file is a launcher for the
package `enva_relay/` next to it (the role copies both). Neither has a shebang
on purpose: a CT may have no `python`, and ansible-test allows only
`#!/usr/bin/env python`.

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
    tcp-frame-timeout = 2
    max-tcp-clients = 256
    max-tcp-per-client = 16
    tcp-buffer = 64
    tcp-buffer-budget = 4096
    max-upstream-tcp = 8
    port-lifetime = 60

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
  port, replaced after 10,000 queries or --port-lifetime seconds (60),
  whichever comes first; the queries read in one wakeup of
  the loop go out on one of them, picked at random for each wakeup), so
  the kernel drops datagrams from any other source. An answer is accepted
  only if its ID is in flight on that socket and its question equals the
  query's (name compared case-insensitively, type and class exactly);
  anything else is counted and ignored while the query keeps waiting. The
  client gets its own ID and question bytes back; every other byte (flags,
  EDNS, TC=1 answers) passes through unchanged.
- TCP (RFC 7766): 2-byte length framing, pipelined queries (at most 64 in
  flight per connection) answered as they complete. Limits, each a flag and
  a config key, so that nobody outside can exhaust the relay:
    --allow is applied at accept: a refused address is closed at once (RST),
    before it can send anything or be buffered for;
    --max-tcp-clients (256) connections at once, more wait in the backlog;
    --max-tcp-per-client (16) connections from one address, more are closed;
    --tcp-frame-timeout (2 s): a query must arrive in full within that time
    of its first byte, however the bytes trickle in;
    --tcp-idle-timeout (10 s): a connection is closed after that long with
    no whole query and nothing in flight (stray bytes do not keep it open;
    a frame shorter than a DNS header, or not a query, closes it);
    --tcp-buffer (64 KiB) of unsent answers and unread queries per client,
    --tcp-buffer-budget (4096 KiB) for all clients together: a client that
    does not read its answers is closed when it reaches either;
    --max-upstream-tcp (8) connections to each upstream, reused: queries are
    pipelined on them with their own random IDs and answers matched by ID
    and question, in any order; idle ones close after 5 s.
  A TCP client's socket buffers in the kernel are set small (32 KiB).
- Each try waits --timeout seconds (default 2), then the next upstream is
  tried; when all have been tried the client gets SERVFAIL (never silence).
  Upstreams are tried in the configured order, healthy ones first. Three
  failed tries in a row, with no answer at all for --timeout seconds, mark an
  upstream down; a down upstream gets a probe (`. NS`) every second and is up
  again on its first answer.

An upstream that refuses (ICMP port unreachable on UDP, a refused TCP
connection) fails the queries waiting for it at once: they go to the next
upstream (or get SERVFAIL) without waiting for --timeout. The relay raises its
soft RLIMIT_NOFILE to what its limits need; when descriptors still run out, a
TCP query gets SERVFAIL and new TCP clients wait in the backlog (the warning
about it is logged at most once a minute, as every repeated warning).
--log-level debug logs every query (name, type, client) and every SERVFAIL
it synthesizes.

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
SIGINT: stop listening, give queries in flight up to --timeout to finish,
answer SERVFAIL to those still waiting, exit 0. A SIGHUP that lowers
--timeout applies to the queries already in flight too. Exit status 2: bad configuration; 1: a socket could not be opened.

The loop is a plain epoll loop that drains each ready socket (asyncio costs
several times more per datagram), so uvloop would not help and is not used.
Listening on a wildcard address works, but on a host with several addresses
on one interface the answer may leave from another source address than the
query was sent to; listen on the specific addresses instead.
"""
