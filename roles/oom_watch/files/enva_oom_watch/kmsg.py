# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Follow the kernel log (/dev/kmsg) without blocking, and hand OOM kills over as they are printed.

Records are parsed by the collection's ``oom_kernel.KernelLogParser`` (framing by ``log_lines``).
The ring buffer's sequence numbers say what was lost: a read that fails with EPIPE (the reader was
overrun) is counted, and so is every record between two sequence numbers that never arrived.
Records at or below the last sequence handled in this boot (kept in the state file) are skipped,
so a restart of the agent counts no kill twice.
"""

import collections
import errno
import os
import time

from ansible_collections.enva.pve.plugins.module_utils.log_lines import kmsg_fields
from ansible_collections.enva.pve.plugins.module_utils.oom_kernel import KernelLogParser

READ_SIZE = 16384          # one kmsg record per read(); larger than the kernel's record limit
RECENT_LINES = 400         # kernel lines kept for the flight recorder


def boot_id(path="/proc/sys/kernel/random/boot_id"):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return None


class KmsgFollower(object):
    """Reads what the kernel printed since the last call (``drain``); ``kills()`` the OOM kills among it."""

    def __init__(self, path="/dev/kmsg", last_seq=None, read=os.read, wall=time.time, monotonic=time.monotonic):
        self.path = path
        self.fd = None
        self.last_seq = last_seq
        self.lost = 0              # records that never arrived (sequence gaps)
        self.overruns = 0          # reads that failed with EPIPE
        self.errors = 0            # opens or reads that failed otherwise
        self.lines = 0
        self.recent = collections.deque(maxlen=RECENT_LINES)
        self._read = read
        self._wall, self._monotonic = wall, monotonic
        self._partial = b""
        self.parser = KernelLogParser(wall(), boot_epoch=wall() - monotonic())

    def open(self):
        if self.fd is not None:
            return True
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            self.errors += 1
            self.fd = None
            return False
        return True

    def close(self):
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None

    def drain(self, limit=100000):
        """Read every record available now (at most ``limit``); returns how many were handled."""
        if not self.open():
            return 0
        self.parser.boot_epoch = self._wall() - self._monotonic()     # follows a step of the wall clock
        self.parser.reference_epoch = self._wall()
        handled = 0
        while handled < limit:
            try:
                chunk = self._read(self.fd, READ_SIZE)
            except OSError as error:
                if error.errno == errno.EPIPE:
                    self.overruns += 1     # overrun: the next read returns the oldest record still there
                    continue
                if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    break
                self.errors += 1
                self.close()
                break
            if not chunk:              # a pipe's writer went away (tests); /dev/kmsg never ends
                self.close()
                break
            data = self._partial + chunk
            lines = data.split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                if self._record(line.decode("utf-8", "replace")):
                    handled += 1
        self.parser.forget(keep=64)
        return handled

    def _record(self, line):
        fields = kmsg_fields(line)
        if fields is None:
            return False           # a continuation line (" SUBSYSTEM=...") or noise
        seq, usec, message = fields
        if self.last_seq is not None:
            if seq <= self.last_seq:
                return False       # seen before this agent restarted
            if seq > self.last_seq + 1:
                self.lost += seq - self.last_seq - 1
        self.last_seq = seq
        self.lines += 1
        self.recent.append("[%d.%06d] %s" % (usec // 1000000, usec % 1000000, message))
        self.parser.feed(line)
        return True

    def kills(self):
        """OOM kills printed since the last call (oom_kernel's take_kills)."""
        return self.parser.take_kills()
