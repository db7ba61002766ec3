"""The PVE-shaped node image VM nodes boot from, built once from Debian packages and cached.

A node is a stock Debian 13 trixie (PVE 9's base: cgroup v2 only, systemd 257, journald, sshd,
python3 3.13, LXC 6.0) or, with ``--release bookworm`` / ``ENVA_LAB_PVE=8``, Debian 12 (PVE 8's),
with what a PVE node has for CTs: LXC, ``pve-container@.service`` (``ExecStart=/usr/bin/lxc-start -F -n %i``, as
pve-container ships it), ``/etc/pve/lxc/VMID.conf``. The image is debootstrap'd
(``--include`` the packages below), configured, and made an ext4 image with
``mkfs.ext4 -d``; the kernel and initrd are copied out next to it for ``qemu -kernel``.
The CT rootfs of both releases the lab's CTs sit on (:mod:`enva_lab.rootfs`) are built on the
host and put into the image's ``/var/cache/enva-lab``, so ``labctl up`` inside the node needs no
network.

The two images sit side by side, ``<cache>/node-trixie`` and ``<cache>/node-bookworm``; each is
built under ``node-RELEASE.build`` and moved into place only when complete (the stamp written
last): a build that crashed half-way is removed and done again. Both carry one host key (kept in
``<cache>/node-ssh``), so the pinned ``known_hosts`` holds for either. The single image of
earlier versions (``<cache>/node``, Debian 12) is left alone (a checkout of an earlier version may still boot
it) and named by the build and ``vm status``.
"""

import json
import os
import shutil
import time
from pathlib import Path

from enva_lab import rootfs, settings
from enva_lab.errors import LabError
from enva_lab.host import run
from enva_lab.settings import Layout

MIRROR = "http://deb.debian.org/debian"
NODE_PACKAGES = (
    "linux-image-cloud-amd64", "systemd-sysv", "udev", "initramfs-tools", "dbus", "lxc", "lxc-templates",
    "openssh-server",
    "python3", "python3-yaml", "iproute2", "ifupdown", "isc-dhcp-client", "unbound", "socat", "procps",
    "debootstrap", "openssl", "kmod", "ca-certificates", "netbase", "e2fsprogs", "apparmor", "less",
)
IMAGE_SIZE = "6G"
GUEST_ADDRESS = "10.0.2.15/24"        # qemu user networking's guest address (static: no DHCP wait)
GUEST_GATEWAY = "10.0.2.2"
GUEST_CHECKOUT = "/opt/enva"          # where ``vm up`` copies tests/lab and plugins/module_utils
CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1"
MASKED = ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer", "man-db.timer",
          "lxc-net.service", "unbound.service", "unbound-resolvconf.service", "lxc.service",
          "systemd-timesyncd.service")

PVE_CONTAINER_UNIT = """[Unit]
Description=PVE LXC Container: %i
DefaultDependencies=No
After=lxc.service
Wants=lxc.service
Documentation=man:lxc-start man:lxc man:pct

[Service]
Type=simple
Delegate=yes
KillMode=mixed
TimeoutStopSec=120s
ExecStart=/usr/bin/lxc-start -F -n %i
ExecStop=/usr/bin/lxc-stop -n %i --kill
# Prevent container init from putting all its output into the journal
StandardOutput=null
StandardError=file:/run/pve/ct-%i.stderr
RuntimeDirectory=pve
RuntimeDirectoryPreserve=yes
"""


def recipe(release=settings.NODE_RELEASE):
    """What the cached image is made of; an image from another recipe is rebuilt."""
    return {"release": release, "packages": list(NODE_PACKAGES), "size": IMAGE_SIZE, "masked": list(MASKED),
            "unit": PVE_CONTAINER_UNIT, "ct_rootfs": {each: rootfs.recipe(each) for each in settings.RELEASES},
            "version": 6}      # 6: unbound keeps Debian's AppArmor profile (no disable link)


