"""The site's declared file (``enva.yaml``): the CTs the lab builds, read, extended and restored as text.

The lab builds from its own copy (``<labdir>/enva.yaml``); playbooks edit that copy, and the
tracked sample (``tests/lab/enva.yaml``) is never written. Edits here are textual so that the
file's comments and layout stay as the site wrote them:

* :func:`append_entries` adds generated CTs at the end of the ``containers:`` list (which
  must be the file's last top-level key), in the style of the entries already there;
* :func:`restore_entry` puts one CT's entry back as the sample has it (``labctl reset``).
"""

import ipaddress
import re

import yaml
from ansible_collections.enva.pve.plugins.module_utils.pve_ct_config import DEFAULT_MIB

from enva_lab import settings

ENTRY_KEYS = ("vmid", "hostname", "role", "memory", "swap", "cores", "onboot", "ip", "description", "tags",
              "release")
_ITEM = re.compile(r"^(?P<indent>[ ]*)- (?:vmid:\s*(?P<vmid>\d+))?")


class DeclaredFileError(ValueError):
    """The declared file cannot be used; the message names the file and what to fix."""


class DeclaredCt:
    """One declared CT, with the lab's defaults filled in."""

    def __init__(self, vmid, hostname, ip, memory=DEFAULT_MIB["memory"], swap=DEFAULT_MIB["swap"], cores=1,
                 onboot=True, description="",
                 tags=(), role=None, disk="8G", release=settings.RELEASE, release_note=None):
        self.vmid = vmid
        self.hostname = hostname
        self.ip = ip
        self.memory = memory
        self.swap = swap
        self.cores = cores
        self.onboot = onboot
        self.description = description
        self.tags = tuple(tags)
        self.role = role
        self.disk = disk
        self.release = release         # the Debian release of the CT's rootfs (bookworm unless declared)
        self.release_note = release_note   # set when the declared release is one the lab does not build

    def __repr__(self):
        return "DeclaredCt(%d, %r, %s)" % (self.vmid, self.hostname, self.ip)

    @property
    def is_haproxy(self):
        return self.vmid == settings.HAPROXY_VMID


def _int(entry, key, where, default):
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DeclaredFileError("%s: %s must be a whole number, not %r" % (where, key, value))
    return value


def _ip(value, where):
    address = str(value).split("/", maxsplit=1)[0]
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise DeclaredFileError("%s: ip %r is not an IPv4 address" % (where, value)) from None
    if parsed not in ipaddress.ip_network(settings.SUBNET) or address in (settings.HOST_IP, settings.DNS_IP):
        raise DeclaredFileError("%s: ip %s is not a CT address on the lab bridge (%s, but not %s or %s)"
                                % (where, address, settings.SUBNET, settings.HOST_IP, settings.DNS_IP))
    return address


def _tags(value, where):
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(tag for tag in re.split(r"[;,\s]+", value) if tag)
    if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        return tuple(value)
    raise DeclaredFileError("%s: tags must be a list of words or a 'a;b' string, not %r" % (where, value))


def ct_from_entry(entry, where):
    """A DeclaredCt from one mapping of the ``containers:`` list; DeclaredFileError names what is wrong."""
    if not isinstance(entry, dict):
        raise DeclaredFileError("%s: each container must be a mapping, not %r" % (where, entry))
    vmid = _int(entry, "vmid", where, None)
    where = "%s (vmid %s)" % (where, vmid)
    hostname = entry.get("hostname")
    if not isinstance(hostname, str) or not re.match(r"^[a-z0-9][a-z0-9-]*$", hostname):
        raise DeclaredFileError("%s: hostname must be a DNS label such as 'web', not %r" % (where, hostname))
    if "ip" not in entry:
        raise DeclaredFileError("%s: no ip (its address on %s, such as 10.217.0.17)" % (where, settings.BRIDGE))
    onboot = entry.get("onboot", 1)
    try:
        release, release_note = settings.ct_release(entry.get("release", settings.RELEASE))
    except ValueError as error:
        raise DeclaredFileError("%s: %s" % (where, error)) from None
    return DeclaredCt(
        vmid=vmid, hostname=hostname, ip=_ip(entry["ip"], where),
        memory=_int(entry, "memory", where, DEFAULT_MIB["memory"]),
        swap=_int(entry, "swap", where, DEFAULT_MIB["swap"]),
        cores=_int(entry, "cores", where, 1), onboot=bool(onboot),
        description=str(entry.get("description") or ""), tags=_tags(entry.get("tags"), where),
        role=entry.get("role"), disk=str(entry.get("disk", "8G")), release=release,
        release_note=release_note and "%s: %s" % (where, release_note))


