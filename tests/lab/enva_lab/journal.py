"""``pve-container@VMID`` lifecycle records, as systemd 252 (PVE 8) writes them to the journal.

On a PVE node ``pct start`` runs ``pve-container@VMID.service`` (``Type=simple``,
``ExecStart=/usr/bin/lxc-start -F -n VMID``, ``Description=PVE LXC Container: %i``) and
systemd logs its life. The lab has no journald, so its start/stop path writes the same
records to ``<labdir>/journal/pve-container@VMID.jsonl``, one ``journalctl -o json``
object per line, and :func:`render` prints them the way ``journalctl -u`` does.

The wording is systemd 252's (``StatusUnitFormat=combined``):

* start: ``Starting pve-container@2017.service - PVE LXC Container: 2017...``, then
  ``Started ...`` as soon as the main process runs (``Type=simple``);
* the main process ends by itself: ``pve-container@2017.service: Deactivated successfully.``
  when it exits 0, else ``Main process exited, code=exited, status=1/FAILURE`` (or
  ``code=killed, status=9/KILL``) and ``Failed with result 'exit-code'.`` (or ``'signal'``);
  then ``Consumed 1min 2.345s CPU time.``;
* a requested stop: ``Stopping ...``, the result as above, ``Stopped ...``, ``Consumed ...``.
"""

import json
import os
import signal
import time
import uuid

from enva_lab import settings

DESCRIPTION = "PVE LXC Container: %d"
# systemd's catalog IDs (sd-messages.h)
MESSAGE_IDS = {
    "starting": "7d4958e842da4a758f6c1cdc7b36dcc5",
    "started": "39f53479d3a045ac8e11786248231fbf",
    "stopping": "de5b426a63be47a7b6ac3eaac82e2f6f",
    "stopped": "9d1aaa27d60140bd96365438aad20286",
    "success": "7ad2d189f7e94e70a38c781354912448",
    "failure_result": "d9b373ed55a64feb8242e02dbe79a49c",
    "process_exit": "98e322203f7a4ed290d09fe03c09fe15",
    "resources": "ae8f7b866b0347b9af31fe1c80b127c0",
}
PRIORITY = {"notice": 5, "info": 6, "warning": 4}
# exit_status_to_string(status, EXIT_STATUS_FULL): the libc, LSB and BSD (sysexits.h) names
EXIT_STATUS = {
    0: "SUCCESS", 1: "FAILURE", 2: "INVALIDARGUMENT", 3: "NOTIMPLEMENTED", 4: "NOPERMISSION",
    5: "NOTINSTALLED", 6: "NOTCONFIGURED", 7: "NOTRUNNING",
    64: "USAGE", 65: "DATAERR", 66: "NOINPUT", 67: "NOUSER", 68: "NOHOST", 69: "UNAVAILABLE",
    70: "SOFTWARE", 71: "OSERR", 72: "OSFILE", 73: "CANTCREAT", 74: "IOERR", 75: "TEMPFAIL",
    76: "PROTOCOL", 77: "NOPERM", 78: "CONFIG",
}
_TIMESPAN_UNITS = (
    ("y", 31557600 * 10 ** 6), ("month", 2629800 * 10 ** 6), ("w", 604800 * 10 ** 6), ("d", 86400 * 10 ** 6),
    ("h", 3600 * 10 ** 6), ("min", 60 * 10 ** 6), ("s", 10 ** 6), ("ms", 10 ** 3), ("us", 1),
)


def unit_name(vmid):
    return "pve-container@%d.service" % vmid