class Paths:
    """The node image's files under the cache (``/var/cache/enva-lab/node-RELEASE``). ``release``: trixie,
    bookworm, 13, 12, pve9, pve8; by default ``$ENVA_LAB_PVE`` (9 or 8), else trixie."""

    def __init__(self, cache=None, release=None):
        self.cache = Path(cache) if cache else settings.cache_dir()
        try:
            self.release = settings.node_release(release)
        except ValueError as error:
            raise LabError(str(error)) from None
        self.pve = next(pve for pve, each in settings.PVE_RELEASES.items() if each == self.release)
        self.node = self.cache / ("node-%s" % self.release)
        self.build = self.cache / ("node-%s.build" % self.release)
        self.legacy = self.cache / "node"                            # the one Debian 12 image of earlier versions
        self.image = self.node / "node.img"
        self.kernel = self.node / "vmlinuz"
        self.initrd = self.node / "initrd.img"
        self.stamp = self.node / "stamp.json"
        self.ssh_key = self.cache / "node-ssh" / "id_ed25519"        # the lab's key for root on every node
        # the images' host key, alias enva-node (not ``known_hosts``: earlier versions wrote their image's key there)
        self.known_hosts = self.cache / "node-ssh" / "known_hosts.nodes"
        self.host_key = self.cache / "node-ssh" / "ssh_host_ed25519_key"  # one host key for every image
        self.debs = self.cache / "node-debs"                         # debootstrap's package cache
        self.ct_cache = self.cache / "node-ct"                         # the CT rootfs built for the image


def is_current(paths):
    try:
        stamp = json.loads(paths.stamp.read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("recipe") == recipe(paths.release) and all(p.exists() for p in (paths.image, paths.kernel, paths.initrd))


def stamp(paths):
    try:
        return json.loads(paths.stamp.read_text())
    except (OSError, ValueError):
        return {}


def ssh_key(paths):
    """The lab's own key for root on the nodes (made once, kept with the image)."""
    if not paths.ssh_key.exists():
        paths.ssh_key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "enva-lab-node", "-f", paths.ssh_key])
    return paths.ssh_key


def _write(root, relative, text, mode=0o644):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def _symlink(root, relative, target):
    path = root / relative
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def configure(root, authorized_key):
    """Make a debootstrap'd root a PVE-shaped node (pure file edits; tested without a build)."""
    node = settings.NODE
    _write(root, "etc/hostname", node + "\n")
    _write(root, "etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\t%s\n" % node)
    _write(root, "etc/fstab", "/dev/vda / ext4 rw,relatime,errors=remount-ro 0 1\n")
    _write(root, "etc/network/interfaces",
           "auto lo\niface lo inet loopback\n\n# qemu user networking; only the host's forwarded ports reach in\n"
           "auto eth0\niface eth0 inet static\n  address %s\n  gateway %s\n" % (GUEST_ADDRESS, GUEST_GATEWAY))
    _write(root, "etc/resolv.conf", "# no name server: a lab node resolves nothing outside the lab\n")
    _write(root, "root/.ssh/authorized_keys", authorized_key, 0o600)
    (root / "root" / ".ssh").chmod(0o700)
    _write(root, "etc/ssh/sshd_config.d/enva-lab.conf",
           "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n")
    _write(root, "etc/systemd/journald.conf.d/enva-lab.conf", "[Journal]\nStorage=volatile\nRateLimitBurst=0\n")
    _write(root, "lib/systemd/system/pve-container@.service", PVE_CONTAINER_UNIT)
    _write(root, "usr/lib/tmpfiles.d/pve-container.conf", "d /run/pve 0750 root root -\n")
    _write(root, "etc/sysctl.d/50-pid-max.conf", "kernel.pid_max = %d\n" % settings.PVE_PID_MAX)
    # PVE's paths, backed by the lab's directory: /etc/pve/lxc/VMID.conf and LXC's default lxcpath
    _symlink(root, "etc/pve", "/var/lib/enva-lab/etc/pve")
    _symlink(root, "var/lib/lxc", "/var/lib/enva-lab/lxc")
    _write(root, "etc/enva-lab-node", "%s\n" % node)
    # unbound keeps Debian's AppArmor profile: labctl puts its files where the profile allows (enva_lab.dns)
    system = root / "etc" / "systemd" / "system"
    for unit in MASKED:
        for wants in system.glob("*.wants"):
            if (wants / unit).is_symlink():
                (wants / unit).unlink()
        _symlink(root, "etc/systemd/system/%s" % unit, "/dev/null")
    getty = system / "getty.target.wants"
    for link in getty.glob("getty@tty*.service") if getty.is_dir() else []:
        link.unlink()
    (root / "etc" / "machine-id").write_text("")
    (root / "var" / "lib" / "dbus").mkdir(parents=True, exist_ok=True)


