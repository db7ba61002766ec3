# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PVE CT configuration files (``/etc/pve/lxc/VMID.conf``) and the facts of PVE that come with them.

The one parser and writer of the format, for the modules (on a node or the controller) and for the
lab, which imports it with Debian's python3 (so: standard library only). The format, as
PVE::LXC::Config's ``parse_pct_config``/``write_pct_config`` have it:

* the description first, one ``#`` line per description line, each encoded like
  ``PVE::Tools::encode_text`` (control and non-ASCII bytes and ``:`` as ``%XX``);
* then ``key: value`` lines, keys sorted, raw ``lxc.*`` keys last in their own order;
* ``[name]`` starts a snapshot section; ``[pending]`` holds pending changes (its ``delete:`` lists
  the keys to be removed), each section in the same ``key: value`` form.

Property strings such as ``net0`` are ``key=value`` lists; PVE prints the default key first, then
``name``, then the other keys sorted.
"""

from __future__ import absolute_import, division, print_function

import hashlib
import os
import re

from urllib.parse import quote, unquote

from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB

__metaclass__ = type

# What PVE assumes when a CT config has no memory or swap line, in MiB (PVE::LXC::Config's defaults).
DEFAULT_MIB = {"memory": 512, "swap": 512}
# The PVE API's minimums for memory and swap (PUT /nodes/{node}/lxc/{vmid}/config), in MiB.
MINIMUM_MIB = {"memory": 16, "swap": 0}

_SECTION = re.compile(r"^\[([^\]]+)\]\s*$")
_LINE = re.compile(r"^([a-z][a-z0-9_.]*)\s*:\s*(.*?)\s*$")
_CONF_NAME = re.compile(r"^(\d+)\.conf$")
_LIST_SPLIT = re.compile(r"[,;\s]+")
# encode_text's safe set: 0x20-0x39 and 0x3b-0x7e (so ':' and anything outside printable ASCII are escaped)
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x3A)


class ConfigError(ValueError):
    """A config line that is not ``key: value`` (only raised when parsing strictly)."""


class CtConfig:
    """A parsed CT config: ``settings`` (current values, strings), ``description``, ``sections``
    (``{name: {key: value}}``, snapshots and ``pending``) and ``digest`` (PVE's: the SHA-1 of the text)."""

    def __init__(self, settings=None, description="", sections=None, digest=None):
        self.settings = dict(settings or {})
        self.description = description
        self.sections = dict(sections or {})
        self.digest = digest

    def int(self, key, default=None):
        """A numeric setting as an int, ``default`` when it is absent."""
        value = self.settings.get(key)
        return default if value is None else int(value)

    def size_mib(self, key):
        """``memory`` or ``swap`` in MiB, with PVE's default when the config has none (None if unreadable)."""
        value = self.settings.get(key)
        if value is None:
            return DEFAULT_MIB[key]
        try:
            return int(value)
        except ValueError:
            return None

    def net(self, index=0):
        """``netN`` as a dict (empty when the CT has no such interface)."""
        value = self.settings.get("net%d" % index)
        return parse_property_string(value) if value else {}

    @property
    def pending(self):
        """The pending changes (``[pending]`` without its ``delete`` key)."""
        return dict((key, value) for key, value in self.sections.get("pending", {}).items() if key != "delete")

    @property
    def pending_delete(self):
        """The keys a pending change deletes."""
        return split_list(self.sections.get("pending", {}).get("delete", ""))

    def merged(self, with_pending=True):
        """The current settings, with the pending changes applied when ``with_pending``."""
        values = dict(self.settings)
        if with_pending:
            values.update(self.pending)
            for key in self.pending_delete:
                values.pop(key, None)
        return values


def split_list(value):
    """PVE's list of config keys (``memory,swap`` or ``memory;swap`` or spaces) as a list."""
    return [item for item in _LIST_SPLIT.split(value or "") if item]


def encode_text(text):
    """PVE::Tools::encode_text: escape control and non-ASCII bytes and ``:`` as ``%XX``."""
    return quote(text, safe=_SAFE)


def decode_text(text):
    return unquote(text)


def parse_property_string(value):
    """``name=eth0,bridge=vmbr0`` -> ``{"name": "eth0", "bridge": "vmbr0"}`` (order kept).

    A part without ``=`` is the format's default key (``rootfs: local:subvol-1-disk-0,size=8G``
    gives ``{"volume": "local:subvol-1-disk-0", "size": "8G"}``).
    """
    result = {}
    for part in value.split(","):
        if not part:
            continue
        key, sep, item = part.partition("=")
        if sep:
            result[key] = item
        else:
            result["volume"] = key
    return result


def print_property_string(props):
    """The inverse of :func:`parse_property_string`, in PVE's order: the default key, ``name``, the rest sorted."""
    parts = []
    if "volume" in props:
        parts.append(props["volume"])
    if "name" in props:
        parts.append("name=%s" % props["name"])
    parts.extend("%s=%s" % (key, props[key]) for key in sorted(props) if key not in ("volume", "name"))
    return ",".join(parts)


def digest(text):
    """PVE's config digest: the SHA-1 of the file's text."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def parse(text, strict=False):
    """A CtConfig from the text of a ``VMID.conf``.

    Lines that are not ``key: value`` are skipped, as PVE's reader of a node's files does, or raise
    ConfigError naming the line when ``strict``.
    """
    config = CtConfig(digest=digest(text))
    description = []
    current = config.settings
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        section = _SECTION.match(line)
        if section:
            current = config.sections.setdefault(section.group(1), {})
            continue
        if line.lstrip().startswith("#"):
            if current is config.settings:
                description.append(decode_text(line.lstrip()[1:]))
            continue
        match = _LINE.match(line.strip())
        if not match:
            if strict:
                raise ConfigError("line %d is not 'key: value': %r" % (number, line))
            continue
        current[match.group(1)] = match.group(2)
    config.description = "\n".join(description)
    return config


def _render_settings(values):
    keys = sorted(key for key in values if not key.startswith("lxc."))
    keys += [key for key in values if key.startswith("lxc.")]
    return "".join("%s: %s\n" % (key, values[key]) for key in keys)


def render(config):
    """The text PVE writes for ``config`` (sections in their order, ``[pending]`` first as PVE keeps it)."""
    text = "".join("#%s\n" % encode_text(line) for line in config.description.split("\n") if config.description)
    text += _render_settings(config.settings)
    names = sorted(config.sections, key=lambda name: name != "pending")
    for name in names:
        if config.sections[name]:
            text += "\n[%s]\n" % name + _render_settings(config.sections[name])
    return text


def edit(config, updates=None, deletions=(), pending=None, pending_delete=()):
    """A new CtConfig: ``updates`` set and ``deletions`` removed in the current settings, ``[pending]``
    replaced by ``pending``/``pending_delete``, description and snapshots kept."""
    settings = dict(config.settings)
    for key in deletions:
        settings.pop(key, None)
    settings.update(updates or {})
    sections = dict((name, dict(values)) for name, values in config.sections.items() if name != "pending")
    section = dict(pending or {})
    if pending_delete:
        section["delete"] = ",".join(pending_delete)
    if section:
        sections["pending"] = section
    return CtConfig(settings, config.description, sections)


def memory_high_bytes(memory_mib):
    """The ``memory.high`` PVE writes on cgroup v2 for ``memory`` MiB: ``memory`` x 1016 KiB below
    16 GiB, ``memory`` - 128 MiB from 16 GiB on (pve-container's PVE::LXC)."""
    if memory_mib >= 16 * 1024:
        return (memory_mib - 128) * MIB
    return memory_mib * 1016 * 1024


def config_vmid(file_name):
    """The VMID of a config file name (``2017.conf`` -> 2017), None for other names."""
    match = _CONF_NAME.match(file_name)
    return int(match.group(1)) if match else None


def summarize_config(path, config):
    """What the evidence needs of a CT config: memory/swap in MiB (PVE's defaults applied), hostname."""
    return {
        "path": path,
        "hostname": config.settings.get("hostname"),
        "memory_mb": config.size_mib("memory"),
        "swap_mb": config.size_mib("swap"),
        "onboot": config.settings.get("onboot") == "1",
    }


def read_ct_configs(config_dir):
    """``{vmid: summary}`` of every ``VMID.conf`` in ``config_dir``; empty when it does not exist."""
    configs = {}
    try:
        names = os.listdir(config_dir)
    except (IOError, OSError):
        return configs
    for name in names:
        vmid = config_vmid(name)
        if vmid is None:
            continue
        path = os.path.join(config_dir, name)
        try:
            with open(path) as handle:
                config = parse(handle.read())
        except (IOError, OSError):
            continue
        configs[vmid] = summarize_config(path, config)
    return configs
