"""The PVE API lab: an HTTPS server on loopback that speaks the part of Proxmox VE's /api2/json the
collection uses, backed by the lab's CTs.

    python3 tests/lab/pve_api.py serve --labdir /var/lib/enva-lab --listen 127.0.0.1:8006
    python3 tests/lab/pve_api.py serve --labdir DIR --listen 127.0.0.1:0 --synthetic-cts 1000 --nodes 3
    python3 tests/lab/pve_api.py init --labdir DIR        # PKI and credentials only

What it is made of (stdlib only, runs with the system python3):

* the real PVE schema (``pve-api/schema-subset.json``) routes requests and validates parameters with PVE's
  wording (``value must have a minimum value of 16``), answering errors as PVE does: the message in the HTTP
  reason phrase and ``{"data": null, "message": ..., "errors": {...}}``;
* PVE's access model: ``/access/ticket`` tickets (``PVEAuthCookie``) with a CSRF token required for writes,
  API tokens (``Authorization: PVEAPIToken=USER@REALM!ID=SECRET``) with privilege separation (a token has
  what both it and its user are granted), ``Permission check failed (/vms/2017, VM.Config.Memory)``;
* PVE-format CT configs (``<labdir>/etc/pve/lxc/<VMID>.conf``; ``digest`` is the SHA-1 of the file) and the
  CTs' real memory cgroups (``<cgroup-root>/memory/lxc/<VMID>`` on cgroup v1, ``<cgroup-root>/lxc/<VMID>``
  on v2): a PUT of memory/swap on a running CT changes the live limits as PVE hot-plugs them, and the kernel
  refusing (EBUSY) is reported as PVE reports it. A cgroup tree that is not a mounted cgroup file system (a
  test fixture) gets the kernel's v1 rules applied by the server;
* ``status/start`` and ``status/stop`` run ``tests/lab/labctl start|stop VMID`` as a PVE task (a UPID);
* ``--synthetic-cts N --nodes M`` serves a generated cluster instead (configs and v2 cgroup trees under
  ``<labdir>/synthetic``), for scale tests of the fleet audit.

On first start it makes ``<labdir>/pki`` (a lab CA ``pve-root-ca.pem`` and a server certificate for
127.0.0.1/localhost, with the openssl CLI) and ``<labdir>/api/credentials.json`` (root@pam's password, the
tokens ``enva@pve!ansible`` (VM.Audit, VM.Config.Memory, Sys.Audit) and ``enva@pve!readonly`` (VM.Audit,
Sys.Audit)). Each request is logged (method, path, status, who; never a secret) to ``<labdir>/log/pve_api.log``.
"""

from __future__ import annotations

import argparse
import base64
import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "plugins" / "module_utils"))
import cgroup_memory  # noqa: E402  pylint: disable=wrong-import-position

SCHEMA_FILE = HERE / "pve-api" / "schema-subset.json"
LABCTL = HERE / "labctl"
API_PREFIX = "/api2/json"
MIB = 1024 * 1024
CONFIG_DEFAULTS = {"memory": 512, "swap": 512}
TICKET_LIFETIME = 7200
PVE_VERSION = {"version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325", "console": "html5"}
ALL_PRIVILEGES = (
    "Sys.Audit", "Sys.Modify", "Sys.PowerMgmt", "Sys.Console", "Sys.Syslog", "VM.Allocate", "VM.Audit",
    "VM.Backup", "VM.Clone", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit", "VM.Config.Disk",
    "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options", "VM.Console",
    "VM.Migrate", "VM.Monitor", "VM.PowerMgmt", "VM.Snapshot", "VM.Snapshot.Rollback",
)
# Settings a running CT takes at once (PVE's $LXC_FASTPLUG_OPTIONS); memory and swap are hot-plugged.
FASTPLUG = {"description", "onboot", "startup", "protection", "hostname", "hookscript", "cores", "tags", "lock"}
HOTPLUG = {"memory", "swap"}
PUT_META = {"node", "vmid", "digest", "delete", "revert"}


