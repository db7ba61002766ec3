"""The cached Debian rootfs every CT's overlay sits on, built once per release (Debian 12 bookworm, the
default and CT 2017's, and Debian 13 trixie for CTs declared ``release: trixie``).

``lxc-create -t debian -- -r RELEASE`` (debootstrap, its own cache under
``/var/cache/enva-lab/lxc``) makes a container-ready rootfs; the CT packages are then
installed with ``chroot ROOTFS apt-get`` (the template's own package step needs
``debian-distro-info`` to name the security suite, and guesses wrong without it). The
result moves into place only when complete, so a build that fails leaves no half rootfs.
"""

import json
import shutil
import time
from pathlib import Path

from enva_lab import settings
from enva_lab.host import run

SOURCES = """deb http://deb.debian.org/debian {release} main
deb http://deb.debian.org/debian {release}-updates main
deb http://deb.debian.org/debian-security {release}-security main
"""
POLICY_RC_D = "#!/bin/sh\n# no service starts while the lab builds its rootfs\nexit 101\n"
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer")
TEMPLATE_LOCK = Path("/var/lock/subsys/lxc-debian")   # the template's lock file; removed when the lab made it


def recipe(release=settings.RELEASE):
    """What the cached rootfs is made of; a cache with another recipe is rebuilt."""
    return {"release": release, "arch": settings.ARCH, "packages": list(settings.CT_PACKAGES),
            "masked": list(MASKED_UNITS), "version": 1}


def is_current(layout, release=settings.RELEASE):
    base = layout.base_dir(release)
    try:
        stamp = json.loads((base / "stamp.json").read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("recipe") == recipe(release) and (base / "rootfs" / "usr" / "bin" / "socat").exists()


def _chroot(rootfs, *argv, timeout=900):
    env = {"DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8",
           "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    return run(["chroot", rootfs] + list(argv), timeout=timeout, env=env, what="chroot %s" % " ".join(argv[:3]))


def _tune(rootfs):
    """What every lab CT shares: no timers that reach for the internet, no shared SSH host keys,
    no machine-id (each CT gets its own), haproxy off unless a CT's layer turns it on."""
    system = rootfs / "etc" / "systemd" / "system"
    for unit in MASKED_UNITS:
        for wants in system.glob("*.wants/%s" % unit):
            wants.unlink()
        link = system / unit
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to("/dev/null")
    for wants in system.glob("*.wants/haproxy.service"):
        wants.unlink()
    for key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (rootfs / "etc" / "machine-id").write_text("")
    (rootfs / "etc" / "network" / "interfaces").write_text(
        "auto lo\niface lo inet loopback\n\n# eth0's address is set by LXC (lxc.net.0.ipv4.address): no DHCP here\n"
        "auto eth0\niface eth0 inet manual\n")


def build(layout, log, release=settings.RELEASE):
    """Build the cached rootfs of ``release`` (when it is missing or from another recipe); returns the seconds
    it took."""
    if is_current(layout, release):
        return 0.0
    started = time.monotonic()
    base = layout.base_dir(release)
    build_path = layout.cache / ("build-%s" % release)
    shutil.rmtree(build_path, ignore_errors=True)
    build_path.mkdir(parents=True)
    empty = build_path / "empty.conf"
    empty.write_text("")
    lock_existed = TEMPLATE_LOCK.exists()
    log("building the Debian %s (%s) rootfs (once; lxc-create -t debian, then chroot apt-get install %s)"
        % (settings.RELEASES[release], release, " ".join(settings.CT_PACKAGES)))
    try:
        run(["lxc-create", "-P", build_path, "-n", "base", "-t", "debian", "-f", empty, "--",
             "-r", release, "-a", settings.ARCH], timeout=1800,
            env={"LXC_CACHE_PATH": str(layout.cache / "lxc"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            what="lxc-create -t debian (debootstrap of %s from deb.debian.org)" % release)
    finally:
        if not lock_existed and TEMPLATE_LOCK.exists():
            TEMPLATE_LOCK.unlink()
    rootfs = build_path / "base" / "rootfs"
    (rootfs / "etc" / "apt" / "sources.list").write_text(SOURCES.format(release=release))
    policy = rootfs / "usr" / "sbin" / "policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    _chroot(rootfs, "apt-get", "-q", "update")
    _chroot(rootfs, "apt-get", "-q", "install", "-y", "--no-install-recommends", *settings.CT_PACKAGES)
    _chroot(rootfs, "apt-get", "clean")
    policy.unlink()
    _tune(rootfs)
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    rootfs.rename(base / "rootfs")
    shutil.rmtree(build_path)
    seconds = time.monotonic() - started
    (base / "stamp.json").write_text(json.dumps({"recipe": recipe(release), "seconds": round(seconds, 1),
                                                 "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1) + "\n")
    return seconds