def read_text(text, name):
    """The declared CTs of a file's text, in file order; DeclaredFileError when the file cannot be used."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DeclaredFileError("%s is not valid YAML: %s" % (name, str(error).replace("\n", " "))) from None
    if not isinstance(document, dict) or not isinstance(document.get("containers"), list):
        raise DeclaredFileError("%s has no top-level 'containers:' list" % name)
    cts = [ct_from_entry(entry, "%s containers[%d]" % (name, index))
           for index, entry in enumerate(document["containers"])]
    seen = {}
    for ct in cts:
        for key in ("vmid", "ip", "hostname"):
            value = getattr(ct, key)
            if (key, value) in seen:
                raise DeclaredFileError("%s: %s %s is declared twice (vmid %d and %d)"
                                        % (name, key, value, seen[(key, value)], ct.vmid))
            seen[(key, value)] = ct.vmid
    return cts


def ordinary_ip(vmid):
    """The address of a generated ordinary CT: 2104 -> 10.217.0.104."""
    return "10.217.0.%d" % (vmid - 2000)


def plan_lab_cts(declared, ordinary, only=None):
    """The CTs ``up --cts ORDINARY`` runs: CT 2017, then ``ordinary`` others (the declared ones first).
    With ``only`` (``up --only``, a cluster node's share): exactly those declared VMIDs, CT 2017 or not.

    Returns ``(cts, generated)``: every CT to run, and those of them the file does not declare yet
    (to be appended with :func:`append_entries`).
    """
    by_vmid = {ct.vmid: ct for ct in declared}
    if only is not None:
        missing = [vmid for vmid in only if vmid not in by_vmid]
        if missing:
            raise DeclaredFileError("--only names CT %s, which the declared file does not declare"
                                    % ", ".join(map(str, missing)))
        return [by_vmid[vmid] for vmid in only], []
    if settings.HAPROXY_VMID not in by_vmid:
        raise DeclaredFileError("the declared file has no CT %d (the HAProxy CT the lab is about); restore it from %s"
                                % (settings.HAPROXY_VMID, settings.SAMPLE))
    others = [ct for ct in declared if ct.vmid != settings.HAPROXY_VMID][:ordinary]
    generated = []
    used_vmids = set(by_vmid)
    used_ips = {ct.ip for ct in declared}
    free = (vmid for vmid in settings.ORDINARY_VMIDS
            if vmid not in used_vmids and ordinary_ip(vmid) not in used_ips)
    while len(others) + len(generated) < ordinary:
        vmid = next(free, None)
        if vmid is None:
            raise DeclaredFileError("no room for %d ordinary CTs: VMIDs %d-%d (and their addresses) are taken"
                                    % (ordinary, settings.ORDINARY_VMIDS[0], settings.ORDINARY_VMIDS[-1]))
        generated.append(DeclaredCt(
            vmid=vmid, hostname="ct%d" % vmid, ip=ordinary_ip(vmid), memory=DEFAULT_MIB["memory"],
            swap=DEFAULT_MIB["swap"],
            cores=1, description="Fleet CT %d (added by labctl up --cts)" % vmid, tags=("lab", "fleet"),
            role="app"))
    return [by_vmid[settings.HAPROXY_VMID]] + others + generated, generated


def entry_text(ct, indent):
    """A ``containers:`` list item for ``ct`` at ``indent`` spaces, in the sample's style."""
    pad = " " * (indent + 2)
    lines = ["%s- vmid: %d" % (" " * indent, ct.vmid),
             "%shostname: %s" % (pad, ct.hostname),
             "%srole: %s" % (pad, ct.role),
             "%smemory: %d" % (pad, ct.memory),
             "%sswap: %d" % (pad, ct.swap),
             "%scores: %d" % (pad, ct.cores),
             "%sonboot: %d" % (pad, 1 if ct.onboot else 0),
             "%sip: %s" % (pad, ct.ip),
             "%sdescription: %s" % (pad, ct.description),
             "%stags: [%s]" % (pad, ", ".join(ct.tags))]
    if ct.release != settings.RELEASE:
        lines.append("%srelease: %s" % (pad, ct.release))
    return "\n".join(lines) + "\n"


def _items(lines):
    """``[(vmid or None, indent, first line index)]`` of the list items in ``lines``."""
    found = []
    for index, line in enumerate(lines):
        match = _ITEM.match(line)
        if match:
            found.append((int(match.group("vmid")) if match.group("vmid") else None, len(match.group("indent")),
                          index))
    return found


def append_entries(text, cts, name):
    """``text`` with entries for ``cts`` appended to its ``containers:`` list (which must come last)."""
    if not cts:
        return text
    items = [item for item in _items(text.splitlines()) if item[0] is not None]
    indent = items[-1][1] if items else 2
    new = text if text.endswith("\n") or not text else text + "\n"
    new += "".join("\n" + entry_text(ct, indent) for ct in cts)     # a blank line between entries, as the sample has
    refusal = "cannot add CTs to %s: its containers: list must be the last thing in the file" % name
    try:
        after = {ct.vmid for ct in read_text(new, name)}
    except DeclaredFileError:
        raise DeclaredFileError(refusal) from None
    if not {ct.vmid for ct in cts} <= after:
        raise DeclaredFileError(refusal)
    return new


def _entry_span(lines, vmid):
    """``(start, end)`` line indexes of ``vmid``'s list item (comments before the next item excluded)."""
    items = _items(lines)
    for item_vmid, indent, start in items:
        if item_vmid != vmid:
            continue
        end = len(lines)
        for index in range(start + 1, len(lines)):
            line = lines[index]
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if len(line) - len(line.lstrip(" ")) <= indent:
                end = index
                break
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].strip().startswith("#")):
            end -= 1
        return start, end
    return None


def restore_entry(text, sample_text, vmid):
    """``text`` with ``vmid``'s entry replaced by the sample's; unchanged when either file lacks it."""
    lines = text.splitlines(keepends=True)
    sample_lines = sample_text.splitlines(keepends=True)
    span, sample_span = _entry_span(lines, vmid), _entry_span(sample_lines, vmid)
    if span is None or sample_span is None:
        return text
    replacement = sample_lines[sample_span[0]:sample_span[1]]
    if replacement and not replacement[-1].endswith("\n"):
        replacement[-1] += "\n"
    return "".join(lines[:span[0]] + replacement + lines[span[1]:])
