"""The PVE API lab: an HTTPS server that speaks the part of Proxmox VE's /api2/json the collection
uses, backed by the lab's CTs (the *server*; the collection's client is plugins/module_utils/pve_client.py).

    python3 -m enva_lab.api_lab serve --labdir /var/lib/enva-lab --listen 127.0.0.1:8006
    python3 -m enva_lab.api_lab serve --labdir DIR --listen 127.0.0.1:0 --synthetic-cts 1000 --nodes 3
    python3 -m enva_lab.api_lab init --labdir DIR        # PKI and credentials only

It answers as PVE 9 (``--pve 9``, the default, or ``$ENVA_LAB_PVE``): ``/version`` 9.1.1, and a running CT's
``status/current`` and ``/nodes/{node}/lxc`` entry carry pve-container 6.0.7's six pressure fields (the avg10
of ``<cgroup-root>/lxc/VMID/{cpu,io,memory}.pressure`` as the kernel's text, ``"53.00"``; null when the file
is missing, as on this cgroup v1 lab host), which ``rrddata`` keeps as numbers. ``--pve 8`` answers /version
8.2.4 and no pressure field.

(``tests/lab/labctl`` sets the path: ``tests/lab`` and the collection as ``ansible_collections.enva.pve``.)

What it is made of (stdlib only, runs with the system python3), one module each:

* :mod:`.schema`: the real PVE schema (``tests/lab/pve-api/schema-subset.json``) routes requests and
  validates parameters with PVE's wording (``value must have a minimum value of 16``); :mod:`.errors`
  answers errors as PVE does: the message in the HTTP reason phrase and
  ``{"data": null, "message": ..., "errors": {...}}``;
* :mod:`.access`: PVE's access model: ``/access/ticket`` tickets (``PVEAuthCookie``) with a CSRF token
  required for writes, API tokens (``Authorization: PVEAPIToken=USER@REALM!ID=SECRET``) with privilege
  separation (a token has what both it and its user are granted),
  ``Permission check failed (/vms/2017, VM.Config.Memory)``; :mod:`.pki` makes the lab CA, the server
  certificate and ``credentials.json``;
* :mod:`.nodes`: PVE-format CT configs (``<labdir>/etc/pve/lxc/<VMID>.conf``, read and written with the
  collection's ``pve_ct_config``; ``digest`` is the SHA-1 of the file), status and tasks; :mod:`.cgroups`:
  the CTs' real memory cgroups (``<cgroup-root>/memory/lxc/<VMID>`` on cgroup v1, ``<cgroup-root>/lxc/<VMID>``
  on v2): a PUT of memory/swap on a running CT changes the live limits as PVE hot-plugs them, and the
  kernel refusing (EBUSY) is reported as PVE reports it. A cgroup tree that is not a mounted cgroup file
  system (a test fixture) gets the kernel's v1 rules applied by the server;
* :mod:`.routes`: the endpoints; ``status/start`` and ``status/stop`` run ``tests/lab/labctl start|stop
  VMID`` as a PVE task (a UPID);
* :mod:`.synthetic`: ``--synthetic-cts N --nodes M`` serves a generated cluster instead (configs and v2
  cgroup trees under ``<labdir>/synthetic``), for scale tests of the fleet audit;
* :mod:`.server` (HTTP) and :mod:`.cli` (the command line).

On first start it makes ``<labdir>/pki`` (a lab CA ``pve-root-ca.pem`` and a server certificate for
127.0.0.1/localhost, with the openssl CLI) and ``<labdir>/api/credentials.json`` (root@pam's password, the
tokens ``enva@pve!ansible`` (VM.Audit, VM.Config.Memory, Sys.Audit) and ``enva@pve!readonly`` (VM.Audit,
Sys.Audit)). Each request is logged (method, path, status, who; never a secret) to ``<labdir>/log/pve_api.log``.
"""
