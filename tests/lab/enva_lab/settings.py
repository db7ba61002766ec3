"""The lab's fixed facts (docs/development.md, "The lab's fixed facts") and where its files live."""

import os
import re
import socket
from pathlib import Path


BRIDGE = "vmbr0"
BRIDGE_ALIAS = "enva-lab"              # marks the bridge as the lab's (``ip link set vmbr0 alias``)
SUBNET = "10.217.0.0/24"
HOST_IP = "10.217.0.1"
PREFIX = 24
DNS_IP = "10.217.0.53"                 # the SiNS stand-in (unbound), a second address on the bridge
DNS_PORT = 53
ZONE = "lab.enva.test"
HAPROXY_VMID = 2017
ORDINARY_VMIDS = range(2101, 2200)     # ordinary CTs: 2101 -> 10.217.0.101, ...
HWADDR_PREFIX = "BC:24:11"             # Proxmox's OUI, as PVE gives CTs
PVE_PID_MAX = 4194304                  # what systemd sets on every PVE node (50-pid-max.conf)
CGROUP_ROOT = Path("/sys/fs/cgroup")
LXC_CGROUP_PARENTS = ("lxc", "lxc.monitor", "lxc.pivot")   # LXC leaves these behind, empty
# Debian releases the lab builds: a VM node's (PVE 9 is Debian 13 trixie, PVE 8 Debian 12 bookworm) and each
# CT's (``release:`` in the declared file; CT 2017 stays on bookworm, as the incident had it)
RELEASES = {"bookworm": "12", "trixie": "13"}
PVE_RELEASES = {"9": "trixie", "8": "bookworm"}
NODE_RELEASE = "trixie"                # a VM node is PVE 9-shaped unless told ``--release bookworm`` / ENVA_LAB_PVE=8
RELEASE = "bookworm"                   # a declared CT without ``release:``
ARCH = "amd64"
CT_PACKAGES = ("python3", "openssh-server", "rsyslog", "haproxy", "socat", "iproute2", "procps")

NODE_MARKER = Path("/etc/enva-lab-node")   # written into the VM node image (enva_lab.vmimage)


def on_vm_node():
    """Whether this host is one of the lab's VM nodes (TCG-slow: smaller CT 2017, lower flood rates)."""
    return NODE_MARKER.exists()


# The PVE node's name: pve1 on this host; on a VM node its hostname (pve1, pve2, pve3 in a cluster)
NODE = os.environ.get("ENVA_LAB_NODE") or (socket.gethostname().split(".")[0] if on_vm_node() else "pve1")


# The PVE API lab: on loopback; on a VM node on every address of the node, whose only way in from
# outside is qemu's forward of 127.0.0.1:PORT on the host to the node's 8006 (labctl vm status names PORT)
API_LISTEN = "0.0.0.0:8006" if on_vm_node() else "127.0.0.1:8006"
CHECKOUT = Path(__file__).resolve().parents[3]
# On a VM node CT 2017 is declared with 128 MiB (enva-node.yaml): under TCG the full-size incident takes too long
SAMPLE = CHECKOUT / "tests" / "lab" / ("enva-node.yaml" if on_vm_node() else "enva.yaml")
PVE_API_MODULE = "enva_lab.api_lab"      # python3 -m it (labctl puts it on the path)


def release_name(value, what="release"):
    """A Debian release by codename, version or PVE major (``trixie``, ``13``, ``pve9``); ValueError names the
    ones the lab builds."""
    text = str(value).strip().lower()
    if text.removeprefix("pve") in PVE_RELEASES:      # 9, pve9: PVE 9's Debian (13 and 12 are Debian's)
        return PVE_RELEASES[text.removeprefix("pve")]
    if text.startswith("debian"):
        text = text[len("debian"):].strip("-_ ")
    for name, version in RELEASES.items():
        if text in (name, version):
            return name
    raise ValueError("%s %r is not one the lab builds: %s (or PVE 9/8 as 9/8)" % (
        what, value, ", ".join("%s (Debian %s)" % item for item in RELEASES.items())))


# A Debian codename or version the lab does not build (forky, 14, sid): plausible, so not refused
_DEBIAN_NAME = re.compile(r"^(?:debian[-_ ]?)?(?:[a-z][a-z0-9]{1,15}|\d{1,3}(?:\.\d+)?)$")


