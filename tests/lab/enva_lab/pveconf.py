"""The lab's side of PVE-format CT configs: what PVE would write for a declared CT.

Parsing and writing ``/etc/pve/lxc/VMID.conf`` is the collection's own
(``plugins/module_utils/pve_ct_config.py``, imported here as the modules import it);
this module only adds what is particular to the lab: stable MAC addresses and the
config of a CT from the declared file.
"""

import hashlib

from ansible_collections.enva.pve.plugins.module_utils import pve_ct_config

from enva_lab import settings


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
        "net0": pve_ct_config.print_property_string(net),
        "onboot": "1" if ct.onboot else "0",
        "ostype": "debian",
        "rootfs": "local:subvol-%d-disk-0,size=%s" % (ct.vmid, ct.disk),
    }
    if ct.tags:
        values["tags"] = ";".join(ct.tags)
    return pve_ct_config.CtConfig(values, description=ct.description)
