"""``pveum`` for the PVE API lab: the subset of PVE's user manager that the README's token recipe uses.

    pveum role add ROLE --privs "PRIV PRIV ..."
    pveum user add USER@REALM [--comment TEXT]
    pveum user token add USER@REALM TOKEN [--privsep 0|1] [--comment TEXT] [--output-format text|json]
    pveum acl modify PATH --roles ROLE[,ROLE] [--users U,...] [--tokens T,...] [--propagate 0|1]
    pveum acl list [--output-format text|json]
    pveum user permissions USERID|TOKENID [--path PATH]
    pveum user token permissions USER@REALM TOKEN [--path PATH]

It edits ``<labdir>/api/credentials.json`` (``$ENVA_LAB_DIR``, default /var/lib/enva-lab) under the same
lock the server takes; the running server reads the file again when it changes. Errors are PVE's words,
exit status 255 as PVE's CLI gives.
"""

import argparse
import json
import os
import re
import sys
import uuid
from pathlib import Path

from ansible_collections.enva.pve.plugins.module_utils.pve_ct_config import split_list

from enva_lab.api_lab.access import ALL_PRIVILEGES, BUILTIN_ROLES, Access
from enva_lab.api_lab.pki import Locked

_USER = re.compile(r"^[^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]+$")
_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9.\-_]+$")
_ROLE = re.compile(r"^[A-Za-z0-9.\-_]+$")
_ACL_PATH = re.compile(r"^/(vms(/\d+)?|nodes(/[A-Za-z0-9][A-Za-z0-9\-]*)?|storage(/[A-Za-z0-9][\w\-.]*)?|"
                       r"pool/[\w\-.]+|access(/groups(/[\w\-.]+)?|/realm(/[\w\-.]+)?)?|sdn(/.+)?)?$")


class PveumError(Exception):
    """A refusal, in PVE's words."""


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _save(path, data):
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def role_add(data, args):
    if not _ROLE.match(args.roleid):
        raise PveumError("invalid format - role name '%s'" % args.roleid)
    if args.roleid in data.setdefault("roles", {}) or args.roleid in BUILTIN_ROLES:
        raise PveumError("create role failed: role '%s' already exists" % args.roleid)
    privileges = split_list(args.privs)
    for privilege in privileges:
        if privilege not in ALL_PRIVILEGES:
            raise PveumError("invalid privilege '%s'" % privilege)
    data["roles"][args.roleid] = privileges


def user_add(data, args):
    if not _USER.match(args.userid):
        raise PveumError("value '%s' does not look like a valid user name" % args.userid)
    if args.userid in data["users"]:
        raise PveumError("create user failed: user '%s' already exists" % args.userid)
    data["users"][args.userid] = {"comment": args.comment} if args.comment else {}


def token_add(data, args):
    if args.userid not in data["users"]:
        raise PveumError("no such user ('%s')" % args.userid)
    if not _TOKEN.match(args.tokenid):
        raise PveumError("invalid format - token name '%s'" % args.tokenid)
    full = "%s!%s" % (args.userid, args.tokenid)
    if full in data["tokens"]:
        raise PveumError("Token already exists.")
    secret = str(uuid.uuid4())
    data["tokens"][full] = {"user": args.userid, "token_id": args.tokenid, "secret": secret,
                            "privsep": bool(int(args.privsep))}
    return {"full-tokenid": full, "info": {"privsep": str(int(args.privsep))}, "value": secret}


def acl_modify(data, args):
    path = "/" + args.path.strip("/") if args.path != "/" else "/"
    if not _ACL_PATH.match(path):
        raise PveumError("invalid ACL path '%s'" % args.path)
    roles = split_list(args.roles)
    users, tokens = split_list(args.users), split_list(args.tokens)
    if not users and not tokens:
        raise PveumError("either 'users', 'groups' or 'tokens' is required")
    for role in roles:
        if role not in data.get("roles", {}) and role not in BUILTIN_ROLES:
            raise PveumError("role '%s' does not exist" % role)
    for user in users:
        if user not in data["users"]:
            raise PveumError("user '%s' does not exist" % user)
    for token in tokens:
        user, _sep, name = token.partition("!")
        if token not in data["tokens"]:
            raise PveumError("no such token '%s' for user '%s'" % (name, user))
    entry = {"path": path, "propagate": bool(int(args.propagate)), "roles": roles}
    if users:
        entry["users"] = users
    if tokens:
        entry["tokens"] = tokens
    data.setdefault("acl", []).append(entry)