def format_timespan(usec, accuracy=1000):
    """systemd's ``format_timespan()``: ``3h 12min 4.551s``, ``312ms``, ``0``.

    Below a minute the last unit gets decimals down to ``accuracy`` (truncated, zeros kept).
    """
    if usec <= 0:
        return "0"
    parts = []
    remaining = usec
    for suffix, unit in _TIMESPAN_UNITS:
        if remaining <= 0 or (remaining < accuracy and parts):
            break
        if remaining < unit:
            continue
        whole, rest = divmod(remaining, unit)
        if remaining < 60 * 10 ** 6 and rest > 0:
            digits = len(str(unit)) - 1 - (len(str(accuracy)) - 1)
            if digits > 0:
                parts.append("%d.%0*d%s" % (whole, digits, rest // accuracy, suffix))
                remaining = 0
                continue
        parts.append("%d%s" % (whole, suffix))
        remaining = rest
    return " ".join(parts)


def exit_description(code, status):
    """``code=exited, status=1/FAILURE`` or ``code=killed, status=9/KILL`` (systemd's words)."""
    if code == "exited":
        name = EXIT_STATUS.get(status, "n/a")
    else:
        try:
            name = signal.Signals(status).name[3:]
        except ValueError:
            name = "n/a"
    return "code=%s, status=%d/%s" % (code, status, name)


def wait_status(status):
    """``(code, status)`` in systemd's terms from an ``os.waitpid`` status."""
    if os.WIFSIGNALED(status):
        return ("dumped" if os.WCOREDUMP(status) else "killed"), os.WTERMSIG(status)
    return "exited", os.WEXITSTATUS(status)


def lifecycle_messages(vmid, event, **detail):
    """``[(kind, priority, message, extra fields)]`` systemd logs for one lifecycle ``event``.

    ``start``; ``exit`` (the main process ended: ``code``, ``status``, ``cpu_usec``,
    ``requested`` when a stop was asked for); ``stopping``.
    """
    unit = unit_name(vmid)
    title = "%s - %s" % (unit, DESCRIPTION % vmid)
    if event == "start":
        return [("starting", "info", "Starting %s..." % title, {"JOB_TYPE": "start"}),
                ("started", "info", "Started %s." % title, {"JOB_TYPE": "start", "JOB_RESULT": "done"})]
    if event == "stopping":
        return [("stopping", "info", "Stopping %s..." % title, {"JOB_TYPE": "stop"})]
    if event != "exit":
        raise ValueError("unknown lifecycle event %r" % event)
    code, status = detail["code"], detail["status"]
    if code == "exited" and status == 0:
        records = [("success", "info", "%s: Deactivated successfully." % unit, {})]
    else:
        result = "exit-code" if code == "exited" else ("core-dump" if code == "dumped" else "signal")
        records = [
            ("process_exit", "notice", "%s: Main process exited, %s" % (unit, exit_description(code, status)),
             {"EXIT_CODE": code, "EXIT_STATUS": str(status), "COMMAND": "ExecStart"}),
            ("failure_result", "warning", "%s: Failed with result '%s'." % (unit, result), {"UNIT_RESULT": result}),
        ]
    if detail.get("requested"):
        records.append(("stopped", "info", "Stopped %s." % title, {"JOB_TYPE": "stop", "JOB_RESULT": "done"}))
    cpu_usec = detail.get("cpu_usec") or 0
    if cpu_usec > 0:
        records.append(("resources", "info", "%s: Consumed %s CPU time." % (unit, format_timespan(cpu_usec)),
                        {"CPU_USAGE_NSEC": str(cpu_usec * 1000)}))
    return records


def _read_id(path):
    try:
        with open(path) as handle:
            return handle.read().strip().replace("-", "")
    except OSError:
        return None


def record(vmid, kind, priority, message, extra, realtime_usec, monotonic_usec, invocation_id, boot_id,
           machine_id=None):
    """One journal record (a dict in ``journalctl -o json``'s shape) of PID 1 about the CT's unit."""
    fields = {
        "__REALTIME_TIMESTAMP": str(realtime_usec),
        "__MONOTONIC_TIMESTAMP": str(monotonic_usec),
        "_BOOT_ID": boot_id,
        "PRIORITY": str(PRIORITY[priority]),
        "SYSLOG_FACILITY": "3",
        "SYSLOG_IDENTIFIER": "systemd",
        "UNIT": unit_name(vmid),
        "INVOCATION_ID": invocation_id,
        "MESSAGE_ID": MESSAGE_IDS[kind],
        "MESSAGE": message,
    }
    fields.update(extra)
    fields.update({
        "_PID": "1", "_UID": "0", "_GID": "0", "_COMM": "systemd", "_EXE": "/usr/lib/systemd/systemd",
        "_CMDLINE": "/sbin/init", "_SYSTEMD_CGROUP": "/init.scope", "_SYSTEMD_UNIT": "init.scope",
        "_SYSTEMD_SLICE": "-.slice", "_SOURCE_REALTIME_TIMESTAMP": str(realtime_usec),
    })
    if machine_id:
        fields["_MACHINE_ID"] = machine_id
    fields.update({"_HOSTNAME": settings.NODE, "_TRANSPORT": "journal"})
    return fields


def dumps(fields):
    """A record as one line of ``journalctl -o json`` (compact, as systemd 252 prints it)."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


class Journal:
    """The lab's lifecycle journal: appends records for a CT's unit, one JSON object per line."""

    def __init__(self, layout):
        self.layout = layout
        self.boot_id = _read_id("/proc/sys/kernel/random/boot_id") or uuid.uuid4().hex
        self.machine_id = _read_id("/etc/machine-id")

    def write(self, vmid, event, invocation_id, **detail):
        """Append the records of ``event`` (see :func:`lifecycle_messages`); returns them."""
        self.layout.journal.mkdir(parents=True, exist_ok=True)
        records = []
        for kind, priority, message, extra in lifecycle_messages(vmid, event, **detail):
            realtime = time.clock_gettime_ns(time.CLOCK_REALTIME) // 1000
            monotonic = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            records.append(record(vmid, kind, priority, message, extra, realtime, monotonic, invocation_id,
                                  self.boot_id, self.machine_id))
        data = "".join(dumps(item) + "\n" for item in records).encode()
        fd = os.open(self.layout.journal_file(vmid), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return records


def read(path):
    """The records of a journal file (a missing file has none)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []


def timestamp(realtime_usec, style, tz=None):
    """A journal timestamp as ``journalctl -o STYLE`` prints it (systemd 252: ``+0100``, no colon)."""
    seconds, usec = divmod(int(realtime_usec), 10 ** 6)
    local = time.localtime(seconds) if tz is None else time.gmtime(seconds + tz)
    offset = local.tm_gmtoff if tz is None else tz
    zone = "%s%02d%02d" % ("-" if offset < 0 else "+", abs(offset) // 3600, abs(offset) % 3600 // 60)
    if style == "short":
        return time.strftime("%b %d %H:%M:%S", local)
    if style == "short-iso":
        return time.strftime("%Y-%m-%dT%H:%M:%S", local) + zone
    if style == "short-iso-precise":
        return time.strftime("%Y-%m-%dT%H:%M:%S", local) + ".%06d" % usec + zone
    if style == "short-precise":
        return time.strftime("%b %d %H:%M:%S", local) + ".%06d" % usec
    raise ValueError("unknown output style %r" % style)


def render_line(fields, style="short", tz=None):
    """One record as a ``journalctl -o STYLE`` line: ``Nov 24 00:35:38 pve1 systemd[1]: Started ...``."""
    if style == "json":
        return dumps(fields)
    ident = fields.get("SYSLOG_IDENTIFIER") or fields.get("_COMM") or "unknown"
    pid = fields.get("_PID")
    return "%s %s %s%s: %s" % (timestamp(fields["__REALTIME_TIMESTAMP"], style, tz), fields.get("_HOSTNAME", ""),
                               ident, "[%s]" % pid if pid else "", fields.get("MESSAGE", ""))


def render(records, style="short", tz=None):
    """What ``journalctl -u pve-container@VMID -o STYLE`` prints for these records."""
    if not records:
        return "-- No entries --\n" if style != "json" else ""
    ordered = sorted(records, key=lambda fields: int(fields["__REALTIME_TIMESTAMP"]))
    return "".join(render_line(fields, style, tz) + "\n" for fields in ordered)
