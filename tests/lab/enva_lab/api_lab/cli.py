"""The PVE API lab's command line: ``python3 -m enva_lab.api_lab serve|init`` (see the package's doc)."""

import argparse
import hashlib
import os
import signal
import ssl
import sys
import threading
from pathlib import Path

from enva_lab.api_lab import __doc__ as PACKAGE_DOC
from enva_lab.api_lab.access import Access
from enva_lab.api_lab.cluster import Peers
from enva_lab.api_lab.errors import API_PREFIX
from enva_lab.api_lab.nodes import ApiLab, Node
from enva_lab.api_lab.pki import ensure_credentials, ensure_pki
from enva_lab.api_lab.routes import PVE_VERSIONS
from enva_lab.api_lab.schema import Schema
from enva_lab.api_lab.server import ApiServer
from enva_lab.api_lab.synthetic import make_synthetic

LABCTL = Path(__file__).resolve().parents[2] / "labctl"
PVE_ENV = "ENVA_LAB_PVE"


def default_pve():
    """The release the server answers as unless --pve says: $ENVA_LAB_PVE (8 or 9), else 9."""
    text = os.environ.get(PVE_ENV, "").strip()
    if not text:
        return 9
    if not text.isdigit() or int(text) not in PVE_VERSIONS:
        raise SystemExit("api_lab: %s=%r: the PVE API lab answers as PVE %s" % (
            PVE_ENV, text, " or ".join(str(major) for major in sorted(PVE_VERSIONS))))
    return int(text)


def parse_listen(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("--listen wants HOST:PORT, got %r" % text)
    return host.strip("[]"), int(port)


def build_lab(args):
    labdir = Path(args.labdir)
    if args.synthetic_cts:
        directory = make_synthetic(labdir / "synthetic", args.synthetic_cts, args.nodes)
        nodes = [Node("pve%d" % index, directory / "nodes" / ("pve%d" % index) / "lxc",
                      directory / "nodes" / ("pve%d" % index) / "cgroup") for index in range(1, args.nodes + 1)]
        return ApiLab(nodes, labdir, synthetic=True, pve=args.pve)
    config_dir = Path(args.config_dir) if args.config_dir else labdir / "etc" / "pve" / "lxc"
    config_dir.mkdir(parents=True, exist_ok=True)
    return ApiLab([Node(args.node, config_dir, args.cgroup_root, Path(args.labctl))], labdir, pve=args.pve)


def make_server(args):
    labdir = Path(args.labdir)
    ca, cert, key = ensure_pki(labdir)
    credentials = ensure_credentials(labdir, ca, args.node)
    secret = (labdir / "api" / "authkey").read_text(encoding="utf-8").strip()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.load_cert_chain(str(cert), str(key))
    lab = build_lab(args)
    server = ApiServer(parse_listen(args.listen), lab, Schema(), Access(credentials, secret, labdir / "api" / "credentials.json"),
                       args.log or labdir / "log" / "pve_api.log", tls)
    if not lab.synthetic:
        server.peers = Peers(labdir)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text(encoding="ascii"))
    digest = hashlib.sha256(der).hexdigest().upper()
    server.fingerprint = ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
    return server, ca


def _sampler(lab, step, stop):
    while not stop.is_set():
        try:
            lab.sample()
        except Exception as error:  # pylint: disable=broad-except
            print("api_lab: rrd sample failed: %r" % error, file=sys.stderr)
        stop.wait(step)


def serve(args):
    server, ca = make_server(args)
    stop = threading.Event()
    if not server.lab.synthetic:
        threading.Thread(target=_sampler, args=(server.lab, args.rrd_step, stop), daemon=True).start()

    def terminate(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    host, port = server.server_address[:2]
    server.log_line("PVE API lab pid %d listening on %s:%d (%s), answering as PVE %d" % (
        os.getpid(), host, port, ", ".join(sorted(server.lab.nodes)), server.lab.pve))
    print("PVE API lab listening on https://%s:%d%s (CA %s, pid %d)" % (host, port, API_PREFIX, ca, os.getpid()),
          flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=PACKAGE_DOC.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "init"):
        command = sub.add_parser(name)
        command.add_argument("--labdir", default=os.environ.get("ENVA_LAB_DIR", "/var/lib/enva-lab"))
        command.add_argument("--node", default="pve1", help="name of the lab's node (default pve1)")
    serve_cmd = sub.choices["serve"]
    serve_cmd.add_argument("--listen", default="127.0.0.1:8006", help="HOST:PORT (port 0 picks a free one)")
    serve_cmd.add_argument("--cgroup-root", default="/sys/fs/cgroup")
    serve_cmd.add_argument("--config-dir", help="CT configs (default <labdir>/etc/pve/lxc)")
    serve_cmd.add_argument("--labctl", default=str(LABCTL), help="what status/start and status/stop run")
    serve_cmd.add_argument("--log", help="request log (default <labdir>/log/pve_api.log)")
    serve_cmd.add_argument("--rrd-step", type=float, default=60.0, help="seconds between rrd samples")
    serve_cmd.add_argument("--synthetic-cts", type=int, default=0, help="serve N generated CTs instead of the lab's")
    serve_cmd.add_argument("--nodes", type=int, default=1, help="nodes of the synthetic cluster")
    serve_cmd.add_argument("--pve", type=int, choices=sorted(PVE_VERSIONS), default=default_pve(),
                           help="the PVE release to answer as: 9 (/version 9.x, the CTs' pressure fields) or 8 "
                                "(/version 8.x, no pressure fields); default $%s or 9" % PVE_ENV)
    args = parser.parse_args(argv)
    if args.command == "init":
        ca, _cert, _key = ensure_pki(args.labdir)
        ensure_credentials(args.labdir, ca, args.node)
        print(Path(args.labdir) / "api" / "credentials.json")
        return 0
    if args.synthetic_cts and args.nodes < 1:
        parser.error("--nodes must be at least 1")
    return serve(args)
