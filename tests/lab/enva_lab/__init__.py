"""The enva.pve lab: a Proxmox-like host built from real parts on one machine.

``tests/lab/labctl`` is the one CLI (see :mod:`enva_lab.cli`). The modules:

* :mod:`enva_lab.settings`: the lab's fixed facts (addresses, paths, names) and its directory layout;
* :mod:`enva_lab.declared`: the site's declared file (``enva.yaml``) the CTs are built from;
* :mod:`enva_lab.pveconf`: PVE-format CT configs (``/etc/pve/lxc/VMID.conf``), rendered and parsed;
* :mod:`enva_lab.lxcconf`: a PVE CT config translated into the LXC config it starts from;
* :mod:`enva_lab.journal`: ``pve-container@VMID`` lifecycle records as systemd 252 writes them;
* :mod:`enva_lab.kmsg`: ``/dev/kmsg`` records as ``journalctl -k -o short-iso-precise`` prints them;
* :mod:`enva_lab.dns`: the lab zone, unbound's config, a minimal DNS client;
* :mod:`enva_lab.cleanup`: what ``labctl down`` removes, planned from what is found;
* :mod:`enva_lab.host`, :mod:`enva_lab.procs`: the host's links, cgroups and processes;
* :mod:`enva_lab.rootfs`, :mod:`enva_lab.ct`: the cached Debian 12 rootfs and the CTs;
* :mod:`enva_lab.flood`: the random-source-port DNS flood;
* :mod:`enva_lab.lab`: ``up``, ``down``, ``reset``, ``reproduce``, ``status``, with its mixins
  :mod:`enva_lab.incident` (``flood``, ``reproduce`` and what the logs said) and :mod:`enva_lab.teardown` (``down``);
* :mod:`enva_lab.cgroup2`: CT limits on a cgroup v2 host, read and written as PVE does;
* :mod:`enva_lab.errors`: the lab's one error type (a one-line message that says what to do);
* :mod:`enva_lab.api_lab`: the PVE API lab, an HTTPS server speaking the API subset the collection uses;
* :mod:`enva_lab.pct`: the subset of PVE's ``pct`` written onto a VM node;
* :mod:`enva_lab.vmimage`, :mod:`enva_lab.vmnode`: the PVE-shaped node image and its qemu VMs (``labctl vm``);
* :mod:`enva_lab.vmcluster`: three VM nodes as one PVE cluster (``labctl cluster``).

Everything the lab addresses is on loopback or on its own bridge.
"""
