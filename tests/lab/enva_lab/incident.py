"""The incident on demand: ``labctl flood`` and ``labctl reproduce`` (the socat fork storm until the kernel
OOM-kills inside /lxc/2017, or the CT stalls at memory.high on a cgroup v2 host), and what the kernel log and
the pve-container@ journal said about it. A mixin of :class:`enva_lab.lab.Lab`."""

import datetime
import re
import resource
import time

from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB

from enva_lab import cgroup2, ct, flood, host, journal, procs, settings, tasklimit
from enva_lab.errors import LabError

_TASK_ROW = re.compile(r"kernel: \[\s*\d+\]\s")      # a row of the OOM report's task dump
TASK_LIMIT_GRACE = 30
"""Seconds the flood goes on after the kernel first refused a fork in the CT: long enough to see the storm end."""


def mib_text(value):
    return "?" if value is None else "%.1f MiB" % (value / MIB)


def kernel_epoch(line):
    """The time of a kern.log line (``2026-11-24T09:15:20.905415+0000 pve1 kernel: ...``) as an epoch."""
    return datetime.datetime.strptime(line.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def _room_for_sockets(max_open, spare=128):
    """Raise this process's open-file limit to what ``max_open`` sockets need (an SSH session on a node
    starts with 1,024); returns the sockets it may keep open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_open + spare if hard == resource.RLIM_INFINITY else min(hard, max_open + spare)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return max_open if soft == resource.RLIM_INFINITY else max(1, min(max_open, soft - spare))


class IncidentMixin:
    """Flood and reproduce on :class:`enva_lab.lab.Lab` (uses its layout, state, output and CT helpers)."""

    def flood(self, vmid, qps, seconds, max_open=4096, stop_on_oom=False, stop_on_stall=None, task_limit_from=None):
        """Flood a CT's port 53 from fresh sockets; prints progress each second; returns the summary.

        With ``stop_on_oom`` it stops at the first OOM kill (or the CT going down); with ``stop_on_stall``
        (seconds, cgroup v2) also once the CT has been stuck at memory.high that long. With
        ``task_limit_from`` (an offset in the kernel log copy) also ``TASK_LIMIT_GRACE`` s after the kernel
        first refused a fork in the CT (a task limit, not memory, ends that storm: :mod:`enva_lab.tasklimit`)."""
        self.preflight()
        self.require_ct(vmid)
        max_open = _room_for_sockets(max_open)
        ip = ct.status(self.layout, vmid)["ip"]
        baseline = host.ct_memory(vmid) or {}
        samples = []
        # The longest stretch at memory.high seen at any tick: the drain's late answers after the stop
        # must not shorten the stall that stopped the flood.
        longest_stall = [0.0]
        stall_at_longest = [None]
        limit_seen = {"offset": task_limit_from, "cgroups": [], "at": None}

        def tick(elapsed, stats, open_sockets):
            memory = host.ct_memory(vmid)
            commands = host.ct_processes(vmid) if memory else {}
            sample = {"t": round(elapsed, 1), "sent": stats.sent, "answered": stats.answered, "lost": stats.lost,
                      "open": open_sockets, "usage_bytes": memory and memory["usage_bytes"],
                      "oom_kill": memory and memory["oom_kill"], "socat": commands.get("socat", 0),
                      "state": "running" if memory else "down"}
            v2 = ""
            if memory and "events" in memory:       # cgroup v2: the stall at memory.high shows here first
                sample.update(high=memory["events"].get("high", 0), max=memory["events"].get("max", 0),
                              psi_some10=memory["pressure"].get("some", {}).get("avg10"),
                              psi_full10=memory["pressure"].get("full", {}).get("avg10"))
                v2 = ", events high %d max %d, PSI full %s%%" % (sample["high"], sample["max"], sample["psi_full10"])
            samples.append(sample)
            window = cgroup2.stall_window(samples)
            if window and window["seconds"] >= longest_stall[0]:
                longest_stall[0], stall_at_longest[0] = window["seconds"], window
            if limit_seen["offset"] is not None:
                lines, limit_seen["offset"] = self._kernel_lines_from(limit_seen["offset"])
                for cgroup in tasklimit.rejected_cgroups(lines, vmid):
                    if cgroup not in limit_seen["cgroups"]:
                        limit_seen["cgroups"].append(cgroup)
                        self.out("%5.1fs  the kernel refused a fork in %s (its task limit, pids.max)" % (elapsed, cgroup))
                if limit_seen["cgroups"] and limit_seen["at"] is None:
                    limit_seen["at"] = elapsed
            self.out("%5.1fs  sent %6d  answered %6d  lost %6d  open %5d  CT %d: %s of %s, %d socat, "
                     "%s OOM kills%s" % (elapsed, stats.sent, stats.answered, stats.lost, open_sockets, vmid,
                                         mib_text(sample["usage_bytes"]), mib_text(memory and memory["limit_bytes"]),
                                         sample["socat"], "?" if not memory else memory["oom_kill"], v2))

        def oom_seen():
            last = samples[-1] if samples else {}
            return last.get("state") == "down" or (last.get("oom_kill") or 0) > (baseline.get("oom_kill") or 0)

        def stop():
            if oom_seen():
                return True
            if limit_seen["at"] is not None and samples and samples[-1]["t"] - limit_seen["at"] >= TASK_LIMIT_GRACE:
                return True
            return bool(stop_on_stall) and longest_stall[0] >= stop_on_stall

        try:
            stats, elapsed = flood.run(ip, qps, seconds, max_open=max_open, on_tick=tick,
                                       stop_when=stop if stop_on_oom else None)
        except ValueError as error:
            raise LabError(str(error)) from None
        usages = [sample["usage_bytes"] for sample in samples if sample["usage_bytes"]]
        summary = {"vmid": vmid, "target": "%s:%d" % (ip, settings.DNS_PORT), "qps": qps, "seconds": seconds,
                   "elapsed": round(elapsed, 2), "achieved_qps": round(stats.sent / elapsed, 1) if elapsed else 0,
                   "memory_before_bytes": baseline.get("usage_bytes"), "memory_max_seen_bytes": max(usages or [0]),
                   "stall_seconds": longest_stall[0], "stall_window": stall_at_longest[0],
                   "task_limit_cgroups": limit_seen["cgroups"], "samples": samples}
        summary.update(stats.as_dict())
        return summary

    def reproduce(self, qps, max_seconds, down_wait=60, stall_hold=None):
        """Flood CT 2017 as found until the kernel OOM-kills inside /lxc/2017 (or, on cgroup v2, until it has
        been stuck at memory.high for ``stall_hold`` seconds with no answer); report what happened."""
        vmid = settings.HAPROXY_VMID
        self.preflight()
        self.require_up()
        self.check_as_found(vmid)
        if not procs.running(self.layout.pidfile("kmsg")):
            raise LabError("the kernel log follower is not running, so the OOM would go unseen; run labctl up")
        kern_offset = self.layout.kern_log.stat().st_size if self.layout.kern_log.exists() else 0
        journal_before = len(ct.journal_records(self.layout, vmid))
        before = host.ct_memory(vmid)
        self.out("reproduce: CT %d as found (socat forwarder), limit %s, %s used; flooding at %d q/s from fresh "
                 "source ports, for at most %d s" % (vmid, mib_text(before["limit_bytes"]), mib_text(before["usage_bytes"]),
                                                     qps, max_seconds))
        started = time.time()
        summary = self.flood(vmid, qps, max_seconds, stop_on_oom=True, stop_on_stall=stall_hold,
                             task_limit_from=kern_offset)
        oom_lines = self._wait_kernel_lines(kern_offset, r"oom_memcg=/lxc/%d(?![\w])" % vmid, 10)   # the first report's kill
        seconds_to_oom = round(kernel_epoch(oom_lines[0]) - started, 1) if oom_lines else None
        after = host.ct_memory(vmid) or {}
        stall = summary["stall_seconds"]
        deadline = time.monotonic() + (down_wait if oom_lines else 0)
        while ct.lxc_info(self.layout, vmid)[0] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.5)
        state = ct.lxc_info(self.layout, vmid)[0]
        if state == "stopped":
            self._wait_journal(vmid, journal_before, 10)
        kernel = self._kernel_lines(kern_offset)
        lifecycle = ct.journal_records(self.layout, vmid)[journal_before:]
        rejected = tasklimit.rejected_cgroups(kernel, vmid)
        task_limit = None
        if rejected and not oom_lines:
            task_limit = tasklimit.describe(rejected, v2=host.cgroup_backend() != "cgroup-v1")
            task_limit["unit_journal"] = self._unit_journal(vmid, task_limit["unit"])
        result = {
            "vmid": vmid, "qps": qps, "limit_bytes": before["limit_bytes"], "started": started,
            "oom": bool(oom_lines), "seconds_to_oom": seconds_to_oom, "ct_state": state,
            "sent": summary["sent"], "answered": summary["answered"], "lost": summary["lost"],
            "elapsed": summary["elapsed"],
            "max_socat": max([sample["socat"] for sample in summary["samples"]] or [0]),
            "memory_max_seen_bytes": summary["memory_max_seen_bytes"],
            "kernel_lines": kernel, "lifecycle": [item.get("MESSAGE", "") for item in lifecycle],
            "cgroup": host.cgroup_backend(), "stall": bool(stall_hold) and stall >= stall_hold, "stall_seconds": stall,
            "stall_window": summary["stall_window"], "task_limit": task_limit,
            "events_before": before.get("events"), "events_after": after.get("events"),
            "pressure_after": after.get("pressure"),
        }
        self._print_reproduction(result, lifecycle)
        return result

    def _kernel_lines_from(self, offset):
        """The kernel log copy's whole lines after ``offset`` and the offset after them."""
        if not self.layout.kern_log.exists():
            return [], offset
        with open(self.layout.kern_log, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        return data[:end].decode("utf-8", "replace").splitlines(), offset + end

    def _unit_journal(self, vmid, unit, lines=6):
        """The last lines the CT's journal has for ``unit`` (socat's own error), or what kept us from them."""
        if not unit:
            return []
        done = ct.attach(self.layout, vmid, ["journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-o",
                                             "short-iso"], timeout=30, check=False)
        text = (done.stdout or "").strip() or (done.stderr or "").strip()
        return text.splitlines()[-lines:]

    def _kernel_lines(self, offset):
        if not self.layout.kern_log.exists():
            return []
        with open(self.layout.kern_log, encoding="utf-8", errors="replace") as handle:
            handle.seek(offset)
            return handle.read().splitlines()

    def _wait_kernel_lines(self, offset, pattern, seconds):
        deadline = time.monotonic() + seconds
        while True:
            found = [line for line in self._kernel_lines(offset) if re.search(pattern, line)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def _wait_journal(self, vmid, before, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            messages = [item.get("MESSAGE", "") for item in ct.journal_records(self.layout, vmid)[before:]]
            if any("Deactivated successfully" in message or "Failed with result" in message for message in messages):
                return
            time.sleep(0.2)

    def _print_reproduction(self, result, lifecycle):
        key_words = ("invoked oom-killer", "oom-kill:", "Memory cgroup out of memory", "oom_reaper", "memory: usage",
                     "Tasks state", "entered disabled state", "entered blocking state", "left promiscuous",
                     "Memory cgroup stats for")
        dump_rows = sum(1 for line in result["kernel_lines"] if _TASK_ROW.search(line))
        shown = [line for line in result["kernel_lines"] if any(word in line for word in key_words)]
        self.out("")
        self.out("kernel (%s, %d lines since the flood began; %d task-dump rows not shown):"
                 % (self.layout.kern_log, len(result["kernel_lines"]), dump_rows))
        for line in shown[:60]:
            self.out("  " + line)
        if len(shown) > 60:
            self.out("  ... %d more" % (len(shown) - 60))
        self.out("")
        self.out("journalctl -u %s (the lab's journal):" % journal.unit_name(result["vmid"]))
        for line in journal.render(lifecycle).splitlines():
            self.out("  " + line)
        self.out("")
        if result["oom"]:
            self.out("reproduce: OOM in /lxc/%d after %s s at %d q/s (%d sent, %d answered, up to %d socat, %s seen); "
                     "CT %d is %s" % (result["vmid"], result["seconds_to_oom"], result["qps"], result["sent"],
                                      result["answered"], result["max_socat"],
                                      mib_text(result["memory_max_seen_bytes"]), result["vmid"], result["ct_state"]))
        if result.get("events_after"):
            events, pressure = result["events_after"], result["pressure_after"] or {}
            self.out("memory.events of /lxc/%d: high %s, max %s, oom %s, oom_kill %s; memory.pressure some avg10 "
                     "%s%%, full avg10 %s%%" % (result["vmid"], events.get("high"), events.get("max"), events.get("oom"),
                                                events.get("oom_kill"), pressure.get("some", {}).get("avg10"),
                                                pressure.get("full", {}).get("avg10")))
        if result["stall"] and not result["oom"]:
            window = result["stall_window"] or {}
            if window.get("shape") == "trickle":
                how = ("%d of %d queries answered in that time (a trickle), memory.pressure full avg10 %s-%s%% "
                       "throughout" % (window["answered"], window["sent"], window["psi_full10_min"],
                                       window["psi_full10_max"]))
            else:
                how = "%d of %d queries answered in that time" % (window.get("answered", 0), window.get("sent", 0))
            self.out("reproduce: CT %d STALLED at memory.high for %.0f s: %s, memory.events high +%d, no OOM line "
                     "(%d sent, %d answered in all, up to %d socat, %s seen)"
                     % (result["vmid"], result["stall_seconds"], how, window.get("high", 0), result["sent"],
                        result["answered"], result["max_socat"], mib_text(result["memory_max_seen_bytes"])))
        elif result.get("task_limit") and not result["oom"]:
            limit = result["task_limit"]
            for line in limit.get("unit_journal") or []:
                self.out("  CT %d journal: %s" % (result["vmid"], line))
            self.out(tasklimit.message(result["vmid"], limit, result["max_socat"],
                                       mib_text(result["memory_max_seen_bytes"]), mib_text(result["limit_bytes"])))
        elif not result["oom"]:
            self.out(no_oom_message(result))

    # -- down --------------------------------------------------------------------------------------


# A flood that ends with the CT this full and no OOM was cut short by its time bound, not by the rate
STILL_FILLING_SHARE = 0.8


def no_oom_message(result):
    """What reproduce says when its flood ended without an OOM, a stall or a task limit: still filling (the host
    forks socat slower than it takes to reach the limit in --max-seconds), or not filling at all."""
    seen, limit = result.get("memory_max_seen_bytes") or 0, result.get("limit_bytes") or 0
    if limit and seen >= STILL_FILLING_SHARE * limit:
        return ("reproduce: no OOM in /lxc/%d yet: it was still filling when the flood reached its time bound "
                "(%s of %s, %d socat, %d sent in %s s); this host forks socat slower than that fills it: give it "
                "more time (--max-seconds, at most %d)" % (
                    result["vmid"], mib_text(seen), mib_text(limit), result.get("max_socat") or 0, result["sent"],
                    result.get("elapsed") or "?", flood.MAX_SECONDS))
    return ("reproduce: no OOM in /lxc/%d within the flood (%d sent, %s of %s at most); raise --qps or "
            "--max-seconds" % (result["vmid"], result["sent"], mib_text(seen), mib_text(limit) if limit else "?"))
