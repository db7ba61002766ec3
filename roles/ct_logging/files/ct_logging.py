# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""enva.pve.ct_logging's helper, run in the CT with its python3 (stdlib only, Python 3.7+).

    ct_logging.py snapshot [--file PATH ...]          the logging stack now, as JSON
    ct_logging.py measure --window S [--before FILE] [--file PATH ...]
                                                     two snapshots S seconds apart (or FILE and now) and
                                                     what was logged between them, as JSON
    ct_logging.py haproxy --config PATH [--dontlog-normal] [--level LEVEL]
                                                     HAProxy's config with its request logging lowered,
                                                     as JSON {"content", "changed", "notes"}; reads only

A snapshot holds: the journal's cursor and its files' bytes (persistent /var/log/journal, volatile
/run/log/journal), each syslog file's size and inode, the RSS of journald and the syslog daemon
(/proc/PID/status), how much of the journal and log files is in the page cache (mincore), and the
memory.stat of the CT's own memory cgroup (v1 or v2). ``measure`` counts the journal entries between
the two cursors per unit (and what journald says it suppressed), and the lines and bytes appended to
each file: lines kept per second and bytes written, per target.
"""

import argparse
import ctypes
import json
import mmap
import os
import re
import subprocess
import sys
import time

DEFAULT_FILES = ("/var/log/syslog", "/var/log/messages", "/var/log/daemon.log", "/var/log/user.log",
                 "/var/log/haproxy.log", "/var/log/auth.log", "/var/log/kern.log", "/var/log/cron.log")
JOURNAL_DIRS = {"persistent": "/var/log/journal", "volatile": "/run/log/journal"}
LOGGING_COMMANDS = ("systemd-journal", "rsyslogd", "syslog-ng", "syslogd")
STATUS_FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")
CGROUP_STATS = ("/sys/fs/cgroup/memory/memory.stat", "/sys/fs/cgroup/memory.stat")
MEMORY_STAT_KEYS = ("cache", "mapped_file", "shmem", "total_cache", "total_mapped_file", "total_shmem",
                    "file", "file_mapped", "anon", "rss", "total_rss")
SUPPRESSED = re.compile(r"Suppressed (\d+) messages from (\S+)")
MAX_WINDOW = 600
HAPROXY_SECTIONS = ("global", "defaults", "frontend", "backend", "listen", "resolvers", "peers", "userlist",
                    "program", "http-errors", "ring", "cache", "mailers", "log-forward", "crt-store", "traces")
FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
              "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
              "local5", "local6", "local7")
LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def _run(argv):
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def resident_bytes(path):
    """Bytes of ``path`` in the page cache now (mmap + mincore through libc); None when unknown."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return 0
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long)
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte))
        page = mmap.PAGESIZE
        pages = (size + page - 1) // page
        fd = os.open(path, os.O_RDONLY)
        try:
            address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if address in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                vec = (ctypes.c_ubyte * pages)()
                if libc.mincore(address, size, vec) != 0:
                    return None
                return min(size, sum(byte & 1 for byte in vec) * page)
            finally:
                libc.munmap(address, size)
        finally:
            os.close(fd)
    except (OSError, ValueError, AttributeError):
        return None


def _tree_bytes(root):
    """(files, bytes on disk, bytes in the page cache) of the journal files under ``root``."""
    count = disk = cached = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            if not name.endswith((".journal", ".journal~")):
                continue
            path = os.path.join(directory, name)
            try:
                disk += os.stat(path).st_blocks * 512
            except OSError:
                continue
            count += 1
            cached += resident_bytes(path) or 0
    return count, disk, cached


def journal_state():
    """The journal's cursor now and its files per storage; None values where journalctl is absent."""
    state = {"cursor": None, "storage": {}}
    out = _run(["journalctl", "--quiet", "-n", "0", "--show-cursor", "--no-pager"])
    if out is not None:
        match = re.search(r"-- cursor: (\S+)", out)
        state["cursor"] = match.group(1) if match else None
    for storage, root in JOURNAL_DIRS.items():
        files, disk, cached = _tree_bytes(root)
        state["storage"][storage] = {"path": root, "exists": os.path.isdir(root), "files": files,
                                     "bytes": disk, "cached_bytes": cached}
    return state


def file_state(paths):
    result = {}
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue
        result[path] = {"size": info.st_size, "inode": info.st_ino, "cached_bytes": resident_bytes(path)}
    return result


def logging_processes(proc="/proc"):
    """``[{"pid", "name", "rss_bytes", "rss_anon_bytes", "rss_file_bytes", "rss_shmem_bytes"}]``."""
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "comm")) as handle:
                name = handle.read().strip()
            if name not in LOGGING_COMMANDS:
                continue
            with open(os.path.join(proc, entry, "status")) as handle:
                status = handle.read()
        except OSError:
            continue
        item = {"pid": int(entry), "name": name}
        for field in STATUS_FIELDS:
            match = re.search(r"(?m)^%s:\s+(\d+) kB" % field, status)
            key = {"VmRSS": "rss_bytes"}.get(field, "rss_%s_bytes" % field[3:].lower())
            item[key] = int(match.group(1)) * 1024 if match else None
        found.append(item)
    return sorted(found, key=lambda item: item["pid"])


