# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""systemd and logging: sd_notify without libsystemd, journald priority prefixes, rate-limited warnings."""

import logging
import os
import socket
import sys

LOG = logging.getLogger("enva-dns-relay")
WARN_INTERVAL = 60.0  # seconds between two warnings of one kind; the ones in between are counted


class RateLimitedWarnings:
    """At most one WARNING line per kind and WARN_INTERVAL; the next one says how many were held back."""

    def __init__(self, interval=WARN_INTERVAL):
        self.interval = interval
        self.next_at = {}
        self.held = {}

    def warning(self, kind, now, message, *args):
        """Log ``message % args`` unless a warning of ``kind`` went out less than ``interval`` ago; True if logged."""
        if now < self.next_at.get(kind, float("-inf")):
            self.held[kind] = self.held.get(kind, 0) + 1
            return False
        held = self.held.pop(kind, 0)
        if held:
            message += " (%d more like this in the last %gs, not logged)"
            args += (held, self.interval)
        LOG.warning(message, *args)
        self.next_at[kind] = now + self.interval
        return True


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
