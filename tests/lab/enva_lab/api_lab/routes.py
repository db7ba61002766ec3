"""The endpoints of the PVE API lab: one function per (method, path template) of the schema subset."""

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ansible_collections.enva.pve.plugins.module_utils import cgroup_memory, pve_ct_config
from ansible_collections.enva.pve.plugins.module_utils.pve_ct_config import DEFAULT_MIB

from enva_lab.api_lab.cgroups import CgroupWriteError
from enva_lab.api_lab.cluster import offline_entries
from enva_lab.api_lab.errors import ApiError, param_error
from enva_lab.api_lab.nodes import Task, ct_status, host_memory, host_uptime, write_atomically
from enva_lab.api_lab.schema import typed_config

# GET /version as each release answers it (pve-manager's PVE::pvecfg::version_info; repoid is the 16-hex
# commit pve-manager was built from: 9.1.1 is pve-manager commit f4d3f125ffae50e9, "bump version to 9.1.1").
PVE_VERSIONS = {
    8: {"version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325", "console": "html5"},
    9: {"version": "9.1.1", "release": "9.1", "repoid": "f4d3f125ffae50e9", "console": "html5"},
}
PVE_VERSION = PVE_VERSIONS[9]
# Settings a running CT takes at once (PVE's $LXC_FASTPLUG_OPTIONS); memory and swap are hot-plugged.
FASTPLUG = {"description", "onboot", "startup", "protection", "hostname", "hookscript", "cores", "tags", "lock"}
HOTPLUG = {"memory", "swap"}
PUT_META = {"node", "vmid", "digest", "delete", "revert"}


def api_version(server, _authid, _params):
    return dict(PVE_VERSIONS[server.lab.pve])


def api_ticket_get(_server, _authid, _params):
    return None


def api_ticket_post(server, _authid, params):
    username = params["username"]
    if "@" not in username and params.get("realm"):
        username = "%s@%s" % (username, params["realm"])
    ticket, csrf = server.access.create_ticket(username, params["password"])
    return {"username": username, "ticket": ticket, "CSRFPreventionToken": csrf, "clustername": "enva-lab",
            "cap": {}}


def api_permissions(server, authid, params):
    """What the caller (or a token of its own, or anyone for root@pam) holds: ``{path: {privilege: 1}}``."""
    who = params.get("userid") or authid
    if who != authid and authid != "root@pam" and not who.startswith(authid + "!"):
        server.access.check(authid, "/access", ["Sys.Audit"])
    paths = [params["path"]] if params.get("path") else sorted(
        {"/", "/vms", "/nodes"} | {entry["path"] for entry in server.access.acl})
    return {path: {privilege: 1 for privilege in sorted(server.access.privileges(who, path))} for path in paths}


def _node_entry(server, node):
    memory = host_memory()
    entry = {"node": node.name, "id": "node/%s" % node.name, "type": "node", "status": "online", "level": "",
             "cpu": 0.0, "maxcpu": os.cpu_count() or 1, "mem": memory["used"], "maxmem": memory["total"],
             "uptime": host_uptime(), "ssl_fingerprint": getattr(server, "fingerprint", "")}
    return entry


def _peer_entries(server, params, path):
    """``{peer: (own entries, or None when it did not answer)}`` of a cluster-wide list, fetched in parallel."""
    peers = params.get("__peers")
    if not peers or not peers.peers:
        return {}
    ticket = server.access.internal_ticket()
    names = sorted(peers.peers)
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return dict(zip(names, pool.map(lambda name: peers.own_entries(name, path, ticket), names)))


def api_nodes(server, authid, params):
    entries = [_node_entry(server, node) for node in server.lab.nodes.values()]
    for name, answer in _peer_entries(server, params, "/nodes").items():
        entries.extend(answer if answer is not None else [{"node": name, "id": "node/%s" % name, "type": "node",
                                                           "status": "offline", "level": ""}])
    return entries