def memory_stat(paths=CGROUP_STATS):
    """The CT's own memory cgroup (its cgroup namespace's root): the page cache keys of memory.stat."""
    for path in paths:
        try:
            with open(path) as handle:
                text = handle.read()
        except OSError:
            continue
        stat = {}
        for line in text.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0] in MEMORY_STAT_KEYS and fields[1].isdigit():
                stat[fields[0]] = int(fields[1])
        version = "v2" if "file" in stat else "v1"
        total = (lambda key: stat.get("total_" + key, stat.get(key))) if version == "v1" else stat.get
        keys = ("cache", "mapped_file", "shmem") if version == "v1" else ("file", "file_mapped", "shmem")
        return {"path": path, "cgroup_version": version, "file_bytes": total(keys[0]),
                "file_mapped_bytes": total(keys[1]), "shmem_bytes": total(keys[2])}
    return None


def snapshot(paths):
    processes = logging_processes()
    return {"time": time.time(), "journal": journal_state(), "files": file_state(paths), "processes": processes,
            "rss_bytes": sum(item["rss_bytes"] or 0 for item in processes), "cgroup": memory_stat()}


def count_lines(path, since, now):
    """``(lines, bytes)`` appended to ``path`` between two file states (a rotated or new file: all of it)."""
    if now is None:
        return 0, 0
    offset = since["size"] if since and since["inode"] == now["inode"] and since["size"] <= now["size"] else 0
    lines = 0
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            remaining = now["size"] - offset
            while remaining > 0:
                chunk = handle.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                lines += chunk.count(b"\n")
                remaining -= len(chunk)
    except OSError:
        return 0, 0
    return lines, now["size"] - offset