def ct_release(value):
    """A declared CT's release: ``(name, note)``. A release the lab builds gives its codename and no note; a
    Debian release it does not know (``forky``, ``14``, ``sid``) is handled as Debian's: built on the newest
    Debian rootfs the lab has, with a note saying so. Anything that is not a release name is a ValueError."""
    try:
        return release_name(value), None
    except ValueError:
        text = str(value).strip().lower()
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not _DEBIAN_NAME.match(text):
            raise ValueError("release %r is not a Debian codename or version (such as trixie or 13)" % (value,)) \
                from None
    newest = max(RELEASES, key=lambda name: int(RELEASES[name]))
    return newest, ("release %r is not one the lab builds: handled as Debian's, on %s (Debian %s), the newest "
                    "it builds" % (value, newest, RELEASES[newest]))


def node_release(value=None):
    """The VM nodes' release: ``value`` (``labctl vm ... --release``), else ``$ENVA_LAB_PVE`` (9 or 8), else
    trixie (PVE 9)."""
    if value:
        return release_name(value, "--release")
    pve = os.environ.get("ENVA_LAB_PVE", "").strip()
    if not pve:
        return NODE_RELEASE
    if pve.lower().removeprefix("pve") not in PVE_RELEASES:
        raise ValueError("ENVA_LAB_PVE=%s: the VM nodes are PVE 9 (Debian 13) or PVE 8 (Debian 12); "
                         "set 9 or 8" % pve)
    return PVE_RELEASES[pve.lower().removeprefix("pve")]


def lab_dir():
    """The lab's state directory: ``$ENVA_LAB_DIR`` or ``/var/lib/enva-lab``."""
    return Path(os.environ.get("ENVA_LAB_DIR") or "/var/lib/enva-lab")


def cache_dir():
    """The rootfs cache, kept by ``down`` and removed by ``down --purge``."""
    return Path(os.environ.get("ENVA_LAB_CACHE") or "/var/cache/enva-lab")


class Layout:
    """Every path under the lab directory, in one place."""

    def __init__(self, root=None, cache=None):
        self.root = Path(root) if root else lab_dir()
        self.cache = Path(cache) if cache else cache_dir()
        # The lab's copy of the declared file; playbooks edit it, the CTs are built from it.
        self.declared = self.root / "enva.yaml"
        self.state = self.root / "state.json"
        self.pve_lxc = self.root / "etc" / "pve" / "lxc"
        # LXC's ``-P``: the lab's own container path, so nothing collides with /var/lib/lxc. On a VM node
        # it is LXC's default, /var/lib/lxc (a link to the lab's), as pve-container@.service runs
        # ``lxc-start -F -n VMID`` without ``-P``, and LXC finds a running CT by the path it was started with.
        on_node = on_vm_node() and self.root == Path("/var/lib/enva-lab")
        self.lxcpath = Path("/var/lib/lxc") if on_node else self.root / "lxc"
        self.journal = self.root / "journal"
        self.log = self.root / "log"
        self.kern_log = self.log / "kern.log"
        self.run = self.root / "run"
        self.dns = self.root / "dns"
        self.ssh = self.root / "ssh"
        self.ssh_key = self.ssh / "id_ed25519"
        self.pki = self.root / "pki"
        # The cached, provisioned Debian rootfs every CT's overlay sits on (one per release; Debian 12 by default).
        self.base = self.base_dir(RELEASE)
        self.base_rootfs = self.base / "rootfs"
        self.base_stamp = self.base / "stamp.json"

    def base_dir(self, release):
        return self.cache / "base" / ("%s-%s" % (release, ARCH))

    def base_rootfs_of(self, release):
        return self.base_dir(release) / "rootfs"

    def ct_release_file(self, vmid):
        """The release of the rootfs a CT's layer sits on (written when the layer is built)."""
        return self.ct_dir(vmid) / "release"

    def pve_conf(self, vmid):
        return self.pve_lxc / ("%d.conf" % vmid)

    def lxc_config(self, vmid):
        return self.lxcpath / str(vmid) / "config"

    def ct_dir(self, vmid):
        return self.root / "ct" / str(vmid)

    def ct_delta(self, vmid):
        """The CT's writable overlay layer over the cached rootfs."""
        return self.ct_dir(vmid) / "delta"

    def ct_built(self, vmid):
        """Written last when a CT's layer is complete; a layer without it is rebuilt."""
        return self.ct_dir(vmid) / "built"

    def journal_file(self, vmid):
        return self.journal / ("pve-container@%d.jsonl" % vmid)

    def pidfile(self, name):
        return self.run / ("%s.pid" % name)

    def ct_stderr(self, vmid):
        """lxc-start's stderr, where PVE's unit puts it (/run/pve/ct-VMID.stderr)."""
        return self.run / ("ct-%d.stderr" % vmid)
