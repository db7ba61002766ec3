"""The lab's PKI (a CA and a server certificate, made with the openssl CLI) and its credentials file."""

import fcntl
import json
import os
import secrets
import subprocess
import uuid
from pathlib import Path


class Locked:
    """An exclusive flock on ``path`` (so two servers starting at once make the PKI once)."""

    def __init__(self, path):
        self.path = path
        self.handle = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "w", encoding="utf-8")  # pylint: disable=consider-using-with
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def ensure_pki(labdir):
    """``(ca, cert, key)`` paths under ``<labdir>/pki``, made with the openssl CLI when absent."""
    pki = Path(labdir) / "pki"
    ca, ca_key = pki / "pve-root-ca.pem", pki / "pve-root-ca.key"
    cert, key = pki / "pve-ssl.pem", pki / "pve-ssl.key"
    with Locked(pki / ".lock"):
        if all(path.exists() for path in (ca, ca_key, cert, key)):
            return ca, cert, key
        os.chmod(pki, 0o755)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
                 "-days", "3650", "-subj", "/CN=Proxmox Virtual Environment Lab CA/O=enva-lab",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        csr = pki / "pve-ssl.csr"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                 "-subj", "/CN=127.0.0.1/O=enva-lab")
        ext = pki / "pve-ssl.ext"
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
                       "authorityKeyIdentifier=keyid,issuer\n"
                       "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n", encoding="utf-8")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-out", str(cert), "-days", "825", "-sha256", "-extfile", str(ext))
        for path in (csr, ext):
            path.unlink()
        for path in (ca_key, key):
            os.chmod(path, 0o600)
        os.chmod(ca, 0o644)
    return ca, cert, key


def default_credentials(ca_path, node):
    """A fresh credentials.json: root@pam's password and the two lab tokens, with their roles and ACLs."""
    return {
        "ca_path": str(ca_path),
        "node": node,
        "users": {"root@pam": {"password": secrets.token_urlsafe(18)}, "enva@pve": {}},
        "tokens": {
            "enva@pve!ansible": {"user": "enva@pve", "token_id": "ansible", "secret": str(uuid.uuid4()),
                                 "privsep": True},
            "enva@pve!readonly": {"user": "enva@pve", "token_id": "readonly", "secret": str(uuid.uuid4()),
                                  "privsep": True},
        },
        "roles": {"EnvaMemory": ["VM.Audit", "VM.Config.Memory", "Sys.Audit"],
                  "EnvaAudit": ["VM.Audit", "Sys.Audit"]},
        "acl": [
            {"path": "/", "propagate": True, "roles": ["EnvaMemory"],
             "users": ["enva@pve"], "tokens": ["enva@pve!ansible"]},
            {"path": "/", "propagate": True, "roles": ["EnvaAudit"], "tokens": ["enva@pve!readonly"]},
        ],
    }


def ensure_credentials(labdir, ca_path, node="pve1"):
    """``<labdir>/api/credentials.json`` (mode 0600), made when absent; returns its content."""
    path = Path(labdir) / "api" / "credentials.json"
    with Locked(path.parent / ".lock"):
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path.parent, 0o700)
            data = json.dumps(default_credentials(ca_path, node), indent=2) + "\n"
            fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
        key = path.parent / "authkey"
        if not key.exists():
            fd = os.open(str(key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_hex(32) + "\n")
    return json.loads(path.read_text(encoding="utf-8"))
