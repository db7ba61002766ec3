"""``labctl down``: the plan of what to take away (enva_lab.cleanup) carried out, step by step. A mixin of
:class:`enva_lab.lab.Lab`."""

import os
import signal
import time

from enva_lab import cleanup, declared, dns, host, procs, settings
from enva_lab.errors import LabError


DOWN_SECONDS = 30
"""How long ``down`` keeps planning and acting before what is left is an error."""


class TeardownMixin:
    """Down on :class:`enva_lab.lab.Lab`."""

    def down_facts(self):
        """What is there now, for :func:`enva_lab.cleanup.plan_down`."""
        layout = self.layout
        processes = []
        if layout.run.is_dir():
            for pidfile in sorted(layout.run.glob("*.pid")):
                entry = procs.read_pidfile(pidfile)
                if procs.alive(entry):
                    processes.append((pidfile.stem, entry[0], entry[1]))
        running = []
        if layout.lxcpath.is_dir():
            done = host.run(["lxc-ls", "-P", layout.lxcpath, "--active", "-1"], check=False)
            running = [int(name) for name in done.stdout.split() if name.isdigit()]
        labdir = str(layout.root)
        strays = [(pid, argv) for pid, argv in procs.processes_mentioning(labdir) if cleanup.is_lab_process(argv)]
        mounts = []
        with open("/proc/self/mountinfo") as handle:
            for line in handle:
                point = line.split()[4].replace("\\040", " ")
                if point == labdir or point.startswith(labdir + "/"):
                    mounts.append(point)
        links = {name: {"alias": link.get("ifalias"), "kind": host.link_kind(link)}
                 for name, link in host.links().items()}
        state = self.load_state()
        vmids = set(self.known_vmids()) | set(state.get("cts", []))
        try:
            vmids |= {item.vmid for item in declared.read_text(settings.SAMPLE.read_text(), str(settings.SAMPLE))}
        except (OSError, declared.DeclaredFileError):
            pass
        cgroups = [str(path.relative_to(settings.CGROUP_ROOT)) for hierarchy in host.v1_hierarchies()
                   for parent in settings.LXC_CGROUP_PARENTS for path in host.cgroup_dirs(hierarchy, parent)]
        names = {str(vmid) for vmid in vmids}
        leftovers = set()
        for relative in cgroups:                # processes in a lab CT's cgroup (lxc/VMID and below)
            parts = relative.split("/")
            if "lxc" in parts[:-1] and parts[parts.index("lxc") + 1] in names:
                vmid = int(parts[parts.index("lxc") + 1])
                leftovers |= {(vmid, pid) for pid in host.cgroup_pids(settings.CGROUP_ROOT / relative)}
        dns_dir = dns.unbound_dir(layout.root)
        return {"labdir": labdir, "labdir_exists": layout.root.exists(), "cache": str(layout.cache),
                "dns_dir": str(dns_dir), "dns_dir_exists": dns_dir.is_dir(),
                "cache_exists": layout.cache.exists(), "processes": processes, "running_cts": running,
                "stray_processes": strays, "ct_leftovers": sorted(leftovers), "mounts": mounts, "links": links,
                "lab_vmids": sorted(vmids), "cgroups": cgroups, "state": state}

    def down(self, purge=False):
        """Remove every CT, link, cgroup, process and file of the lab; the cache too with ``purge``.

        Plans from what is there, does it, and looks again (a stopped CT's cgroups go away by
        themselves, a killed supervisor leaves its lxc-start, a CT still stopping holds its cgroups a
        moment): rounds for up to ``DOWN_SECONDS``, then anything of the lab still there is an error.
        """
        if os.geteuid() != 0:
            raise LabError("labctl down needs root; run it as root")
        if self.layout.root.exists():
            self.lock()
        carried = None
        done = {}
        deadline = time.monotonic() + DOWN_SECONDS
        pause = 0.2
        while True:
            facts = self.down_facts()
            if carried is None:
                carried = {"state": {"cgroup_parents_before": facts["state"].get("cgroup_parents_before", [])},
                           "lab_vmids": facts["lab_vmids"]}
            else:
                facts.update(state=carried["state"], lab_vmids=sorted(set(facts["lab_vmids"]) | set(carried["lab_vmids"])))
            actions = [action for action in cleanup.plan_down(facts, purge=purge) if not self._foreign_cgroup(action)]
            if not actions:
                break
            if time.monotonic() > deadline:
                raise LabError("down left %s behind; run labctl down again, or remove them by hand"
                               % ", ".join("%s %s" % (action.kind, action.target) for action in actions))
            changed = False
            for action in actions:
                if self._do(action):
                    changed = True
                    done[action.kind] = done.get(action.kind, 0) + 1
            if not changed:
                time.sleep(pause)           # a CT still stopping: its cgroups go when LXC is done
                pause = min(pause * 2, 2.0)
        if done.get("rmdir_cgroup"):
            self.out("down: removed %d cgroups (the CTs' leftovers and LXC's empty lxc, lxc.monitor, lxc.pivot)"
                     % done["rmdir_cgroup"])
        self.out("down: the lab is gone%s" % ("; the rootfs cache too" if purge else
                                              "; the rootfs cache stays in %s" % self.layout.cache))

    @staticmethod
    def _foreign_cgroup(action):
        """A parent cgroup that still holds other cgroups (someone else's containers) is not ours to remove."""
        if action.kind != "rmdir_cgroup":
            return False
        path = settings.CGROUP_ROOT / action.target
        return path.is_dir() and any(child.is_dir() for child in path.iterdir())

    def _do(self, action):
        """Carry out one step of the plan; True when it changed something (and says so, cgroups aside)."""
        kind, target = action.kind, action.target
        if kind == "stop_process":
            acted = procs.stop(target, timeout=30)
            target = target[0]
        elif kind == "stop_ct":
            acted = host.run(["lxc-stop", "-n", target, "-P", self.layout.lxcpath, "--kill"], check=False,
                             timeout=60).returncode == 0
        elif kind == "kill_process":
            acted = procs.stop((target, procs.start_time(target)), timeout=10)
        elif kind == "kill_ct_process":
            acted = procs.stop((target, procs.start_time(target)), timeout=5, sig=signal.SIGKILL)
        elif kind == "umount":
            acted = host.run(["umount", target], check=False).returncode == 0 or \
                host.run(["umount", "-l", target], check=False).returncode == 0
        elif kind == "delete_link":
            acted = host.run(["ip", "link", "del", target], check=False).returncode == 0
        elif kind == "rmdir_cgroup":
            try:
                os.rmdir(settings.CGROUP_ROOT / target)
            except OSError:
                return False
            return True
        elif kind == "restore_sysctl":
            host.sysctl_write(target, int(action.detail))
            acted = True
        else:
            acted = host.run(["rm", "-rf", "--one-file-system", target], timeout=600).returncode == 0
        if acted:
            self.out("down: %s %s (%s)" % (kind.replace("_", " "), target, action.detail))
        return acted

    # -- journal and exec -----------------------------------------------------------------------
