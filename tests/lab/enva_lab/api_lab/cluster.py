"""The PVE API lab as one node of a cluster: per-node calls proxied to the node that holds the CT, and
``/cluster/resources`` for every node, as any PVE node answers them.

``<labdir>/api/cluster.json`` (written by ``labctl cluster up``; read again when it changes) names the
other nodes: ``{"peers": {"pve2": "10.218.0.12:8006", ...}}``. Every node of the lab's cluster shares one
CA, one ``authkey`` and one ``credentials.json`` (as PVE's nodes share /etc/pve), so a ticket or token
the caller sent is valid on the peer too, and the peer checks the caller's permissions itself.

* ``/nodes/{node}/...`` for a peer: the request (method, path, query, body, the caller's
  ``Authorization``, ``Cookie`` and ``CSRFPreventionToken``) goes to that peer as it came, and its
  answer comes back unchanged (pveproxy does the same). A peer that does not answer: HTTP 595, PVE's
  status for "no route to host / connection refused" from its proxy, naming the node.
* ``/cluster/resources``, ``/cluster/status``, ``/nodes``: this node's own entries, plus each peer's own
  (fetched with a root@pam ticket this node signs with the shared authkey, then filtered by the
  caller's privileges here). A peer that does not answer is listed ``offline``, with the CTs it had
  the last time it answered and their status ``unknown``, as PVE lists the guests of a node it lost.
"""

import http.client
import json
import ssl
import threading
import time
from pathlib import Path

from enva_lab.api_lab.errors import API_PREFIX

LOCAL_HEADER = "X-Enva-Cluster-Local"     # a peer's own entries only (no fan-out back)
FORWARD_HEADERS = ("Authorization", "Cookie", "CSRFPreventionToken", "Content-Type")
PEER_TIMEOUT = 10.0


class PeerDown(Exception):
    """A peer that did not answer (its name and why)."""


class Peers:
    """The other nodes of the cluster, from ``<labdir>/api/cluster.json``."""

    def __init__(self, labdir):
        self.path = Path(labdir) / "api" / "cluster.json"
        self.ca = Path(labdir) / "pki" / "pve-root-ca.pem"
        self._stamp = None
        self.peers = {}
        self.seen = {}                  # node -> (time, [its /cluster/resources entries]) when it last answered
        self.lost = {}                  # node -> (time, why) since it stopped answering
        self.lock = threading.Lock()

    def refresh(self):
        try:
            stamp = self.path.stat().st_mtime_ns
        except OSError:
            self.peers, self._stamp = {}, None
            return self
        if stamp != self._stamp:
            try:
                self.peers = dict(json.loads(self.path.read_text(encoding="utf-8")).get("peers") or {})
                self._stamp = stamp
            except (OSError, ValueError):
                self.peers = {}
        return self

    def _context(self):
        context = ssl.create_default_context(cafile=str(self.ca))
        context.check_hostname = False      # the nodes share one certificate for 127.0.0.1; the CA is checked
        return context

    def request(self, node, method, path, body=b"", headers=None):
        """``(status, reason, body bytes)`` of one request to the peer ``node``; PeerDown when it does not answer."""
        host, _sep, port = self.peers[node].rpartition(":")
        connection = http.client.HTTPSConnection(host, int(port), timeout=PEER_TIMEOUT, context=self._context())
        try:
            connection.request(method, path, body=body or None, headers=dict(headers or {}))
            answer = connection.getresponse()
            data = answer.read()
        except (OSError, ssl.SSLError, http.client.HTTPException) as error:
            with self.lock:
                self.lost.setdefault(node, (time.time(), str(error) or type(error).__name__))
            raise PeerDown("%s: %s" % (node, error or type(error).__name__)) from None
        finally:
            connection.close()
        with self.lock:
            self.lost.pop(node, None)
        return answer.status, answer.reason, data

    def own_entries(self, node, path, ticket):
        """A peer's own entries of a cluster-wide list (``/cluster/resources``...), as root@pam; the entries it
        gave the last time with ``None`` when it does not answer now."""
        headers = {"Cookie": "PVEAuthCookie=%s" % ticket, LOCAL_HEADER: "1"}
        try:
            status, reason, data = self.request(node, "GET", API_PREFIX + path, headers=headers)
        except PeerDown:
            return None
        if status != 200:
            with self.lock:
                self.lost.setdefault(node, (time.time(), "HTTP %d %s" % (status, reason)))
            return None
        entries = json.loads(data.decode("utf-8")).get("data") or []
        if path.startswith("/cluster/resources"):
            with self.lock:
                self.seen[node] = (time.time(), entries)
        return entries

    def last_seen(self, node):
        with self.lock:
            return self.seen.get(node), self.lost.get(node)


def offline_entries(node, last, lost):
    """What ``/cluster/resources`` lists for a node that does not answer: the node ``offline`` and the CTs it
    had when it last answered, status ``unknown``."""
    entry = {"node": node, "id": "node/%s" % node, "type": "node", "status": "offline", "level": ""}
    if lost:
        entry["enva-lost-since"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(lost[0]))
        entry["enva-lost-reason"] = lost[1]
    cts = []
    for item in (last[1] if last else []):
        if item.get("type") == "lxc" and item.get("node") == node:
            cts.append({key: item[key] for key in ("id", "type", "node", "vmid", "name", "maxmem", "maxdisk",
                                                   "maxcpu", "template", "tags") if key in item})
            cts[-1]["status"] = "unknown"
    return [entry], cts
