"""PVE-format CT configs (``/etc/pve/lxc/VMID.conf``), rendered and parsed as PVE does.

The format (PVE::LXC::Config's ``write_pct_config``/``parse_pct_config``):

* the description first, one ``#`` line per description line, each encoded like
  ``PVE::Tools::encode_text`` (control and non-ASCII bytes and ``:`` as ``%XX``);
* then ``key: value`` lines, keys sorted, raw ``lxc.*`` keys last in their own order;
* ``[name]`` starts a snapshot section (``[pending]`` holds pending changes), each
  section in the same ``key: value`` form.

Property strings such as ``net0`` are ``key=value`` lists; PVE prints ``name`` first,
then the other keys sorted. The PVE API lab reads and rewrites these files, so the
parser keeps everything it does not know.
"""

import hashlib
import re
from urllib.parse import quote, unquote

from enva_lab import settings

_SECTION = re.compile(r"^\[([^\]]+)\]\s*$")
_LINE = re.compile(r"^([a-z][a-z0-9_.]*)\s*:\s*(.*?)\s*$")
# encode_text's safe set: 0x20-0x39 and 0x3b-0x7e (so ':' and anything outside printable ASCII are escaped)
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x3A)


class ConfigError(ValueError):
    """A config line that is not ``key: value``."""


class CtConfig:
    """A parsed CT config: ``settings`` (current values, strings), ``description``,
    and ``sections`` (``{name: {key: value}}``, snapshots and ``pending``)."""

    def __init__(self, settings_=None, description="", sections=None):
        self.settings = dict(settings_ or {})
        self.description = description
        self.sections = dict(sections or {})

    def int(self, key, default=None):
        """A numeric setting as an int (PVE's defaults apply when it is absent)."""
        value = self.settings.get(key)
        return default if value is None else int(value)

    def net(self, index=0):
        """``netN`` as a dict (empty when the CT has no such interface)."""
        value = self.settings.get("net%d" % index)
        return parse_property_string(value) if value else {}


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


def parse(text):
    """A CtConfig from the text of a ``VMID.conf``; ConfigError on a line that is not ``key: value``."""
    config = CtConfig()
    description = []
    current = config.settings
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        section = _SECTION.match(line)
        if section:
            current = config.sections.setdefault(section.group(1), {})
            continue
        if line.startswith("#"):
            if current is config.settings:
                description.append(decode_text(line[1:]))
            continue
        match = _LINE.match(line)
        if not match:
            raise ConfigError("line %d is not 'key: value': %r" % (number, line))
        current[match.group(1)] = match.group(2)
    config.description = "\n".join(description)
    return config


def _render_settings(values):
    keys = sorted(key for key in values if not key.startswith("lxc."))
    keys += [key for key in values if key.startswith("lxc.")]
    return "".join("%s: %s\n" % (key, values[key]) for key in keys)


def render(config):
    """The text PVE writes for ``config``."""
    text = "".join("#%s\n" % encode_text(line) for line in config.description.split("\n") if config.description)
    text += _render_settings(config.settings)
    for name, values in config.sections.items():
        text += "\n[%s]\n" % name + _render_settings(values)
    return text


def hwaddr_for(vmid):
    """A stable MAC in Proxmox's OUI for the CT (the same on every rebuild)."""
    digest = hashlib.sha256(b"enva-lab-ct-%d" % vmid).digest()
    return settings.HWADDR_PREFIX + "".join(":%02X" % byte for byte in digest[:3])


def from_declared(ct):
    """The CtConfig PVE would hold for a declared CT (a :class:`enva_lab.declared.DeclaredCt`)."""
    net = {
        "name": "eth0", "bridge": settings.BRIDGE, "gw": settings.HOST_IP, "hwaddr": hwaddr_for(ct.vmid),
        "ip": "%s/%d" % (ct.ip, settings.PREFIX), "type": "veth",
    }
    values = {
        "arch": settings.ARCH,
        "cores": str(ct.cores),
        "hostname": ct.hostname,
        "memory": str(ct.memory),
        "swap": str(ct.swap),
        "net0": print_property_string(net),
        "onboot": "1" if ct.onboot else "0",
        "ostype": "debian",
        "rootfs": "local:subvol-%d-disk-0,size=%s" % (ct.vmid, ct.disk),
    }
    if ct.tags:
        values["tags"] = ";".join(ct.tags)
    return CtConfig(values, description=ct.description)
