"""Real DNS servers on loopback for dns_query's tests.

``Unbound`` runs Debian's unbound on 127.0.0.1 and a free high port with one local zone, lab.enva.test.
It never resolves anything else: every other name is REFUSED by ``local-zone: "." refuse``, upstream
queries are limited to loopback (``outgoing-interface``) and forbidden anyway (``do-not-query-address``).
It is stopped by its PID. Its config and pidfile sit where Debian's AppArmor profile for unbound allows them
(support.unbound_dir); its log, written by this process, in the directory the caller gives.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
from support.net import free_port
from support.unbound_dir import make_unbound_workdir

ZONE = "lab.enva.test."
# One TXT RRset of 8 x 200 bytes: far over the 512 bytes of a UDP answer without EDNS.
BIG_TXT = ['"%s"' % (("%d" % index) * 200) for index in range(8)]
RECORDS = [
    "www.lab.enva.test. 300 IN A 10.217.0.17",
    "www.lab.enva.test. 300 IN AAAA fd00:217::17",
    "multi.lab.enva.test. 60 IN A 10.217.0.1",
    "multi.lab.enva.test. 60 IN A 10.217.0.2",
    "multi.lab.enva.test. 60 IN A 10.217.0.3",
    "lab.enva.test. 300 IN MX 10 mail.lab.enva.test.",
    "lab.enva.test. 300 IN MX 20 mx2.lab.enva.test.",
    'txt.lab.enva.test. 300 IN TXT "hello world"',
    'spf.lab.enva.test. 300 IN TXT "v=spf1" "-all"',
] + ["big.lab.enva.test. 300 IN TXT %s" % text for text in BIG_TXT]
START_SECONDS = 15


def unbound_config(directory, port, records):
    lines = [
        "server:",
        '  username: ""',
        '  chroot: ""',
        '  directory: "%s"' % directory,
        '  pidfile: "%s/unbound.pid"' % directory,
        "  use-syslog: no",
        '  logfile: ""',
        "  verbosity: 1",
        "  interface: 127.0.0.1@%d" % port,
        "  do-ip6: no",
        "  num-threads: 1",
        "  so-reuseport: no",
        "  access-control: 127.0.0.0/8 allow",
        '  module-config: "iterator"',
        "  outgoing-interface: 127.0.0.1",
        "  do-not-query-address: 0.0.0.0/0",
        '  local-zone: "." refuse',
        '  local-zone: "%s" static' % ZONE,
    ] + ["  local-data: '%s'" % record for record in records] + [
        "remote-control:",
        "  control-enable: no",
    ]
    return "\n".join(lines) + "\n"


class Unbound:
    """unbound in the foreground, answering lab.enva.test on 127.0.0.1:port."""

    def __init__(self, directory, records=None):
        self.directory = Path(directory)
        self.records = RECORDS if records is None else records
        self.port = free_port()
        self.process = None
        self.workdir = None
        self.log = self.directory / "unbound.log"

    def start(self):
        binary = shutil.which("unbound") or "/usr/sbin/unbound"
        if not Path(binary).exists():
            raise RuntimeError("unbound is not installed; run `make setup` (tools/debian-packages.txt lists it)")
        self.workdir = make_unbound_workdir()
        config = self.workdir / "unbound.conf"
        config.write_text(unbound_config(self.workdir, self.port, self.records))
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([binary, "-d", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        probe = dns.message.make_query("www." + ZONE, "A")
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("unbound exited with %s: %s" % (self.process.returncode, self.log.read_text()))
            try:
                dns.query.udp(probe, "127.0.0.1", port=self.port, timeout=0.2)
                return self
            except (dns.exception.Timeout, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("unbound did not answer within %d s: %s" % (START_SECONDS, self.log.read_text()))

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


class SilentUdp:
    """A bound UDP socket that reads nothing and answers nothing."""

    def __enter__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        return self

    def __exit__(self, *exc):
        self.sock.close()


class SilentTcp:
    """A listening TCP socket: connections are accepted by the kernel, and no answer ever comes."""

    def __enter__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        return self

    def __exit__(self, *exc):
        self.sock.close()
