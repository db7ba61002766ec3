# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A client's view of a DNS swap: ask SERVER for NAME over UDP every INTERVAL seconds, until STOP_FILE
exists (or --max-seconds), and report the longest outage: from the last answer before a run of
failures to the first answer after it. Bounded: at most max-seconds / interval queries, one at a time.

    python3 probe.py --server 10.217.0.17 --name www.lab.enva.test --stop-file /tmp/stop
"""

import argparse
import json
import os
import time

import dns.exception
import dns.message
import dns.query
import dns.rcode


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--name", required=True)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--timeout", type=float, default=0.25)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--max-seconds", type=float, default=90)
    args = parser.parse_args()
    start = time.monotonic()
    sent = answered = 0
    failures = {}
    last_ok = None
    outage_from = None
    longest = 0.0
    outages = 0
    while time.monotonic() - start < args.max_seconds and not os.path.exists(args.stop_file):
        sent_at = time.monotonic()
        sent += 1
        try:
            answer = dns.query.udp(dns.message.make_query(args.name, "A"), args.server, port=args.port,
                                   timeout=args.timeout)
            ok = answer.rcode() == dns.rcode.NOERROR and len(answer.answer) > 0
            kind = dns.rcode.to_text(answer.rcode())
        except dns.exception.Timeout:
            ok, kind = False, "timeout"
        except OSError as exc:
            ok, kind = False, type(exc).__name__
        now = time.monotonic()
        if ok:
            answered += 1
            if outage_from is not None:
                longest = max(longest, now - outage_from)
                outage_from = None
            last_ok = now
        else:
            failures[kind] = failures.get(kind, 0) + 1
            if outage_from is None:
                outages += 1
                outage_from = last_ok if last_ok is not None else sent_at
        time.sleep(max(0.0, args.interval - (time.monotonic() - sent_at)))
    print(json.dumps({"sent": sent, "answered": answered, "failures": failures, "outages": outages,
                      "longest_outage_ms": round(longest * 1000, 1), "still_down": outage_from is not None,
                      "seconds": round(time.monotonic() - start, 2)}))


if __name__ == "__main__":
    main()