def journal_entries(cursor):
    """Entries after ``cursor``: ``({unit: lines}, bytes of their messages, {unit: suppressed})``."""
    by_unit, suppressed, message_bytes = {}, {}, 0
    if cursor is None:
        return None, None, None
    out = subprocess.Popen(["journalctl", "--quiet", "--no-pager", "--after-cursor", cursor, "-o", "json",
                            "--output-fields", "_SYSTEMD_UNIT,SYSLOG_IDENTIFIER,MESSAGE,_TRANSPORT"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
    for line in out.stdout:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        unit = entry.get("_SYSTEMD_UNIT") or entry.get("SYSLOG_IDENTIFIER") or entry.get("_TRANSPORT") or "?"
        by_unit[unit] = by_unit.get(unit, 0) + 1
        message = entry.get("MESSAGE")
        if isinstance(message, str):
            message_bytes += len(message.encode("utf-8", "replace"))
            match = SUPPRESSED.search(message)
            if match and unit == "systemd-journald.service":
                suppressed[match.group(2)] = suppressed.get(match.group(2), 0) + int(match.group(1))
    out.wait()
    return by_unit, message_bytes, suppressed


def compare(before, after):
    """What was logged between two snapshots: lines kept per second and bytes written, per target."""
    seconds = max(after["time"] - before["time"], 1e-3)
    by_unit, message_bytes, suppressed = journal_entries(before["journal"]["cursor"])
    targets = {}
    if by_unit is not None:
        disk = sum(after["journal"]["storage"][key]["bytes"] - before["journal"]["storage"][key]["bytes"]
                   for key in JOURNAL_DIRS)
        lines = sum(by_unit.values())
        targets["journal"] = {"lines": lines, "lines_per_s": round(lines / seconds, 1), "bytes": message_bytes,
                              "disk_bytes": disk}
    for path, now in after["files"].items():
        lines, written = count_lines(path, before["files"].get(path), now)
        targets[path] = {"lines": lines, "lines_per_s": round(lines / seconds, 1), "bytes": written}
    top = sorted((by_unit or {}).items(), key=lambda item: (-item[1], item[0]))
    return {
        "window_seconds": round(seconds, 1),
        "targets": targets,
        "lines_kept": sum(item["lines"] for item in targets.values()),
        "lines_kept_per_s": round(sum(item["lines"] for item in targets.values()) / seconds, 1),
        "bytes_written": sum(item["bytes"] for item in targets.values()),
        "journal_by_unit": [{"unit": unit, "lines": count, "lines_per_s": round(count / seconds, 1)}
                            for unit, count in top[:15]],
        "journal_suppressed": suppressed,
        "rss_bytes": after["rss_bytes"],
        "cgroup": after["cgroup"],
        "journal_bytes": sum(item["bytes"] for item in after["journal"]["storage"].values()),
        "journal_cached_bytes": sum(item["cached_bytes"] for item in after["journal"]["storage"].values()),
        "files_cached_bytes": sum(item["cached_bytes"] or 0 for item in after["files"].values()),
        "before": before,
        "after": after,
    }


# -- HAProxy: request logging lowered in global and defaults, frontends and backends untouched --------------

def _sections(lines):
    """``[(keyword, name, first line index, end index)]`` of the config's sections."""
    found = []
    for index, line in enumerate(lines):
        words = line.split()
        if words and not line[:1].isspace() and words[0] in HAPROXY_SECTIONS:
            if found:
                found[-1][3] = index
            found.append([words[0], " ".join(words[1:2]), index, len(lines)])
    return [tuple(item) for item in found]


def _with_level(line, level):
    """A ``log <target> ... <facility> [<level> [<minlevel>]]`` line with its maximum level set, its spacing
    and comment kept; None when the line is not such a line."""
    body = line.split("#", 1)[0]
    tokens = list(re.finditer(r"\S+", body))
    words = [token.group() for token in tokens]
    if len(words) < 3 or words[0] != "log" or words[1] == "global":
        return None
    facility = next((index for index in range(2, len(words)) if words[index] in FACILITIES), None)
    if facility is None:
        return None
    after = tokens[facility + 1:]
    if after and after[0].group() in LEVELS:
        start, end = after[0].span()   # a minimum level after it only caps severities: kept
        return line[:start] + level + line[end:]
    end = tokens[facility].end()
    return line[:end] + " " + level + line[end:]


def edit_haproxy(text, dontlog_normal=False, level=None):
    """``(new text, notes)``: ``option dontlog-normal`` in each defaults section, the maximum level on the
    ``log`` lines of global and defaults; frontends, backends and listen sections are never edited."""
    lines = text.splitlines()
    notes = []
    sections = _sections(lines)
    inserts = []
    for keyword, name, start, end in sections:
        body = range(start + 1, end)
        if level and keyword in ("global", "defaults"):
            for index in body:
                new = _with_level(lines[index], level)
                if new is not None:
                    lines[index] = new
        if keyword in ("frontend", "listen") and level:
            if any(lines[index].split()[:1] == ["log"] and lines[index].split()[1:2] != ["global"] for index in body):
                notes.append("%s %s has log lines of its own: their level is left as it is" % (keyword, name))
        if dontlog_normal and keyword in ("frontend", "listen"):
            if any(lines[index].split()[:3] == ["no", "option", "dontlog-normal"] for index in body):
                notes.append("%s %s says no option dontlog-normal: it keeps logging every request" % (keyword, name))
        if dontlog_normal and keyword == "defaults":
            words = [lines[index].split() for index in body]
            if ["option", "dontlog-normal"] in [item[:2] for item in words]:
                continue
            negated = [index for index in body if lines[index].split()[:3] == ["no", "option", "dontlog-normal"]]
            content = [index for index in body if lines[index].strip() and not lines[index].lstrip().startswith("#")]
            sample = lines[content[0]] if content else "\tx\tx"
            indent = sample[:len(sample) - len(sample.lstrip())]
            separator = "\t" if "\t" in sample.strip() else " "
            new_line = indent + "option" + separator + "dontlog-normal"
            if negated:
                lines[negated[0]] = new_line
            else:
                options = [index for index in content if lines[index].split()[:1] == ["option"]]
                inserts.append(((options or content or [start])[-1] + 1, new_line))
    for index, line in sorted(inserts, reverse=True):
        lines.insert(index, line)
    if dontlog_normal and not any(item[0] == "defaults" for item in sections):
        notes.append("no defaults section: option dontlog-normal not set (it would go in the frontends, "
                     "which this role does not edit)")
    if level and not any(item[0] == "global" for item in sections):
        notes.append("no global section: no log level set")
    new_text = "\n".join(lines) + ("\n" if text.endswith("\n") or not text else "")
    return new_text, notes


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command")
    snap = sub.add_parser("snapshot")
    snap.add_argument("--file", action="append", default=None)
    snap.add_argument("--save", help="also write it here (for measure --before)")
    measure = sub.add_parser("measure")
    measure.add_argument("--window", type=float, default=10.0)
    measure.add_argument("--before", help="a snapshot saved earlier (instead of one taken now)")
    measure.add_argument("--file", action="append", default=None)
    measure.add_argument("--save", help="also write the result here")
    haproxy = sub.add_parser("haproxy")
    haproxy.add_argument("--config", required=True)
    haproxy.add_argument("--dontlog-normal", action="store_true")
    haproxy.add_argument("--level", choices=LEVELS)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.command == "snapshot":
        result = snapshot(args.file or DEFAULT_FILES)
        if args.save:
            with open(args.save, "w") as handle:
                json.dump(result, handle)
    elif args.command == "measure":
        if not 0 <= args.window <= MAX_WINDOW:
            print("ct_logging.py: --window must be 0 to %d seconds" % MAX_WINDOW, file=sys.stderr)
            return 2
        paths = args.file or DEFAULT_FILES
        if args.before:
            with open(args.before) as handle:
                before = json.load(handle)
        else:
            before = snapshot(paths)
            time.sleep(args.window)
        result = compare(before, snapshot(paths))
        if args.save:
            with open(args.save, "w") as handle:
                json.dump(result, handle)
    elif args.command == "haproxy":
        with open(args.config) as handle:
            text = handle.read()
        content, notes = edit_haproxy(text, args.dontlog_normal, args.level)
        result = {"content": content, "changed": content != text, "notes": notes}
    else:
        _parser().print_help(sys.stderr)
        return 2
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