def api_node_status(server, _authid, params):
    node = server.lab.node(params["node"])
    uname = os.uname()
    try:
        loadavg = Path("/proc/loadavg").read_text(encoding="ascii").split()[:3]
    except OSError:
        loadavg = ["0.00", "0.00", "0.00"]
    return {"cpu": 0.0, "uptime": host_uptime(), "loadavg": loadavg, "memory": host_memory(),
            "cpuinfo": {"cpus": os.cpu_count() or 1, "cores": os.cpu_count() or 1, "sockets": 1, "model": "lab"},
            "current-kernel": {"sysname": uname.sysname, "release": uname.release, "version": uname.version,
                               "machine": uname.machine},
            "kversion": "%s %s" % (uname.sysname, uname.release), "boot-info": {"mode": "legacy-bios"},
            "pveversion": "pve-manager/%(version)s/%(repoid)s (enva lab)" % PVE_VERSIONS[server.lab.pve],
            "rootfs": {"total": 0, "used": 0, "avail": 0, "free": 0}, "node": node.name}


def api_cluster_status(server, _authid, params):
    names = sorted(set(server.lab.nodes) | set((params.get("__peers").peers if params.get("__peers") else {})))
    answers = _peer_entries(server, params, "/cluster/status")
    entries = [{"type": "cluster", "id": "cluster", "name": "enva-lab", "nodes": len(names),
                "quorate": int(sum(1 for name in names if answers.get(name, True) is not None) * 2 > len(names)),
                "version": len(names)}]
    for index, name in enumerate(names, 1):
        entries.append({"type": "node", "id": "node/%s" % name, "name": name, "nodeid": index,
                        "online": int(answers.get(name, True) is not None), "local": int(name in server.lab.nodes),
                        "ip": "127.0.0.1", "level": ""})
    return entries


def _vm_entry(node, vmid, status):
    entry = {"id": "lxc/%d" % vmid, "type": "lxc", "node": node.name, "maxcpu": status["cpus"]}
    entry.update({key: status[key] for key in ("vmid", "name", "status", "uptime", "cpu", "mem", "maxmem",
                                               "disk", "maxdisk", "diskread", "diskwrite", "netin", "netout",
                                               "template") if key in status})
    for key in ("tags", "lock"):
        if key in status:
            entry[key] = status[key]
    return entry


def _visible_cts(server, authid, node):
    for vmid in node.vmids():
        if not server.access.check(authid, "/vms/%d" % vmid, ["VM.Audit"], noerr=True):
            continue
        try:
            yield vmid, ct_status(node, vmid, pve=server.lab.pve)
        except (ApiError, OSError):
            continue


def api_cluster_resources(server, authid, params):
    kind = params.get("type")
    resources = []
    for node in server.lab.nodes.values():
        if kind in (None, "node") and server.access.check(authid, "/nodes/%s" % node.name, ["Sys.Audit"], noerr=True):
            entry = _node_entry(server, node)
            entry.pop("ssl_fingerprint")
            entry["cgroup-mode"] = 2 if cgroup_memory.layout(str(node.cgroup_root))[0] == "v2" else 1
            resources.append(entry)
        if kind in (None, "vm"):
            resources.extend(_vm_entry(node, vmid, status) for vmid, status in _visible_cts(server, authid, node))
    for name, answer in _peer_entries(server, params, "/cluster/resources").items():
        if answer is None:
            nodes, cts = offline_entries(name, *params["__peers"].last_seen(name))
            answer = nodes + cts
        for entry in answer:
            if entry.get("node") != name:
                continue
            if entry.get("type") == "node":
                allowed = kind in (None, "node") and server.access.check(
                    authid, "/nodes/%s" % name, ["Sys.Audit"], noerr=True)
            else:
                allowed = kind in (None, "vm") and server.access.check(
                    authid, "/vms/%s" % entry.get("vmid"), ["VM.Audit"], noerr=True)
            if allowed:
                resources.append(entry)
    return resources


def api_lxc_list(server, authid, params):
    node = server.lab.node(params["node"])
    result = []
    for vmid, status in _visible_cts(server, authid, node):
        entry = {key: value for key, value in status.items() if key not in ("ha", "type")}
        result.append(entry)
    return result


