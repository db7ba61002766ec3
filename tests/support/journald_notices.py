"""journalctl -o json lines of what a node's journal says it lost, with the fields systemd 257's journald writes.

Shapes from systemd's source (src/journal/journald-server.c ``server_driver_message``, journald-kmsg.c
``dev_kmsg_record``) and the field set of the real journal captured on a VM node
(tests/unit/fixtures/vm-node/): every value a string, times in microseconds.

* ``missed``: ``Missed N kernel messages`` (MESSAGE_ID SD_MESSAGE_JOURNAL_MISSED, ``_TRANSPORT=driver``);
* ``dropped``: ``Suppressed N messages from UNIT`` (SD_MESSAGE_JOURNAL_DROPPED, ``N_DROPPED``, ``OBJECT_*`` of the
  unit's process);
* ``overrun``: journald's own warning read back from /dev/kmsg (``_TRANSPORT=kernel``,
  ``SYSLOG_IDENTIFIER=systemd-journald``, ``SYSLOG_FACILITY=5``);
* ``kernel``: a kernel line (``_TRANSPORT=kernel``, ``SYSLOG_IDENTIFIER=kernel``).
"""

from __future__ import annotations

import json

BOOT_ID = "c1cb10be97f046ed991c8ee87281ef14"
MACHINE_ID = "b444fe4d79a84b9a97ca8f4dcd206f63"
JOURNALD_PID = "318"
MISSED_ID = "e9bf28e6e834481bb6f48f548ad13606"
DROPPED_ID = "a596d6fe7bfa4994828e72309e95d61e"

_seq = [400]


def _common(epoch, boot_epoch):
    _seq[0] += 1
    usec = int(round(epoch * 1e6))
    mono = int(round((epoch - boot_epoch) * 1e6))
    return {
        "__CURSOR": "s=1ebf8deb3fae4b27ae0740fb35c6bc96;i=%x;b=%s;m=%x;t=%x;x=2b5dcf47e7271433" % (
            _seq[0], BOOT_ID, mono, usec),
        "__REALTIME_TIMESTAMP": str(usec), "__MONOTONIC_TIMESTAMP": str(mono), "__SEQNUM": str(_seq[0]),
        "__SEQNUM_ID": "1ebf8deb3fae4b27ae0740fb35c6bc96", "_BOOT_ID": BOOT_ID, "_MACHINE_ID": MACHINE_ID,
        "_HOSTNAME": "pve1", "_RUNTIME_SCOPE": "system",
    }


def _journald_context():
    return {
        "_PID": JOURNALD_PID, "_UID": "0", "_GID": "0", "_COMM": "systemd-journal",
        "_EXE": "/usr/lib/systemd/systemd-journald", "_CMDLINE": "/usr/lib/systemd/systemd-journald",
        "_CAP_EFFECTIVE": "25402800cf", "_SELINUX_CONTEXT": "unconfined\n",
        "_SYSTEMD_CGROUP": "/system.slice/systemd-journald.service", "_SYSTEMD_UNIT": "systemd-journald.service",
        "_SYSTEMD_SLICE": "system.slice", "_SYSTEMD_INVOCATION_ID": "0f3e0c8d2b6a4d8e9c1f2a3b4c5d6e7f",
    }


def missed(epoch, count, boot_epoch):
    entry = dict(_common(epoch, boot_epoch), **_journald_context())
    entry.update({"SYSLOG_FACILITY": "3", "SYSLOG_IDENTIFIER": "systemd-journald", "_TRANSPORT": "driver",
                  "PRIORITY": "6", "MESSAGE_ID": MISSED_ID, "MESSAGE": "Missed %d kernel messages" % count})
    return json.dumps(entry)


def dropped(epoch, count, unit, boot_epoch, object_pid="2211"):
    entry = dict(_common(epoch, boot_epoch), **_journald_context())
    entry.update({"SYSLOG_FACILITY": "3", "SYSLOG_IDENTIFIER": "systemd-journald", "_TRANSPORT": "driver",
                  "PRIORITY": "6", "MESSAGE_ID": DROPPED_ID, "N_DROPPED": str(count),
                  "MESSAGE": "Suppressed %d messages from %s" % (count, unit), "OBJECT_PID": object_pid,
                  "OBJECT_UID": "0", "OBJECT_GID": "0", "OBJECT_COMM": "lxc-start",
                  "OBJECT_SYSTEMD_UNIT": unit, "OBJECT_SYSTEMD_CGROUP": "/system.slice/%s" % unit})
    return json.dumps(entry)


def overrun(epoch, boot_epoch):
    entry = dict(_common(epoch, boot_epoch), **_journald_context())
    entry.update({"SYSLOG_FACILITY": "5", "SYSLOG_IDENTIFIER": "systemd-journald", "SYSLOG_PID": JOURNALD_PID,
                  "_TRANSPORT": "kernel", "PRIORITY": "4",
                  "_SOURCE_MONOTONIC_TIMESTAMP": str(int(round((epoch - boot_epoch) * 1e6))),
                  "_SOURCE_BOOTTIME_TIMESTAMP": str(int(round((epoch - boot_epoch) * 1e6))),
                  "MESSAGE": "/dev/kmsg buffer overrun, some messages lost."})
    return json.dumps(entry)


def kernel(epoch, message, boot_epoch, priority="4"):
    entry = _common(epoch, boot_epoch)
    entry.update({"SYSLOG_FACILITY": "0", "SYSLOG_IDENTIFIER": "kernel", "_TRANSPORT": "kernel",
                  "PRIORITY": priority, "_SOURCE_MONOTONIC_TIMESTAMP": str(int(round((epoch - boot_epoch) * 1e6))),
                  "_SOURCE_BOOTTIME_TIMESTAMP": str(int(round((epoch - boot_epoch) * 1e6))), "MESSAGE": message})
    return json.dumps(entry)