def acl_rows(data):
    rows = []
    for entry in data.get("acl", []):
        for kind, ugid_type in (("users", "user"), ("tokens", "token")):
            for ugid in entry.get(kind, ()):
                for role in entry["roles"]:
                    rows.append({"path": entry["path"], "type": ugid_type, "ugid": ugid, "roleid": role,
                                 "propagate": int(entry.get("propagate", True))})
    return rows


def _table(rows, columns):
    """PVE's CLI table (the ``text`` output format)."""
    widths = [max(len(column), *(len(str(row[column])) for row in rows)) for column in columns]

    def line(left, mid, right, fill):
        return left + mid.join(fill * (width + 2) for width in widths) + right

    out = [line("┌", "┬", "┐", "─"), "│" + "│".join(" %-*s " % (w, c) for w, c in zip(widths, columns)) + "│",
           line("╞", "╪", "╡", "═")]
    for index, row in enumerate(rows):
        if index:
            out.append(line("├", "┼", "┤", "─"))
        out.append("│" + "│".join(" %-*s " % (w, row[c]) for w, c in zip(widths, columns)) + "│")
    out.append(line("└", "┴", "┘", "─"))
    return "\n".join(out)


def _parser():
    parser = argparse.ArgumentParser(prog="pveum", description="The PVE API lab's pveum (a subset of PVE's).")
    sub = parser.add_subparsers(dest="group", required=True)
    role = sub.add_parser("role").add_subparsers(dest="action", required=True).add_parser("add")
    role.add_argument("roleid")
    role.add_argument("--privs", default="")
    user = sub.add_parser("user").add_subparsers(dest="action", required=True)
    add = user.add_parser("add")
    add.add_argument("userid")
    add.add_argument("--comment")
    perms = user.add_parser("permissions")
    perms.add_argument("userid")
    perms.add_argument("--path", default="/")
    perms.add_argument("--output-format", choices=("text", "json", "json-pretty"), default="text")
    tokens = user.add_parser("token").add_subparsers(dest="token_action", required=True)
    token_perms = tokens.add_parser("permissions")
    token_perms.add_argument("userid")
    token_perms.add_argument("tokenid")
    token_perms.add_argument("--path", default="/")
    token_perms.add_argument("--output-format", choices=("text", "json", "json-pretty"), default="text")
    token = tokens.add_parser("add")
    token.add_argument("userid")
    token.add_argument("tokenid")
    token.add_argument("--privsep", choices=("0", "1"), default="1")
    token.add_argument("--comment")
    token.add_argument("--output-format", choices=("text", "json", "json-pretty"), default="text")
    acl = sub.add_parser("acl").add_subparsers(dest="action", required=True)
    modify = acl.add_parser("modify")
    modify.add_argument("path")
    modify.add_argument("--roles", required=True)
    modify.add_argument("--users", default="")
    modify.add_argument("--tokens", default="")
    modify.add_argument("--propagate", choices=("0", "1"), default="1")
    listing = acl.add_parser("list")
    listing.add_argument("--output-format", choices=("text", "json", "json-pretty"), default="text")
    return parser


def _print(value, fmt, columns):
    if fmt.startswith("json"):
        print(json.dumps(value, indent=2 if fmt == "json-pretty" else None, sort_keys=True))
    elif isinstance(value, dict):
        print(_table([{"key": key, "value": json.dumps(item, separators=(",", ":")) if isinstance(item, dict)
                       else item} for key, item in value.items()], ["key", "value"]))
    else:
        print(_table(value, columns) if value else "")


def main(argv=None):
    args = _parser().parse_args(argv)
    path = Path(os.environ.get("ENVA_LAB_DIR") or "/var/lib/enva-lab") / "api" / "credentials.json"
    if not path.exists():
        print("pveum: %s does not exist: labctl up makes it" % path, file=sys.stderr)
        return 255
    try:
        with Locked(path.parent / ".lock"):
            data = _load(path)
            if args.group == "acl" and args.action == "list":
                _print(acl_rows(data), args.output_format, ["path", "type", "ugid", "roleid", "propagate"])
                return 0
            if args.group == "user" and "permissions" in (args.action, getattr(args, "token_action", None)):
                who = args.userid if args.action == "permissions" else "%s!%s" % (args.userid, args.tokenid)
                held = sorted(Access(data, "-").privileges(who, args.path))
                _print({args.path: {privilege: 1 for privilege in held}}, "json", [])
                return 0
            handler = {("role", "add"): role_add, ("user", "add"): user_add, ("user", "token"): token_add,
                       ("acl", "modify"): acl_modify}[(args.group, args.action)]
            result = handler(data, args)
            _save(path, data)
    except PveumError as error:
        print(str(error), file=sys.stderr)
        return 255
    if result is not None:
        _print(result, args.output_format, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