def _put_properties(server):
    return server.schema.paths["/nodes/{node}/lxc/{vmid}/config"]["PUT"]["parameters"]["properties"]


def api_config_get(server, _authid, params):
    node = server.lab.node(params["node"])
    config = node.load(params["vmid"])
    if params.get("snapshot"):
        raise ApiError(500, "snapshot '%s' does not exist" % params["snapshot"])
    properties = server.schema.paths["/nodes/{node}/lxc/{vmid}/config"]["GET"]["returns"]["properties"]
    values = typed_config(config.merged(with_pending=not params.get("current")), properties)
    if config.description:
        values["description"] = config.description
    values["digest"] = config.digest
    return values


def api_pending(server, _authid, params):
    node = server.lab.node(params["node"])
    config = node.load(params["vmid"])
    properties = _put_properties(server)
    current = typed_config(config.settings, properties)
    pending = typed_config(config.pending, properties)
    keys = sorted(set(current) | set(pending) | set(config.pending_delete))
    result = [{"key": "digest", "value": config.digest}]
    for key in keys:
        item = {"key": key}
        if key in current:
            item["value"] = current[key]
        if key in pending:
            item["pending"] = pending[key]
        if key in config.pending_delete:
            item["delete"] = 1
        result.append(item)
    return result


def _modify_permissions(server, authid, vmid, keys):
    """PVE's check_ct_modify_config_perm: the privilege each changed key needs on /vms/VMID."""
    for key in sorted(keys):
        if key in ("cores", "cpuunits", "cpulimit"):
            privilege = "VM.Config.CPU"
        elif key == "rootfs" or re.match(r"^mp\d+$", key):
            privilege = "VM.Config.Disk"
        elif key in ("memory", "swap"):
            privilege = "VM.Config.Memory"
        elif re.match(r"^net\d+$", key) or key in ("nameserver", "searchdomain", "hostname"):
            privilege = "VM.Config.Network"
        else:
            privilege = "VM.Config.Options"
        server.access.check(authid, "/vms/%d" % vmid, [privilege])


def api_config_put(server, authid, params):
    node = server.lab.node(params["node"])
    vmid = params["vmid"]
    updates = {key: value for key, value in params.items() if key not in PUT_META}
    deletions = pve_ct_config.split_list(params.get("delete"))
    reverts = pve_ct_config.split_list(params.get("revert"))
    if not updates and not deletions and not reverts:
        raise ApiError(400, "no options specified")
    clash = sorted(set(updates) & set(deletions))
    if clash:
        raise param_error({"delete": "cannot set and delete '%s' at the same time" % clash[0]})
    with server.lab.lock:
        config = node.load(vmid)
        if config.settings.get("lock"):
            raise ApiError(500, "CT is locked (%s)" % config.settings["lock"])
        if params.get("digest") and params["digest"] != config.digest:
            raise ApiError(500, "detected modified configuration - file changed by other user? Try again.")
        _modify_permissions(server, authid, vmid, set(updates) | set(deletions) | set(reverts))
        pending = dict(config.pending)
        pending_delete = [key for key in config.pending_delete if key not in reverts]
        for key in reverts:
            pending.pop(key, None)
        cgroup = node.cgroup(vmid)
        apply_now, apply_deletions = {}, []
        for key, value in updates.items():
            pending.pop(key, None)
            if not cgroup.running or key in FASTPLUG or key in HOTPLUG:
                apply_now[key] = value
            else:
                pending[key] = value
        for key in deletions:
            pending.pop(key, None)
            if not cgroup.running or key in FASTPLUG or key in HOTPLUG:
                apply_deletions.append(key)
            elif key not in pending_delete:
                pending_delete.append(key)
        hot = (set(apply_now) | set(apply_deletions)) & HOTPLUG
        if cgroup.running and hot:
            memory, swap = (int(apply_now.get(key, DEFAULT_MIB[key] if key in apply_deletions else config.size_mib(key)))
                            for key in ("memory", "swap"))
            try:
                cgroup.set_limits(memory, swap, server.lab.mounts)
            except CgroupWriteError as error:
                # PVE collects hot-plug errors and refuses the whole update without writing the config.
                raise param_error({sorted(hot)[0]: "unable to hotplug %s: %s" % (sorted(hot)[0], error)}) from None
        edited = pve_ct_config.edit(config, {key: str(value) for key, value in apply_now.items()},
                                    apply_deletions, pending, pending_delete)
        write_atomically(node.config_path(vmid), pve_ct_config.render(edited))
        server.log_line("config of CT %d on %s changed by %s: set %s, deleted %s" % (
            vmid, node.name, authid, ", ".join("%s=%s" % item for item in sorted(apply_now.items())) or "-",
            ", ".join(apply_deletions) or "-"))
    return None


