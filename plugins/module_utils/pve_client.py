# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way enva.pve modules talk to the Proxmox VE API.

* :func:`pve_argument_spec` is the shared connection spec (documented by the ``enva.pve.pve`` doc fragment),
  with the ``PROXMOX_*`` environment fallbacks community.proxmox uses;
* :func:`pve_module` builds an AnsibleModule from it plus the module's own options, with check mode on;
* :func:`connect` returns a :class:`PveApi` (proxmoxer's https backend, API token or password + ticket);
  every call fails with :class:`PveApiError` whose message says what went wrong and what to change;
* :func:`describe_failure` is that translation as a pure function (tested on its own).
"""

from __future__ import absolute_import, division, print_function

import os
import re
import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

__metaclass__ = type

PROXMOXER_IMPORT_ERROR = None
try:
    from proxmoxer import ProxmoxAPI
    from proxmoxer.core import AuthenticationError, ResourceException
except ImportError:
    PROXMOXER_IMPORT_ERROR = traceback.format_exc()
    ProxmoxAPI = None

    class AuthenticationError(Exception):
        """Stand-in so isinstance() checks work without proxmoxer (connect() fails before any call)."""

    class ResourceException(Exception):
        """Stand-in so isinstance() checks work without proxmoxer."""

REQUESTS_IMPORT_ERROR = None
try:
    import requests
except ImportError:
    REQUESTS_IMPORT_ERROR = traceback.format_exc()
    requests = None


def pve_argument_spec():
    """The connection options, a fresh dict each call (env fallbacks named as community.proxmox names them)."""
    return dict(
        api_host=dict(type="str", required=True, fallback=(env_fallback, ["PROXMOX_HOST"])),
        api_port=dict(type="int", default=8006, fallback=(env_fallback, ["PROXMOX_PORT"])),
        api_user=dict(type="str", required=True, fallback=(env_fallback, ["PROXMOX_USER"])),
        api_password=dict(type="str", no_log=True, fallback=(env_fallback, ["PROXMOX_PASSWORD"])),
        api_token_id=dict(type="str", no_log=False, fallback=(env_fallback, ["PROXMOX_TOKEN_ID"])),
        api_token_secret=dict(type="str", no_log=True, fallback=(env_fallback, ["PROXMOX_TOKEN_SECRET"])),
        validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["PROXMOX_VALIDATE_CERTS"])),
        ca_path=dict(type="path", fallback=(env_fallback, ["PROXMOX_CA_PATH"])),
        api_timeout=dict(type="int", default=5, fallback=(env_fallback, ["PROXMOX_API_TIMEOUT"])),
    )


def pve_module(argument_spec=None, required_one_of=None, required_together=None, **kwargs):
    """An AnsibleModule with the connection options merged in front of ``argument_spec``; check mode on."""
    spec = pve_argument_spec()
    spec.update(argument_spec or {})
    return AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
        required_one_of=[("api_password", "api_token_id")] + list(required_one_of or []),
        required_together=[("api_token_id", "api_token_secret")] + list(required_together or []),
        **kwargs
    )


class PveApiError(Exception):
    """A failed PVE API call; ``str()`` is the message for the user.

    ``status`` is the HTTP status (None when no answer came), ``reason`` PVE's message (its HTTP reason
    phrase), ``errors`` the per-parameter errors of a 400, ``kind`` a short word for the failure
    (see :func:`describe_failure`).
    """

    def __init__(self, message, kind, status=None, reason=None, errors=None):
        super(PveApiError, self).__init__(message)
        self.kind = kind
        self.status = status
        self.reason = reason
        self.errors = errors or {}


_PERMISSION = re.compile(r"Permission check failed \((?P<path>[^,)]+), (?P<privs>[^)]+)\)")
_CONFIG_MISSING = re.compile(r"Configuration file '(?P<path>[^']+)' does not exist")
_LOGIN_CODE = re.compile(r"code: (\d+)")
_TLS_REASON = re.compile(r"certificate verify failed: ([^(\]']+)")
_HOSTNAME_MISMATCH = re.compile(r"[Hh]ostname mismatch, (certificate is not valid for '[^']+')")


def parse_permission_failure(reason):
    """``(path, [privileges])`` of PVE's ``Permission check failed (/vms/2017, VM.Config.Memory)``, else None.

    A check of "any of" several privileges names them joined by ``|``.
    """
    match = _PERMISSION.search(reason or "")
    if match is None:
        return None
    return match.group("path"), match.group("privs").split("|")


class Connection(object):
    """What the messages need to know of the connection (never a secret)."""

    def __init__(self, host, port, user, token_id=None, api_timeout=5, validate_certs=True, ca_path=None):
        self.host = host
        self.port = port
        self.user = user
        self.token_id = token_id
        self.api_timeout = api_timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path

    @classmethod
    def from_params(cls, params):
        return cls(params["api_host"], params["api_port"], params["api_user"],
                   params["api_token_id"] if params.get("api_token_secret") else None,
                   params["api_timeout"], params["validate_certs"], params.get("ca_path"))

    @property
    def url(self):
        host = "[%s]" % self.host if ":" in self.host and not self.host.startswith("[") else self.host
        return "https://%s:%s/api2/json" % (host, self.port)

    @property
    def who(self):
        if self.token_id:
            return "API token %s!%s" % (self.user, self.token_id)
        return "user %s" % self.user

    @property
    def credential_options(self):
        if self.token_id:
            return "api_user, api_token_id and api_token_secret (PROXMOX_USER, PROXMOX_TOKEN_ID, PROXMOX_TOKEN_SECRET)"
        return "api_user and api_password (PROXMOX_USER, PROXMOX_PASSWORD)"


def _describe_resource_exception(exc, action, conn, privilege):
    status = exc.status_code
    reason = (exc.content or "").strip()
    errors = exc.errors if isinstance(exc.errors, dict) else {}
    said = "%s %s" % (status, reason)
    if status == 401:
        return "auth", "Cannot %s: the PVE API at %s refused %s (%s). Check %s." % (
            action, conn.url, conn.who, said, conn.credential_options)
    if status == 403:
        parsed = parse_permission_failure(reason)
        if parsed is None:
            return "permission", "Cannot %s: permission denied for %s (%s)." % (action, conn.who, said)
        path, privs = parsed
        needed = privilege if privilege in privs else " or ".join(privs)
        hint = ""
        if conn.token_id:
            hint = (" A privilege-separated token needs it granted to the token as well as to its user"
                    " (pveum acl modify %s --tokens '%s!%s' --roles ROLE)." % (path, conn.user, conn.token_id))
        return "permission", "Cannot %s: %s lacks %s on %s (PVE: %s %s).%s" % (
            action, conn.who, needed, path, status, reason, hint)
    if status == 400:
        detail = "; ".join("%s: %s" % (key, str(value).strip()) for key, value in sorted(errors.items()))
        return "parameter", "Cannot %s: PVE refused the parameters (%s%s)." % (
            action, said, " - " + detail if detail else "")
    missing = _CONFIG_MISSING.search(reason)
    if missing:
        return "not_found", "Cannot %s: it does not exist there (PVE: %s %s)." % (action, status, reason)
    if "detected modified configuration" in reason:
        return "conflict", ("Cannot %s: the configuration was changed by someone else since it was read, so PVE"
                            " refused the write (digest mismatch; PVE: %s %s). Nothing was changed: run the task"
                            " again to start from the new configuration." % (action, status, reason))
    if "hostname lookup" in reason or "no such cluster node" in reason or "no such node" in reason:
        return "unknown_node", "Cannot %s: that node is not a node of this cluster (PVE: %s %s)." % (
            action, status, reason)
    detail = "; ".join("%s: %s" % (key, str(value).strip()) for key, value in sorted(errors.items()))
    return "api", "Cannot %s: PVE answered %s%s." % (action, said, " - " + detail if detail else "")


def _describe_transport_error(exc, action, conn):
    text = str(exc)
    if requests is not None and isinstance(exc, requests.exceptions.SSLError):
        mismatch = _HOSTNAME_MISMATCH.search(text)
        reason = mismatch.group(1) if mismatch else None
        if reason is None:
            match = _TLS_REASON.search(text)
            reason = match.group(1).strip() if match else "TLS handshake failed"
        trust = ("the CA in ca_path=%s" % conn.ca_path) if conn.ca_path else "the system's CA bundle (no ca_path given)"
        return "tls", ("Cannot %s: TLS verification of %s failed (%s), checked against %s. Set ca_path to the PEM"
                       " file of the CA that signed the PVE certificate (on a PVE node: /etc/pve/pve-root-ca.pem),"
                       " or, only on a network you trust, validate_certs: false." % (action, conn.url, reason, trust))
    if requests is not None and isinstance(exc, requests.exceptions.Timeout):
        return "timeout", ("Cannot %s: no answer from the PVE API at %s within api_timeout=%s s. Check api_host=%s"
                           " and api_port=%s, or raise api_timeout (PROXMOX_API_TIMEOUT)."
                           % (action, conn.url, conn.api_timeout, conn.host, conn.port))
    if requests is not None and isinstance(exc, requests.exceptions.ConnectionError):
        if "Connection refused" in text:
            why = "connection refused: nothing listens on port %s there" % conn.port
        elif "Name or service not known" in text or "Failed to resolve" in text or "nodename nor servname" in text:
            why = "the name %s does not resolve" % conn.host
        elif "timed out" in text:
            return _describe_transport_error(requests.exceptions.Timeout(text), action, conn)
        else:
            why = "connection failed"
        return "connection", "Cannot %s: cannot connect to the PVE API at %s (%s). Check api_host and api_port." % (
            action, conn.url, why)
    return "error", "Cannot %s: %s: %s" % (action, type(exc).__name__, text)


def describe_failure(exc, action, conn, privilege=None):
    """``(kind, message)`` for ``exc`` raised while trying to ``action`` (a phrase: "read the config of CT 2017").

    ``privilege`` is the one the caller needs (named first when PVE's 403 lists several).
    kinds: auth, permission, parameter, not_found, conflict, unknown_node, api, tls, timeout, connection, error.
    """
    if isinstance(exc, ResourceException):
        return _describe_resource_exception(exc, action, conn, privilege)
    if isinstance(exc, AuthenticationError):
        match = _LOGIN_CODE.search(str(exc))
        code = match.group(1) if match else "?"
        return "auth", "Cannot log in to the PVE API at %s as %s (HTTP %s). Check %s." % (
            conn.url, conn.user, code, conn.credential_options)
    return _describe_transport_error(exc, action, conn)


def _status_reason(exc):
    if isinstance(exc, ResourceException):
        return exc.status_code, (exc.content or "").strip(), exc.errors if isinstance(exc.errors, dict) else {}
    return None, None, {}


class PveApi(object):
    """A connected PVE API client: ``get``/``put``/``post`` by path, failures as :class:`PveApiError`."""

    def __init__(self, api, conn):
        self._api = api
        self.conn = conn

    def _call(self, method, path, action, privilege, params):
        resource = self._api(path.strip("/"))
        try:
            return getattr(resource, method)(**params)
        except Exception as exc:  # pylint: disable=broad-except
            kind, message = describe_failure(exc, action, self.conn, privilege)
            status, reason, errors = _status_reason(exc)
            raise PveApiError(message, kind, status, reason, errors)

    def get(self, resource, action, privilege=None, **params):
        return self._call("get", resource, action, privilege, params)

    def put(self, resource, action, privilege=None, **data):
        return self._call("put", resource, action, privilege, data)

    def post(self, resource, action, privilege=None, **data):
        return self._call("post", resource, action, privilege, data)


def connect(module):
    """A :class:`PveApi` for the module's connection options, or ``fail_json`` with a message saying why not."""
    if PROXMOXER_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("proxmoxer"), exception=PROXMOXER_IMPORT_ERROR)
    if REQUESTS_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("requests"), exception=REQUESTS_IMPORT_ERROR)
    params = module.params
    conn = Connection.from_params(params)
    verify = params["validate_certs"]
    if verify and conn.ca_path:
        if not os.path.isfile(conn.ca_path):
            module.fail_json(msg="ca_path %s does not exist or is not a file: give the PEM file of the CA that signed"
                                 " the PVE API certificate (on a PVE node: /etc/pve/pve-root-ca.pem)" % conn.ca_path)
        verify = conn.ca_path
    auth = {"user": params["api_user"]}
    if conn.token_id:
        auth.update(token_name=params["api_token_id"], token_value=params["api_token_secret"])
    else:
        auth["password"] = params["api_password"]
    try:
        api = ProxmoxAPI(params["api_host"], port=params["api_port"], verify_ssl=verify,
                         timeout=params["api_timeout"], **auth)
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(msg=describe_failure(exc, "log in", conn)[1])
    # The login ticket and CSRF token are secrets too: keep them out of anything the module returns.
    for value in api.get_tokens():
        if value:
            module.no_log_values.add(value)
    return PveApi(api, conn)