class ApiError(Exception):
    """An answer PVE gives as an error: the status, its message (the reason phrase), per-parameter errors."""

    def __init__(self, status, message, errors=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def param_error(errors):
    return ApiError(400, "Parameter verification failed.", errors)


def perm_error(detail=None):
    return ApiError(403, "Permission check failed (%s)" % detail if detail else "Permission check failed")


# --- schema: routing and PVE's parameter checks -----------------------------------------------------

class Schema:
    """The API paths of schema-subset.json, with PVE's JSONSchema parameter validation."""

    def __init__(self, path=SCHEMA_FILE):
        self.paths = json.loads(Path(path).read_text(encoding="utf-8"))
        self._routes = []
        for template in self.paths:
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            self._routes.append((re.compile("^%s$" % regex), template))
        # Literal paths win over templated ones (as PVE's router matches them first).
        self._routes.sort(key=lambda route: route[1].count("{"))

    def route(self, path):
        """``(template, uri params)`` for a request path below /api2/json, or None."""
        for regex, template in self._routes:
            match = regex.match(path)
            if match:
                return template, {key: unquote(value) for key, value in match.groupdict().items()}
        return None

    @staticmethod
    def property_schema(properties, name):
        if name in properties:
            return properties[name]
        match = re.match(r"^([a-z]+)(\d+)$", name)
        if match and "%s[n]" % match.group(1) in properties:
            return properties["%s[n]" % match.group(1)]
        return None

    def validate(self, definition, params):
        """The params converted to their types, or ApiError(400) with PVE's message per parameter."""
        schema = definition.get("parameters", {})
        properties = schema.get("properties", {})
        errors, values = {}, {}
        for name, prop in properties.items():
            if name not in params and "[n]" not in name and not prop.get("optional"):
                errors[name] = "property is missing and it is not optional"
        for name, raw in params.items():
            prop = self.property_schema(properties, name)
            if prop is None:
                if not schema.get("additionalProperties", 1):
                    errors[name] = "property is not defined in schema and the schema does not allow additional properties"
                    continue
                values[name] = raw
                continue
            error, value = check_value(prop, raw)
            if error:
                errors[name] = error
            else:
                values[name] = value
        if errors:
            raise param_error(errors)
        return values


_BOOLEAN = {"1": 1, "true": 1, "yes": 1, "on": 1, "0": 0, "false": 0, "no": 0, "off": 0}
_NODE_NAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
_CONFIG_ID = re.compile(r"^[a-z][a-z0-9_]*\d*$")


def _perl_pattern(pattern):
    return pattern.replace("(?^:", "(?:")


def check_value(prop, raw):
    """``(error or None, value)`` for one parameter, in the order and words of PVE::JSONSchema::check_prop."""
    kind = prop.get("type", "string")
    value = raw
    if kind == "boolean":
        if str(raw).lower() not in _BOOLEAN:
            return "type check ('boolean') failed - got '%s'" % raw, None
        return None, _BOOLEAN[str(raw).lower()]
    if kind == "integer":
        if not re.match(r"^[+-]?\d+$", str(raw)):
            return "type check ('integer') failed - got '%s'" % raw, None
        value = int(raw)
    elif kind == "number":
        try:
            value = float(raw)
        except ValueError:
            return "type check ('number') failed - got '%s'" % raw, None
    fmt = prop.get("format")
    if fmt == "pve-node" and not _NODE_NAME.match(str(raw)):
        return "invalid format - value does not look like a valid node name", None
    if fmt == "pve-configid-list":
        for item in re.split(r"[,;\s]+", str(raw).strip()):
            if item and not _CONFIG_ID.match(item):
                return "invalid format - invalid configuration ID '%s'" % item, None
    pattern = prop.get("pattern")
    if pattern and isinstance(raw, str):
        try:
            if not re.fullmatch(_perl_pattern(pattern), raw):
                return "value does not match the regex pattern", None
        except re.error:
            pass
    if "maxLength" in prop and len(str(raw)) > prop["maxLength"]:
        return "value may only be %s characters long" % prop["maxLength"], None
    if "minLength" in prop and len(str(raw)) < prop["minLength"]:
        return "value must be at least %s characters long" % prop["minLength"], None
    if kind in ("integer", "number"):
        if "maximum" in prop and value > prop["maximum"]:
            return "value must have a maximum value of %s" % prop["maximum"], None
        if "minimum" in prop and value < prop["minimum"]:
            return "value must have a minimum value of %s" % prop["minimum"], None
    if "enum" in prop and str(raw) not in [str(item) for item in prop["enum"]]:
        return "value '%s' does not have a value in the enumeration '%s'" % (raw, ", ".join(map(str, prop["enum"]))), None
    return None, value


# --- PKI and credentials --------------------------------------------------------------------------------

class _Locked:
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
    with _Locked(pki / ".lock"):
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
    with _Locked(path.parent / ".lock"):
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


# --- access control -------------------------------------------------------------------------------------

_TOKEN_ID = re.compile(r"^(?P<user>[^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]+)!(?P<token>[A-Za-z][A-Za-z0-9.\-_]+)$")


class Access:
    """PVE's users, tokens, tickets, CSRF tokens and privilege checks, from credentials.json."""

    def __init__(self, credentials, secret):
        self.users = credentials["users"]
        self.tokens = credentials["tokens"]
        self.roles = credentials.get("roles", {})
        self.acl = credentials.get("acl", [])
        self._secret = secret.encode()

    def _sign(self, text):
        return base64.b64encode(hmac.new(self._secret, text.encode(), hashlib.sha256).digest()).decode()

    def create_ticket(self, username, password):
        """``(ticket, csrf)`` for a user's password, or for a valid ticket of the same user (renewal)."""
        user = self.users.get(username)
        valid = user is not None and user.get("password") and hmac.compare_digest(
            str(user["password"]).encode(), str(password).encode())
        if not valid and str(password).startswith("PVE:"):
            valid = self.verify_ticket(password, noerr=True) == username
        if not valid:
            raise ApiError(401, "authentication failure")
        stamp = "%08X" % int(time.time())
        data = "PVE:%s:%s" % (username, stamp)
        return "%s::%s" % (data, self._sign(data)), "%s:%s" % (stamp, self._sign("csrf:%s:%s" % (stamp, username)))

    def verify_ticket(self, ticket, noerr=False):
        match = re.match(r"^PVE:([^:]+):([0-9A-F]{8})::(.+)$", ticket or "")
        if match:
            data = "PVE:%s:%s" % (match.group(1), match.group(2))
            age = time.time() - int(match.group(2), 16)
            if hmac.compare_digest(self._sign(data), match.group(3)) and -300 <= age <= TICKET_LIFETIME:
                if match.group(1) in self.users:
                    return match.group(1)
        if noerr:
            return None
        raise ApiError(401, "permission denied - invalid PVE ticket")

    def verify_csrf(self, username, token):
        match = re.match(r"^([0-9A-F]{8}):(.+)$", token or "")
        if match:
            age = time.time() - int(match.group(1), 16)
            expected = self._sign("csrf:%s:%s" % (match.group(1), username))
            if hmac.compare_digest(expected, match.group(2)) and -300 <= age <= TICKET_LIFETIME:
                return
        raise ApiError(401, "Permission denied - invalid csrf token")

    def verify_token(self, value):
        """The token ID of an ``USER@REALM!ID=SECRET`` value, or ApiError(401) in PVE's words."""
        tokenid, sep, secret = value.rpartition("=")
        if not sep:
            raise ApiError(401, "no tokenid specified")
        match = _TOKEN_ID.match(tokenid)
        if not match:
            raise ApiError(401, "'%s' is not a valid token ID - not able to split into user and token parts" % tokenid)
        if match.group("user") not in self.users:
            raise ApiError(401, "no such user ('%s')" % match.group("user"))
        token = self.tokens.get(tokenid)
        if token is None:
            raise ApiError(401, "no such token '%s' for user '%s'" % (match.group("token"), match.group("user")))
        if not hmac.compare_digest(str(token["secret"]).encode(), secret.encode()):
            raise ApiError(401, "invalid token value!")
        return tokenid

    def _granted(self, who, kind, path):
        privileges = set()
        for entry in self.acl:
            if who not in entry.get(kind, ()):
                continue
            base = entry["path"].rstrip("/")
            if path == entry["path"] or (entry.get("propagate", True) and (base == "" or path.startswith(base + "/"))):
                for role in entry["roles"]:
                    privileges.update(self.roles.get(role, ()))
        return privileges

    def privileges(self, authid, path):
        """What ``authid`` (a user, or a token with privilege separation) holds on ``path``."""
        if authid == "root@pam":
            return set(ALL_PRIVILEGES)
        if "!" in authid:
            user = authid.split("!", 1)[0]
            user_privileges = self._granted(user, "users", path)
            if not self.tokens.get(authid, {}).get("privsep", True):
                return user_privileges
            return user_privileges & self._granted(authid, "tokens", path)
        return self._granted(authid, "users", path)

    def check(self, authid, path, privileges, any_of=False, noerr=False):
        held = self.privileges(authid, path)
        if any_of:
            if held & set(privileges):
                return True
            if noerr:
                return False
            raise perm_error("%s, %s" % (path, "|".join(privileges)))
        for privilege in privileges:
            if privilege not in held:
                if noerr:
                    return False
                raise perm_error("%s, %s" % (path, privilege))
        return True


# --- CT configs -------------------------------------------------------------------------------------------

def _config_key(line):
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    key, sep, _value = line.partition(":")
    return key.strip() if sep else None


def split_sections(text):
    """``(main lines, [(section name, lines)])`` of a PVE config text."""
    main, sections, current = [], [], None
    for line in text.splitlines():
        header = re.match(r"^\[([^\]]+)\]\s*$", line)
        if header:
            current = (header.group(1), [])
            sections.append(current)
        elif current is None:
            main.append(line)
        else:
            current[1].append(line)
    return main, sections


def _settings(lines):
    values = {}
    for line in lines:
        key = _config_key(line)
        if key is not None:
            values[key] = line.partition(":")[2].strip()
    return values


class CtConfig:
    """One ``VMID.conf``: its settings, pending changes and digest (the SHA-1 of the file, as PVE's)."""

    def __init__(self, text):
        self.text = text
        self.digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
        main, sections = split_sections(text)
        self.current = _settings(main)
        self.description = "\n".join(unquote(line.lstrip()[1:]) for line in main if line.lstrip().startswith("#"))
        pending = dict(next((_settings(lines) for name, lines in sections if name == "pending"), {}))
        self.pending_delete = [key for key in re.split(r"[,;\s]+", pending.pop("delete", "")) if key]
        self.pending = pending

    def value(self, key):
        """Current value, with PVE's default for memory and swap."""
        raw = self.current.get(key)
        if raw is None and key in CONFIG_DEFAULTS:
            return CONFIG_DEFAULTS[key]
        return int(raw) if key in CONFIG_DEFAULTS else raw

    def merged(self, with_pending=True):
        values = dict(self.current)
        if with_pending:
            values.update(self.pending)
            for key in self.pending_delete:
                values.pop(key, None)
        return values


def edit_config_text(text, updates, deletions=(), pending=None, pending_delete=()):
    """The config text with ``updates`` set and ``deletions`` removed in the current settings (other lines and
    sections kept as they are) and the ``[pending]`` section replaced by ``pending``/``pending_delete``."""
    main, sections = split_sections(text)
    out, seen = [], set()
    for line in main:
        key = _config_key(line)
        if key in deletions:
            continue
        if key in updates:
            out.append("%s: %s" % (key, updates[key]))
            seen.add(key)
            continue
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    out.extend("%s: %s" % (key, value) for key, value in updates.items() if key not in seen)
    blocks = [out]
    if pending or pending_delete:
        lines = ["%s: %s" % item for item in sorted((pending or {}).items())]
        if pending_delete:
            lines.append("delete: %s" % ",".join(pending_delete))
        blocks.append(["[pending]"] + lines)
    for name, lines in sections:
        if name != "pending":
            while lines and not lines[-1].strip():
                lines = lines[:-1]
            blocks.append(["[%s]" % name] + lines)
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"


def write_atomically(path, text):
    """Replace ``path`` by ``text`` in one rename (readers see the old or the new file, never a mix)."""
    path = Path(path)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o640
    fd, tmp = tempfile.mkstemp(prefix=".%s." % path.name, dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def typed_config(values, properties):
    """Config values as PVE's GET returns them: integers, numbers and booleans as JSON numbers."""
    typed, raw_lxc = {}, []
    for key, value in values.items():
        if key.startswith("lxc."):
            raw_lxc.append([key, value])
            continue
        prop = Schema.property_schema(properties, key) or {}
        kind = prop.get("type")
        try:
            if kind in ("integer", "boolean"):
                typed[key] = int(value)
            elif kind == "number":
                number = float(value)
                typed[key] = int(number) if number.is_integer() else number
            else:
                typed[key] = value
        except ValueError:
            typed[key] = value
    if raw_lxc:
        typed["lxc"] = raw_lxc
    return typed


# --- cgroups ----------------------------------------------------------------------------------------------

class CgroupWriteError(Exception):
    """A cgroup file the kernel (or the fixture's rules) refused, in PVE's words."""

    def __init__(self, path, error):
        super().__init__("unable to write '%s' - %s" % (path, error.strerror))
        self.errno = error.errno


def cgroup_mounts(mountinfo="/proc/self/mountinfo"):
    mounts = []
    try:
        with open(mountinfo, encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                fstype = fields[fields.index("-") + 1]
                if fstype in ("cgroup", "cgroup2"):
                    mounts.append(fields[4])
    except (OSError, ValueError, IndexError):
        pass
    return mounts


def _read_int(path):
    value = cgroup_memory.parse_value(cgroup_memory._read(str(path)))  # pylint: disable=protected-access
    return value if isinstance(value, int) else None


class CtCgroup:
    """A CT's memory cgroup (v1 or v2), read and written as PVE does."""

    def __init__(self, root, vmid):
        self.version, path = cgroup_memory.ct_cgroup(str(root), vmid)
        self.path = Path(path) if path else None
        self.vmid = vmid

    @property
    def running(self):
        return self.path is not None

    def usage(self):
        """``{mem, maxmem, swap, maxswap}`` in bytes (None for unlimited), mem without inactive file cache."""
        counters = cgroup_memory.normalize(self.version, str(self.path),
                                           cgroup_memory.read_raw(self.version, str(self.path)))
        stat = cgroup_memory.parse_flat_keyed(cgroup_memory._read(str(self.path / "memory.stat")))  # pylint: disable=protected-access
        inactive = stat.get("total_inactive_file" if self.version == "v1" else "inactive_file", 0)
        usage = counters["usage_bytes"] or 0
        return {"mem": max(usage - (inactive if isinstance(inactive, int) else 0), 0),
                "maxmem": counters["limit_bytes"], "swap": counters["swap_usage_bytes"] or 0,
                "maxswap": counters["swap_limit_bytes"]}

    def pid(self):
        """The lowest PID in the CT's cgroup tree (its init, which systemd in the CT may have moved into a
        child such as ``ns/init.scope``), or None."""
        pids = []
        for directory, subdirs, _files in os.walk(self.path):
            if len(Path(directory).relative_to(self.path).parts) >= 3:
                subdirs.clear()
            text = cgroup_memory._read(os.path.join(directory, "cgroup.procs")) or ""  # pylint: disable=protected-access
            pids.extend(int(item) for item in text.split() if item.isdigit())
        return min(pids) if pids else None

    def _write(self, name, value, mounts):
        path = self.path / name
        on_kernel = any(str(path).startswith(mount.rstrip("/") + "/") for mount in mounts)
        try:
            if not on_kernel:
                self._fixture_rules(name, value)
            with open(path, "w", encoding="ascii") as handle:
                handle.write("%s\n" % value)
        except OSError as error:
            raise CgroupWriteError(path, error) from error

    def _fixture_rules(self, name, value):
        """The kernel's cgroup v1 refusals, for fixture trees that are plain files."""
        if self.version != "v1":
            return
        limit = _read_int(self.path / "memory.limit_in_bytes")
        if name == "memory.limit_in_bytes":
            usage = _read_int(self.path / "memory.usage_in_bytes")
            memsw = _read_int(self.path / "memory.memsw.limit_in_bytes")
            if usage is not None and 0 <= value < usage:
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
            if memsw is not None and value > memsw:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        elif name == "memory.memsw.limit_in_bytes" and limit is not None and value < limit:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    def set_limits(self, memory_mib, swap_mib, mounts):
        """Apply memory/swap to the running CT as PVE does, or raise CgroupWriteError (nothing half-done)."""
        mem = memory_mib * MIB
        swap = swap_mib * MIB
        if self.version == "v2":
            high = (memory_mib - 128) * MIB if memory_mib >= 16 * 1024 else memory_mib * 1024 * 1016
            self._write("memory.max", mem, mounts)
            self._write("memory.high", high, mounts)
            if (self.path / "memory.swap.max").exists():
                self._write("memory.swap.max", swap, mounts)
            return
        has_memsw = (self.path / "memory.memsw.limit_in_bytes").exists()
        if not has_memsw:
            self._write("memory.limit_in_bytes", mem, mounts)
            return
        old_memsw = _read_int(self.path / "memory.memsw.limit_in_bytes")
        if old_memsw is not None and mem + swap > old_memsw:
            # Growing memory+swap: the memsw limit first, as the memory limit may never exceed it.
            self._write("memory.memsw.limit_in_bytes", mem + swap, mounts)
            try:
                self._write("memory.limit_in_bytes", mem, mounts)
            except CgroupWriteError:
                self._write("memory.memsw.limit_in_bytes", old_memsw, mounts)
                raise
        else:
            self._write("memory.limit_in_bytes", mem, mounts)
            self._write("memory.memsw.limit_in_bytes", mem + swap, mounts)


# --- the lab: nodes and their CTs --------------------------------------------------------------------------

class Node:
    """One PVE node of the lab: where its CT configs and its cgroup tree are."""

    def __init__(self, name, config_dir, cgroup_root, labctl=None):
        self.name = name
        self.config_dir = Path(config_dir)
        self.cgroup_root = Path(cgroup_root)
        self.labctl = labctl

    def vmids(self):
        try:
            names = os.listdir(self.config_dir)
        except OSError:
            return []
        return sorted(int(name[:-5]) for name in names if name.endswith(".conf") and name[:-5].isdigit())

    def config_path(self, vmid):
        return self.config_dir / ("%d.conf" % vmid)

    def load(self, vmid):
        try:
            return CtConfig(self.config_path(vmid).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ApiError(500, "Configuration file 'nodes/%s/lxc/%d.conf' does not exist" % (self.name, vmid)) from None

    def cgroup(self, vmid):
        return CtCgroup(self.cgroup_root, vmid)


def _uptime(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
            start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as handle:
            boot_seconds = float(handle.read().split()[0])
        return max(int(boot_seconds - start_ticks / os.sysconf("SC_CLK_TCK")), 0)
    except (OSError, ValueError, IndexError):
        return 0


def _net_counters(vmid):
    base = Path("/sys/class/net/veth%di0/statistics" % vmid)
    # The host side of the veth receives what the CT sends.
    return {"netout": _read_int(base / "rx_bytes") or 0, "netin": _read_int(base / "tx_bytes") or 0}


def _size_bytes(text):
    match = re.search(r"size=(\d+(?:\.\d+)?)([KMGT]?)", text or "")
    if not match:
        return 0
    factor = {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB, "T": 1024 * 1024 * MIB}[match.group(2)]
    return int(float(match.group(1)) * factor)


def ct_status(node, vmid, config=None):
    """status/current of a CT: from its config, and from its live cgroup when it runs."""
    config = config or node.load(vmid)
    cgroup = node.cgroup(vmid)
    memory, swap = config.value("memory"), config.value("swap")
    status = {
        "vmid": vmid, "name": config.current.get("hostname", "CT%d" % vmid), "type": "lxc",
        "status": "running" if cgroup.running else "stopped", "uptime": 0, "cpu": 0, "cpus": int(config.current.get("cores", os.cpu_count() or 1)),
        "mem": 0, "maxmem": memory * MIB, "swap": 0, "maxswap": swap * MIB,
        "disk": 0, "maxdisk": _size_bytes(config.current.get("rootfs")), "diskread": 0, "diskwrite": 0,
        "netin": 0, "netout": 0, "ha": {"managed": 0}, "template": int(config.current.get("template", 0)),
    }
    for key in ("tags", "lock"):
        if key in config.current:
            status[key] = config.current[key]
    if cgroup.running:
        usage = cgroup.usage()
        status["mem"], status["swap"] = usage["mem"], usage["swap"]
        if usage["maxmem"] is not None:
            status["maxmem"] = usage["maxmem"]
        if usage["maxswap"] is not None:
            status["maxswap"] = usage["maxswap"]
        pid = cgroup.pid()
        if pid:
            status["pid"] = pid
            status["uptime"] = _uptime(pid)
        status.update(_net_counters(vmid))
    return status


def _host_memory():
    values = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                key, _sep, rest = line.partition(":")
                values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    total = values.get("MemTotal", 0)
    available = values.get("MemAvailable", 0)
    return {"total": total, "used": total - available, "free": values.get("MemFree", 0), "available": available}


def _host_uptime():
    try:
        with open("/proc/uptime", encoding="ascii") as handle:
            return int(float(handle.read().split()[0]))
    except (OSError, ValueError):
        return 0


class Task:
    """A PVE worker task (UPID) that runs labctl."""

    def __init__(self, node, kind, vmid, user, command, log_dir):
        start = int(time.time())
        self.upid = "UPID:%s:%08X:%08X:%08X:%s:%d:%s:" % (node, os.getpid(), 0, start, kind, vmid, user)
        self.info = {"upid": self.upid, "node": node, "pid": os.getpid(), "pstart": 0, "starttime": start,
                     "type": kind, "id": str(vmid), "user": user, "status": "running"}
        self.command = command
        self.log_path = Path(log_dir) / (self.upid.replace(":", "_") + ".log")
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(self.command, capture_output=True, text=True, timeout=600, check=False)
            output = (done.stdout or "") + (done.stderr or "")
            exitstatus = "OK" if done.returncode == 0 else (
                (output.strip().splitlines() or ["command '%s' failed: exit code %d" % (" ".join(self.command), done.returncode)])[-1])
        except (OSError, subprocess.TimeoutExpired) as error:
            output, exitstatus = str(error), "command '%s' failed: %s" % (" ".join(self.command), error)
        self.log_path.write_text(output, encoding="utf-8")
        self.info.update(status="stopped", exitstatus=exitstatus)


class Lab:
    """What the API serves: nodes, their CTs, the tasks, the rrd samples."""

    def __init__(self, nodes, labdir, synthetic=False):
        self.nodes = {node.name: node for node in nodes}
        self.labdir = Path(labdir)
        self.synthetic = synthetic
        self.lock = threading.RLock()
        self.tasks = {}
        self.samples = {}
        self.mounts = cgroup_mounts()

    def node(self, name):
        node = self.nodes.get(name)
        if node is None:
            raise ApiError(500, "hostname lookup '%s' failed - failed to get address info for: %s: "
                                "Name or service not known" % (name, name))
        return node

    def sample(self):
        """One rrd sample of every running CT (the history rrddata answers from)."""
        now = int(time.time())
        for node in self.nodes.values():
            for vmid in node.vmids():
                try:
                    status = ct_status(node, vmid)
                except (ApiError, OSError):
                    continue
                if status["status"] != "running":
                    continue
                history = self.samples.setdefault((node.name, vmid), [])
                history.append((now, {key: status[key] for key in (
                    "cpu", "mem", "maxmem", "swap", "maxswap", "netin", "netout", "diskread", "diskwrite",
                    "disk", "maxdisk")}))
                del history[:-2000]


# --- synthetic cluster ----------------------------------------------------------------------------------------

SYNTHETIC_SIZES = (512, 1024, 1024, 2048, 4096)


def make_synthetic(directory, cts, node_count):
    """``<directory>/nodes/pveN/{lxc,cgroup}``: ``cts`` CT configs spread over ``node_count`` nodes, nine in
    ten running with a cgroup v2 tree; made once per (cts, nodes), deterministic."""
    directory = Path(directory)
    stamp = directory / "synthetic.json"
    wanted = {"cts": cts, "nodes": node_count}
    if stamp.exists() and json.loads(stamp.read_text(encoding="utf-8")) == wanted:
        return directory
    shutil.rmtree(directory / "nodes", ignore_errors=True)
    for index in range(cts):
        vmid = 10000 + index
        name = "pve%d" % (index % node_count + 1)
        base = directory / "nodes" / name
        memory = SYNTHETIC_SIZES[index % len(SYNTHETIC_SIZES)]
        (base / "lxc").mkdir(parents=True, exist_ok=True)
        (base / "lxc" / ("%d.conf" % vmid)).write_text(
            "arch: amd64\ncores: 1\nhostname: ct%d\nmemory: %d\nnet0: name=eth0,bridge=vmbr0,ip=dhcp,type=veth\n"
            "onboot: 1\nostype: debian\nrootfs: local:%d/vm-%d-disk-0.raw,size=8G\nswap: 512\n"
            % (vmid, memory, vmid, vmid), encoding="utf-8")
        cgroup = base / "cgroup"
        cgroup.mkdir(parents=True, exist_ok=True)
        (cgroup / "cgroup.controllers").write_text("cpuset cpu io memory pids\n", encoding="ascii")
        ct = cgroup / "lxc" / str(vmid)
        if index % 10 == 9:
            continue
        ct.mkdir(parents=True, exist_ok=True)
        used = memory * MIB * (20 + (index * 37) % 75) // 100
        files = {"memory.max": memory * MIB, "memory.high": memory * 1024 * 1016, "memory.current": used,
                 "memory.peak": min(used + used // 5, memory * MIB), "memory.swap.max": 512 * MIB,
                 "memory.swap.current": 0, "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0",
                 "memory.stat": "anon %d\nfile 0\ninactive_file 0" % used, "cgroup.procs": ""}
        for file_name, value in files.items():
            (ct / file_name).write_text("%s\n" % value, encoding="ascii")
    stamp.write_text(json.dumps(wanted), encoding="utf-8")
    return directory


# --- HTTP -----------------------------------------------------------------------------------------------------

class ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, lab, schema, access, log_path, tls):
        self.lab, self.schema, self.access = lab, schema, access
        self.log_lock = threading.Lock()
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        self.log_file = open(log_path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
        super().__init__(address, Handler)
        self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def log_line(self, text):
        with self.log_lock:
            self.log_file.write(text + "\n")
            self.log_file.flush()

    def handle_error(self, request, client_address):
        """A connection that broke (a client that rejected our certificate, a reset): one log line."""
        self.log_line("%s - connection error: %r" % (client_address[0], sys.exc_info()[1]))

    def server_close(self):
        super().server_close()
        self.log_file.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pve-api-daemon/3.0"
    sys_version = ""
    timeout = 30

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        """Requests are logged by _finish (without query strings); nothing else goes to stderr."""

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _params(self, method):
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length).decode("utf-8")
            if method in ("POST", "PUT"):
                if (self.headers.get("Content-Type") or "").startswith("application/json"):
                    params.update({key: str(value) for key, value in json.loads(body or "{}").items()})
                else:
                    params.update(parse_qsl(body, keep_blank_values=True))
        return unquote(url.path), params

    def _authenticate(self, method, rel_path):
        if rel_path == "/access/ticket" and method in ("GET", "POST"):
            return None
        auth = self.headers.get("Authorization") or ""
        cookies = {}
        for part in (self.headers.get("Cookie") or "").split(";"):
            key, _sep, value = part.strip().partition("=")
            cookies[key] = unquote(value)
        ticket = cookies.get("PVEAuthCookie")
        if not ticket and auth.startswith("PVEAuthCookie="):
            ticket = unquote(auth.split("=", 1)[1])
        if ticket:
            user = self.server.access.verify_ticket(ticket)
            if method != "GET":
                self.server.access.verify_csrf(user, self.headers.get("CSRFPreventionToken"))
            return user
        if auth.startswith("PVEAPIToken="):
            return self.server.access.verify_token(auth[len("PVEAPIToken="):])
        raise ApiError(401, "No ticket")

    def _check_permissions(self, permissions, authid, uri_params):
        if not permissions or permissions.get("user") in ("all", "world"):
            return
        check = permissions.get("check")
        if not check:
            if authid != "root@pam":
                raise perm_error("user != root@pam")
            return
        self._exec_check(check, authid, uri_params)

    def _exec_check(self, check, authid, uri_params, noerr=False):
        test = check[0]
        if test == "and":
            return all(self._exec_check(sub, authid, uri_params) for sub in check[1:])
        if test == "or":
            if any(self._exec_check(sub, authid, uri_params, noerr=True) for sub in check[1:]):
                return True
            raise perm_error()
        if test == "perm":
            options = dict(zip(check[3::2], check[4::2]))
            path = re.sub(r"\{(\w+)\}", lambda match: str(uri_params.get(match.group(1), "")), check[1])
            return self.server.access.check(authid, path, check[2], any_of=bool(options.get("any")), noerr=noerr)
        raise perm_error()

    def _dispatch(self, method):
        started = time.time()
        authid = None
        rel = "-"
        try:
            path, params = self._params(method)
            if not path.startswith(API_PREFIX):
                raise ApiError(501, "no such uri")
            rel = path[len(API_PREFIX):] or "/"
            routed = self.server.schema.route(rel.rstrip("/") or "/")
            definition = None
            if routed:
                definition = self.server.schema.paths[routed[0]].get(method)
            if definition is None:
                raise ApiError(501, "Method '%s %s' not implemented" % (method, rel))
            template, uri_params = routed
            authid = self._authenticate(method, rel)
            if authid and "!" in authid and not definition.get("allowtoken", 1):
                raise ApiError(401, "API tokens are not allowed for this call")
            params.update(uri_params)
            self._check_permissions(definition.get("permissions"), authid, uri_params)
            if "node" in uri_params:
                self.server.lab.node(uri_params["node"])
            values = self.server.schema.validate(definition, params)
            handler = ROUTES.get((method, template))
            if handler is None:
                raise ApiError(501, "Method '%s %s' not implemented in the PVE API lab" % (method, template))
            data = handler(self.server, authid, values)
            self._send(200, "OK", {"data": data}, authid, method, rel)
        except ApiError as error:
            body = {"data": None, "message": error.message + "\n"}
            if error.errors:
                body["errors"] = error.errors
            self._send(error.status, error.message, body, authid, method, rel)
        except Exception as error:  # pylint: disable=broad-except
            self._send(500, "internal error: %s" % type(error).__name__, {"data": None}, authid, method, rel)
            self.server.log_line("internal error on %s %s: %r" % (method, rel, error))
        finally:
            self.server.log_line('%s - %s [%s] "%s %s%s" %s %.3fs' % (
                self.client_address[0], authid or "-", time.strftime("%d/%b/%Y:%H:%M:%S %z"), method,
                API_PREFIX, rel if rel != "-" else "", getattr(self, "_status", "-"), time.time() - started))

    def _send(self, status, reason, body, authid, method, rel):
        payload = json.dumps(body).encode("utf-8")
        self._status = status  # pylint: disable=attribute-defined-outside-init
        self.send_response(status, reason.splitlines()[0] if reason else None)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "max-age=0")
        if status >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)


# --- endpoints -------------------------------------------------------------------------------------------

def api_version(_server, _authid, _params):
    return dict(PVE_VERSION)


def api_ticket_get(_server, _authid, _params):
    return None


def api_ticket_post(server, _authid, params):
    username = params["username"]
    if "@" not in username and params.get("realm"):
        username = "%s@%s" % (username, params["realm"])
    ticket, csrf = server.access.create_ticket(username, params["password"])
    return {"username": username, "ticket": ticket, "CSRFPreventionToken": csrf, "clustername": "enva-lab",
            "cap": {}}


def _node_entry(server, node):
    memory = _host_memory()
    entry = {"node": node.name, "id": "node/%s" % node.name, "type": "node", "status": "online", "level": "",
             "cpu": 0.0, "maxcpu": os.cpu_count() or 1, "mem": memory["used"], "maxmem": memory["total"],
             "uptime": _host_uptime(), "ssl_fingerprint": getattr(server, "fingerprint", "")}
    return entry


def api_nodes(server, authid, _params):
    return [_node_entry(server, node) for node in server.lab.nodes.values()]


def api_node_status(server, _authid, params):
    node = server.lab.node(params["node"])
    uname = os.uname()
    try:
        loadavg = Path("/proc/loadavg").read_text(encoding="ascii").split()[:3]
    except OSError:
        loadavg = ["0.00", "0.00", "0.00"]
    return {"cpu": 0.0, "uptime": _host_uptime(), "loadavg": loadavg, "memory": _host_memory(),
            "cpuinfo": {"cpus": os.cpu_count() or 1, "cores": os.cpu_count() or 1, "sockets": 1, "model": "lab"},
            "current-kernel": {"sysname": uname.sysname, "release": uname.release, "version": uname.version,
                               "machine": uname.machine},
            "kversion": "%s %s" % (uname.sysname, uname.release), "boot-info": {"mode": "legacy-bios"},
            "pveversion": "pve-manager/%s/%s (enva lab)" % (PVE_VERSION["version"], PVE_VERSION["repoid"]),
            "rootfs": {"total": 0, "used": 0, "avail": 0, "free": 0}, "node": node.name}


def api_cluster_status(server, _authid, _params):
    entries = [{"type": "cluster", "id": "cluster", "name": "enva-lab", "nodes": len(server.lab.nodes),
                "quorate": 1, "version": len(server.lab.nodes)}]
    for index, node in enumerate(server.lab.nodes.values(), 1):
        entries.append({"type": "node", "id": "node/%s" % node.name, "name": node.name, "nodeid": index,
                        "online": 1, "local": int(index == 1), "ip": "127.0.0.1", "level": ""})
    return entries


def _vm_entry(node, vmid, status):
    entry = {"id": "lxc/%d" % vmid, "type": "lxc", "node": node.name, "maxcpu": status["cpus"]}
    entry.update({key: status[key] for key in ("vmid", "name", "status", "uptime", "cpu", "mem", "maxmem",
                                               "disk", "maxdisk", "diskread", "diskwrite", "netin", "netout",
                                               "template") if key in status})
    for key in ("tags", "lock"):
        if key in status:
            entry[key] = status[key]
    return entry


def _visible_cts(server, authid, node):
    for vmid in node.vmids():
        if not server.access.check(authid, "/vms/%d" % vmid, ["VM.Audit"], noerr=True):
            continue
        try:
            yield vmid, ct_status(node, vmid)
        except (ApiError, OSError):
            continue


def api_cluster_resources(server, authid, params):
    kind = params.get("type")
    resources = []
    for node in server.lab.nodes.values():
        if kind in (None, "node") and server.access.check(authid, "/nodes/%s" % node.name, ["Sys.Audit"], noerr=True):
            entry = _node_entry(server, node)
            entry.pop("ssl_fingerprint")
            entry["cgroup-mode"] = 2 if cgroup_memory.layout(str(node.cgroup_root))[0] == "v2" else 1
            resources.append(entry)
        if kind in (None, "vm"):
            resources.extend(_vm_entry(node, vmid, status) for vmid, status in _visible_cts(server, authid, node))
    return resources


def api_lxc_list(server, authid, params):
    node = server.lab.node(params["node"])
    result = []
    for vmid, status in _visible_cts(server, authid, node):
        entry = {key: value for key, value in status.items() if key not in ("ha", "type")}
        result.append(entry)
    return result


def _put_properties(server):
    return server.schema.paths["/nodes/{node}/lxc/{vmid}/config"]["PUT"]["parameters"]["properties"]


def api_config_get(server, _authid, params):
    node = server.lab.node(params["node"])
    config = node.load(params["vmid"])
    if params.get("snapshot"):
        raise ApiError(500, "snapshot '%s' does not exist" % params["snapshot"])
    properties = server.schema.paths["/nodes/{node}/lxc/{vmid}/config"]["GET"]["returns"]["properties"]
    values = typed_config(config.merged(with_pending=not params.get("current")), properties)
    if config.description:
        values["description"] = config.description
    values["digest"] = config.digest
    return values


def api_pending(server, _authid, params):
    node = server.lab.node(params["node"])
    config = node.load(params["vmid"])
    properties = _put_properties(server)
    current = typed_config(config.current, properties)
    pending = typed_config(config.pending, properties)
    keys = sorted(set(current) | set(pending) | set(config.pending_delete))
    result = [{"key": "digest", "value": config.digest}]
    for key in keys:
        item = {"key": key}
        if key in current:
            item["value"] = current[key]
        if key in pending:
            item["pending"] = pending[key]
        if key in config.pending_delete:
            item["delete"] = 1
        result.append(item)
    return result


def _modify_permissions(server, authid, vmid, keys):
    """PVE's check_ct_modify_config_perm: the privilege each changed key needs on /vms/VMID."""
    for key in sorted(keys):
        if key in ("cores", "cpuunits", "cpulimit"):
            privilege = "VM.Config.CPU"
        elif key == "rootfs" or re.match(r"^mp\d+$", key):
            privilege = "VM.Config.Disk"
        elif key in ("memory", "swap"):
            privilege = "VM.Config.Memory"
        elif re.match(r"^net\d+$", key) or key in ("nameserver", "searchdomain", "hostname"):
            privilege = "VM.Config.Network"
        else:
            privilege = "VM.Config.Options"
        server.access.check(authid, "/vms/%d" % vmid, [privilege])


def api_config_put(server, authid, params):
    node = server.lab.node(params["node"])
    vmid = params["vmid"]
    updates = {key: value for key, value in params.items() if key not in PUT_META}
    deletions = [key for key in re.split(r"[,;\s]+", params.get("delete", "")) if key]
    reverts = [key for key in re.split(r"[,;\s]+", params.get("revert", "")) if key]
    if not updates and not deletions and not reverts:
        raise ApiError(400, "no options specified")
    clash = sorted(set(updates) & set(deletions))
    if clash:
        raise param_error({"delete": "cannot set and delete '%s' at the same time" % clash[0]})
    with server.lab.lock:
        config = node.load(vmid)
        if config.current.get("lock"):
            raise ApiError(500, "CT is locked (%s)" % config.current["lock"])
        if params.get("digest") and params["digest"] != config.digest:
            raise ApiError(500, "detected modified configuration - file changed by other user? Try again.")
        _modify_permissions(server, authid, vmid, set(updates) | set(deletions) | set(reverts))
        pending = dict(config.pending)
        pending_delete = [key for key in config.pending_delete if key not in reverts]
        for key in reverts:
            pending.pop(key, None)
        cgroup = node.cgroup(vmid)
        apply_now, apply_deletions = {}, []
        for key, value in updates.items():
            pending.pop(key, None)
            if not cgroup.running or key in FASTPLUG or key in HOTPLUG:
                apply_now[key] = value
            else:
                pending[key] = value
        for key in deletions:
            pending.pop(key, None)
            if not cgroup.running or key in FASTPLUG or key in HOTPLUG:
                apply_deletions.append(key)
            elif key not in pending_delete:
                pending_delete.append(key)
        hot = (set(apply_now) | set(apply_deletions)) & HOTPLUG
        if cgroup.running and hot:
            memory = int(apply_now.get("memory", CONFIG_DEFAULTS["memory"] if "memory" in apply_deletions else config.value("memory")))
            swap = int(apply_now.get("swap", CONFIG_DEFAULTS["swap"] if "swap" in apply_deletions else config.value("swap")))
            try:
                cgroup.set_limits(memory, swap, server.lab.mounts)
            except CgroupWriteError as error:
                # PVE collects hot-plug errors and refuses the whole update without writing the config.
                raise param_error({sorted(hot)[0]: "unable to hotplug %s: %s" % (sorted(hot)[0], error)}) from None
        text = edit_config_text(config.text, {key: str(value) for key, value in apply_now.items()},
                                apply_deletions, pending, pending_delete)
        write_atomically(node.config_path(vmid), text)
        server.log_line("config of CT %d on %s changed by %s: set %s, deleted %s" % (
            vmid, node.name, authid, ", ".join("%s=%s" % item for item in sorted(apply_now.items())) or "-",
            ", ".join(apply_deletions) or "-"))
    return None


def api_status_current(server, _authid, params):
    node = server.lab.node(params["node"])
    return ct_status(node, params["vmid"])


RRD_RESOLUTION = {"hour": 60, "day": 1800, "week": 10800, "month": 43200, "year": 604800}


def api_rrddata(server, _authid, params):
    node = server.lab.node(params["node"])
    vmid = params["vmid"]
    node.load(vmid)
    step = RRD_RESOLUTION[params["timeframe"]]
    history = list(server.lab.samples.get((node.name, vmid), ()))
    end = int(time.time()) // step * step
    points = []
    for slot in range(end - 69 * step, end + step, step):
        inside = [values for stamp, values in history if slot <= stamp < slot + step]
        point = {"time": slot}
        if inside:
            for key in inside[0]:
                series = [values[key] for values in inside]
                point[key] = max(series) if params.get("cf") == "MAX" else sum(series) / len(series)
        points.append(point)
    return points


def _lifecycle(action, kind):
    def run(server, authid, params):
        node = server.lab.node(params["node"])
        vmid = params["vmid"]
        node.load(vmid)
        running = node.cgroup(vmid).running
        if action == "start" and running:
            raise ApiError(500, "CT %d already running" % vmid)
        if action == "stop" and not running:
            raise ApiError(500, "CT %d not running" % vmid)
        if node.labctl is None:
            raise ApiError(501, "starting and stopping CTs is not available for synthetic CTs")
        task = Task(node.name, kind, vmid, authid, [str(node.labctl), action, str(vmid)],
                    server.lab.labdir / "api" / "tasks")
        server.lab.tasks[task.upid] = task
        task.thread.start()
        return task.upid
    return run


def api_task_status(server, _authid, params):
    task = server.lab.tasks.get(params["upid"])
    if task is None:
        raise ApiError(500, "no such task")
    return dict(task.info)


ROUTES = {
    ("GET", "/version"): api_version,
    ("GET", "/access/ticket"): api_ticket_get,
    ("POST", "/access/ticket"): api_ticket_post,
    ("GET", "/nodes"): api_nodes,
    ("GET", "/nodes/{node}/status"): api_node_status,
    ("GET", "/cluster/status"): api_cluster_status,
    ("GET", "/cluster/resources"): api_cluster_resources,
    ("GET", "/nodes/{node}/lxc"): api_lxc_list,
    ("GET", "/nodes/{node}/lxc/{vmid}/config"): api_config_get,
    ("PUT", "/nodes/{node}/lxc/{vmid}/config"): api_config_put,
    ("GET", "/nodes/{node}/lxc/{vmid}/pending"): api_pending,
    ("GET", "/nodes/{node}/lxc/{vmid}/status/current"): api_status_current,
    ("GET", "/nodes/{node}/lxc/{vmid}/rrddata"): api_rrddata,
    ("POST", "/nodes/{node}/lxc/{vmid}/status/start"): _lifecycle("start", "vzstart"),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/stop"): _lifecycle("stop", "vzstop"),
    ("GET", "/nodes/{node}/tasks/{upid}/status"): api_task_status,
}


# --- command line ----------------------------------------------------------------------------------------

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
        return Lab(nodes, labdir, synthetic=True)
    config_dir = Path(args.config_dir) if args.config_dir else labdir / "etc" / "pve" / "lxc"
    config_dir.mkdir(parents=True, exist_ok=True)
    return Lab([Node(args.node, config_dir, args.cgroup_root, Path(args.labctl))], labdir)


def make_server(args):
    labdir = Path(args.labdir)
    ca, cert, key = ensure_pki(labdir)
    credentials = ensure_credentials(labdir, ca, args.node)
    secret = (labdir / "api" / "authkey").read_text(encoding="utf-8").strip()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.load_cert_chain(str(cert), str(key))
    lab = build_lab(args)
    server = ApiServer(parse_listen(args.listen), lab, Schema(), Access(credentials, secret),
                       args.log or labdir / "log" / "pve_api.log", tls)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text(encoding="ascii"))
    digest = hashlib.sha256(der).hexdigest().upper()
    server.fingerprint = ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
    return server, ca


def _sampler(lab, step, stop):
    while not stop.is_set():
        try:
            lab.sample()
        except Exception as error:  # pylint: disable=broad-except
            print("pve_api: rrd sample failed: %r" % error, file=sys.stderr)
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
    server.log_line("PVE API lab pid %d listening on %s:%d (%s)" % (
        os.getpid(), host, port, ", ".join(sorted(server.lab.nodes))))
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
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
    args = parser.parse_args(argv)
    if args.command == "init":
        ca, _cert, _key = ensure_pki(args.labdir)
        ensure_credentials(args.labdir, ca, args.node)
        print(Path(args.labdir) / "api" / "credentials.json")
        return 0
    if args.synthetic_cts and args.nodes < 1:
        parser.error("--nodes must be at least 1")
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