def api_status_current(server, _authid, params):
    node = server.lab.node(params["node"])
    return ct_status(node, params["vmid"], pve=server.lab.pve)


RRD_RESOLUTION = {"hour": 60, "day": 1800, "week": 10800, "month": 43200, "year": 604800}


def api_rrddata(server, _authid, params):
    node = server.lab.node(params["node"])
    vmid = params["vmid"]
    node.load(vmid)
    step = RRD_RESOLUTION[params["timeframe"]]
    history = list(server.lab.samples.get((node.name, vmid), ()))
    end = int(time.time()) // step * step
    points = []
    for slot in range(end - 69 * step, end + step, step):
        inside = [values for stamp, values in history if slot <= stamp < slot + step]
        point = {"time": slot}
        for key in sorted({key for values in inside for key in values}):
            series = [values[key] for values in inside if key in values]
            point[key] = max(series) if params.get("cf") == "MAX" else sum(series) / len(series)
        points.append(point)
    return points


def _lifecycle(action, kind):
    def run(server, authid, params):
        node = server.lab.node(params["node"])
        vmid = params["vmid"]
        node.load(vmid)
        running = node.cgroup(vmid).running
        if action == "start" and running:
            raise ApiError(500, "CT %d already running" % vmid)
        if action == "stop" and not running:
            raise ApiError(500, "CT %d not running" % vmid)
        if node.labctl is None:
            raise ApiError(501, "starting and stopping CTs is not available for synthetic CTs")
        task = Task(node.name, kind, vmid, authid, [str(node.labctl), action, str(vmid)],
                    server.lab.labdir / "api" / "tasks")
        server.lab.tasks[task.upid] = task
        task.thread.start()
        return task.upid
    return run


def api_task_status(server, _authid, params):
    task = server.lab.tasks.get(params["upid"])
    if task is None:
        raise ApiError(500, "no such task")
    return dict(task.info)


ROUTES = {
    ("GET", "/version"): api_version,
    ("GET", "/access/permissions"): api_permissions,
    ("GET", "/access/ticket"): api_ticket_get,
    ("POST", "/access/ticket"): api_ticket_post,
    ("GET", "/nodes"): api_nodes,
    ("GET", "/nodes/{node}/status"): api_node_status,
    ("GET", "/cluster/status"): api_cluster_status,
    ("GET", "/cluster/resources"): api_cluster_resources,
    ("GET", "/nodes/{node}/lxc"): api_lxc_list,
    ("GET", "/nodes/{node}/lxc/{vmid}/config"): api_config_get,
    ("PUT", "/nodes/{node}/lxc/{vmid}/config"): api_config_put,
    ("GET", "/nodes/{node}/lxc/{vmid}/pending"): api_pending,
    ("GET", "/nodes/{node}/lxc/{vmid}/status/current"): api_status_current,
    ("GET", "/nodes/{node}/lxc/{vmid}/rrddata"): api_rrddata,
    ("POST", "/nodes/{node}/lxc/{vmid}/status/start"): _lifecycle("start", "vzstart"),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/stop"): _lifecycle("stop", "vzstop"),
    ("GET", "/nodes/{node}/tasks/{upid}/status"): api_task_status,
}
