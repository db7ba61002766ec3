# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PSI triggers on the CTs' ``memory.pressure`` (cgroup v2): a stall is seen within a window, not a scan.

Writing ``some 150000 1000000`` to a cgroup's ``memory.pressure`` asks the kernel to wake ``poll()``
with POLLPRI when the cgroup's tasks stalled on memory for 150 ms within any 1 s
(Documentation/accounting/psi.rst). This is the one write the watch makes to a CT's cgroup: it opens
``memory.pressure`` for writing and registers a trigger that lives as long as the file stays open;
no limit or setting of the CT changes. A kernel or a file that refuses it (EACCES, EPERM, EINVAL:
cgroup v1, no PSI, a window unprivileged users may not use) leaves that CT to sampling.
"""

import errno
import os
import select


class Triggers(object):
    """One trigger per CT, all on one ``select.poll``."""

    def __init__(self, spec="some 150000 1000000", enabled=True):
        self.spec = spec.encode("ascii") + b"\0"
        self.enabled = enabled
        self.poller = select.poll()
        self.by_fd = {}               # fd -> (vmid, inode)
        self.by_vmid = {}             # vmid -> (fd, inode)
        self.refused = {}             # vmid -> inode whose memory.pressure refused a trigger
        self.last_error = None

    def __len__(self):
        return len(self.by_vmid)

    def arm(self, vmid, path, inode):
        """A trigger on CT ``vmid``'s cgroup at ``path`` (once per cgroup: a new inode is a new cgroup)."""
        if not self.enabled:
            return False
        current = self.by_vmid.get(vmid)
        if current is not None:
            if current[1] == inode:
                return True
            self.disarm(vmid)
        if self.refused.get(vmid) == inode:
            return False
        try:
            fd = os.open(os.path.join(path, "memory.pressure"), os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            self.refused[vmid] = inode
            self.last_error = "%s: %s" % (path, os.strerror(error.errno))
            return False
        try:
            os.write(fd, self.spec)
        except OSError as error:
            os.close(fd)
            self.refused[vmid] = inode
            self.last_error = "%s: %s" % (path, os.strerror(error.errno))
            return False
        self.poller.register(fd, select.POLLPRI)
        self.by_fd[fd] = (vmid, inode)
        self.by_vmid[vmid] = (fd, inode)
        return True

    def disarm(self, vmid):
        current = self.by_vmid.pop(vmid, None)
        self.refused.pop(vmid, None)
        if current is None:
            return
        fd = current[0]
        self.by_fd.pop(fd, None)
        try:
            self.poller.unregister(fd)
        except (KeyError, ValueError):
            pass
        try:
            os.close(fd)
        except OSError:
            pass

    def keep_only(self, vmids):
        for vmid in [vmid for vmid in self.by_vmid if vmid not in vmids]:
            self.disarm(vmid)
        for vmid in [vmid for vmid in self.refused if vmid not in vmids]:
            del self.refused[vmid]

    def handle(self, fd, revents):
        """The VMID whose trigger fired, or None; a trigger whose cgroup went away (POLLERR) is dropped."""
        owner = self.by_fd.get(fd)
        if owner is None:
            return None
        if revents & (select.POLLERR | select.POLLNVAL | select.POLLHUP):
            self.disarm(owner[0])
            return None
        return owner[0] if revents & select.POLLPRI else None

    def close(self):
        for vmid in list(self.by_vmid):
            self.disarm(vmid)


def supported_error(error):
    """True for the errors that mean "no triggers here" rather than a fault."""
    return error.errno in (errno.EACCES, errno.EPERM, errno.EINVAL, errno.ENOENT, errno.EROFS, errno.EOPNOTSUPP)