def host_key(paths):
    """The nodes' host key (made once, kept with the lab's key): every image carries it, so one pinned
    ``known_hosts`` line holds for trixie and bookworm nodes alike."""
    if not paths.host_key.exists():
        paths.host_key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@enva-node", "-f", paths.host_key])
    kind, blob = paths.host_key.with_suffix(".pub").read_text().split()[:2]
    paths.known_hosts.write_text("enva-node %s %s\n" % (kind, blob))
    return paths.host_key


def legacy_note(paths):
    """What to say about the single Debian 12 image of earlier versions (``<cache>/node``), or None. It is
    not used (the bookworm image is ``node-bookworm``, from this version's recipe) and not removed here: a
    checkout of an earlier version on the same machine still boots it."""
    if not paths.legacy.exists():
        return None
    return ("note: %s is an earlier version's node image (Debian 12, about 6 GiB), not used by this one "
            "(node-trixie, node-bookworm); rm -rf it once no checkout of an earlier version needs it" % paths.legacy)


def build(paths, log, ct_layout=None):
    """Build the node image of ``paths.release`` when it is missing, half-built or from another recipe; returns
    seconds (0 when cached)."""
    if is_current(paths):
        host_key(paths)
        return 0.0
    started = time.monotonic()
    if legacy_note(paths):
        log(legacy_note(paths))
    if paths.build.exists():
        log("node image: removing a half-built image (%s)" % paths.build)
        shutil.rmtree(paths.build)
    key = ssh_key(paths)
    ct_layout = ct_layout or Layout(root=paths.build / "unused", cache=paths.ct_cache)
    for release in settings.RELEASES:
        seconds = rootfs.build(ct_layout, log, release)
        if seconds:
            log("node image: CT rootfs (%s) built in %.0f s" % (release, seconds))
    root = paths.build / "root"
    root.mkdir(parents=True)
    paths.debs.mkdir(parents=True, exist_ok=True)
    log("node image: debootstrap %s (PVE %s-shaped) with %s (once; cached in %s)" % (
        paths.release, paths.pve, " ".join(NODE_PACKAGES), paths.node))
    run(["debootstrap", "--variant=minbase", "--include=" + ",".join(NODE_PACKAGES), "--cache-dir", paths.debs,
         paths.release, root, MIRROR], timeout=1800, what="debootstrap of the node image (%s)" % paths.release)
    configure(root, key.with_suffix(".pub").read_text())
    # The nodes' host key, pinned on the host under the alias every node is reached by
    for old in (root / "etc" / "ssh").glob("ssh_host_*"):
        old.unlink()
    key_file = host_key(paths)
    for suffix, mode in (("", 0o600), (".pub", 0o644)):
        target = root / "etc" / "ssh" / ("ssh_host_ed25519_key" + suffix)
        shutil.copyfile(str(key_file) + suffix, target)
        target.chmod(mode)
    # The CT rootfs of both releases, so labctl up inside the node finds them built
    inner = root / "var" / "cache" / "enva-lab" / "base"
    inner.mkdir(parents=True)
    for release in settings.RELEASES:
        base = ct_layout.base_dir(release)
        run(["cp", "-a", base, inner / base.name], timeout=600)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise LabError("the node image has no kernel or initrd in %s/boot (linux-image-cloud-amd64, initramfs-tools)"
                       % root)
    shutil.copyfile(kernels[-1], paths.build / "vmlinuz")
    shutil.copyfile(initrds[-1], paths.build / "initrd.img")
    run(["rm", "-rf", root / "var" / "cache" / "apt" / "archives"], timeout=60)
    run(["mkfs.ext4", "-q", "-F", "-L", "enva-node", "-d", root, paths.build / "node.img", IMAGE_SIZE],
        timeout=900, what="mkfs.ext4 -d (the node image)")
    shutil.rmtree(root)
    if paths.node.exists():
        shutil.rmtree(paths.node)
    seconds = time.monotonic() - started
    (paths.build / "stamp.json").write_text(json.dumps({
        "recipe": recipe(paths.release), "seconds": round(seconds, 1), "kernel": kernels[-1].name,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1) + "\n")
    os.rename(paths.build, paths.node)
    return seconds
