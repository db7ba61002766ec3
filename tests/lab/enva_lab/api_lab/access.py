"""PVE's access model: users, API tokens, tickets, CSRF tokens and privilege checks on ACL paths."""

import base64
import hashlib
import hmac
import json
import re
import time
from pathlib import Path

from enva_lab.api_lab.errors import ApiError, perm_error

TICKET_LIFETIME = 7200
ALL_PRIVILEGES = (
    "Sys.Audit", "Sys.Modify", "Sys.PowerMgmt", "Sys.Console", "Sys.Syslog", "VM.Allocate", "VM.Audit",
    "VM.Backup", "VM.Clone", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit", "VM.Config.Disk",
    "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options", "VM.Console",
    "VM.Migrate", "VM.Monitor", "VM.PowerMgmt", "VM.Snapshot", "VM.Snapshot.Rollback",
)
# PVE's built-in roles that the lab's recipes name (pveum role list); custom roles come from credentials.json.
BUILTIN_ROLES = {
    "Administrator": ALL_PRIVILEGES,
    "NoAccess": (),
    "PVEAuditor": ("Sys.Audit", "VM.Audit"),
    "PVEVMAdmin": tuple(privilege for privilege in ALL_PRIVILEGES if privilege.startswith("VM.")),
}

_TOKEN_ID = re.compile(r"^(?P<user>[^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]+)!(?P<token>[A-Za-z][A-Za-z0-9.\-_]+)$")


class Access:
    """PVE's users, tokens, tickets, CSRF tokens and privilege checks, from credentials.json."""

    def __init__(self, credentials, secret, path=None):
        self._secret = secret.encode()
        self.path = Path(path) if path else None
        self._stamp = None
        self._load(credentials)

    def _load(self, credentials):
        self.users = credentials["users"]
        self.tokens = credentials["tokens"]
        self.roles = credentials.get("roles", {})
        self.acl = credentials.get("acl", [])

    def refresh(self):
        """Read ``credentials.json`` again when it changed (pveum edits it while the server runs, as PVE's
        user.cfg is edited under a running pveproxy); returns self."""
        if self.path is not None:
            try:
                stamp = self.path.stat().st_mtime_ns
                if stamp != self._stamp:
                    self._load(json.loads(self.path.read_text(encoding="utf-8")))
                    self._stamp = stamp
            except (OSError, ValueError):
                pass
        return self

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

    def internal_ticket(self, username="root@pam"):
        """A ticket this node signs for itself (a cluster peer's own entries are fetched as root@pam, as PVE's
        nodes trust each other through the shared authkey)."""
        data = "PVE:%s:%08X" % (username, int(time.time()))
        return "%s::%s" % (data, self._sign(data))

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

    def _roles(self, who, path):
        """PVE::AccessControl::roles: walk the path from ``/`` down to ``path``; at each level an ACL entry
        for ``who`` (a token with privilege separation is looked up among the tokens, anyone else among the
        users) replaces what the levels above gave, and counts below its own path only with ``propagate``."""
        kind = "tokens" if "!" in who else "users"
        parts = [part for part in path.split("/") if part]
        levels = ["/"] + ["/" + "/".join(parts[:index]) for index in range(1, len(parts) + 1)]
        roles = set()
        for level in levels:
            final = level == levels[-1]
            entries = [entry for entry in self.acl
                       if entry["path"].rstrip("/") == level.rstrip("/") and who in entry.get(kind, ())]
            found = {role for entry in entries if final or entry.get("propagate", True) for role in entry["roles"]}
            if found:
                roles = found
        if "NoAccess" in roles:
            return {"NoAccess"}
        return roles

    def _role_privileges(self, roles):
        privileges = set()
        for role in roles:
            privileges.update(BUILTIN_ROLES.get(role, ()) or self.roles.get(role, ()))
        return privileges

    def privileges(self, authid, path):
        """What ``authid`` holds on ``path`` (PVE's RPCEnvironment::permissions): a user its roles'
        privileges; a token without privilege separation its user's; a token with it only what both it
        and its user hold (the intersection)."""
        if authid == "root@pam":
            return set(ALL_PRIVILEGES)
        if "!" in authid:
            user = authid.split("!", 1)[0]
            token = self.tokens.get(authid)
            if token is None:
                return set()
            user_privileges = self._role_privileges(self._roles(user, path))
            if not token.get("privsep", True):
                return user_privileges
            return user_privileges & self._role_privileges(self._roles(authid, path))
        return self._role_privileges(self._roles(authid, path))

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
