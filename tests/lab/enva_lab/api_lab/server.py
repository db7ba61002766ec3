"""The PVE API lab's HTTPS server: authentication, permission checks from the schema, dispatch, the log."""

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from enva_lab.api_lab.cluster import FORWARD_HEADERS, LOCAL_HEADER, PeerDown
from enva_lab.api_lab.errors import API_PREFIX, ApiError, perm_error
from enva_lab.api_lab.routes import ROUTES


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, lab, schema, access, log_path, tls):
        self.lab, self.schema, self.access = lab, schema, access
        self.peers = None               # enva_lab.api_lab.cluster.Peers when this node is one of a cluster
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
        self._raw_body = b""  # pylint: disable=attribute-defined-outside-init
        if length:
            self._raw_body = self.rfile.read(length)  # pylint: disable=attribute-defined-outside-init
            body = self._raw_body.decode("utf-8")
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
        self.server.access.refresh()        # credentials.json as pveum left it, read once per request
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
            peers = self.server.peers.refresh() if self.server.peers else None
            peers = peers if peers and peers.peers else None
            if peers and uri_params.get("node") in peers.peers and uri_params["node"] not in self.server.lab.nodes:
                self._forward(peers, uri_params["node"], method, authid, rel)
                return
            self._check_permissions(definition.get("permissions"), authid, uri_params)
            if "node" in uri_params:
                self.server.lab.node(uri_params["node"])
            values = self.server.schema.validate(definition, params)
            if peers and method == "GET" and self.headers.get(LOCAL_HEADER) != "1":
                values["__peers"] = peers
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

    def _forward(self, peers, node, method, authid, rel):
        """Send the request as it came to the peer that holds the node, and its answer back (pveproxy)."""
        headers = {name: self.headers[name] for name in FORWARD_HEADERS if self.headers.get(name)}
        try:
            status, reason, data = peers.request(node, method, self.path, self._raw_body, headers)
        except PeerDown as error:
            raise ApiError(595, "Connection refused or node offline: %s" % error) from None
        self._status = status  # pylint: disable=attribute-defined-outside-init
        self.send_response(status, reason)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "max-age=0")
        self.end_headers()
        self.wfile.write(data)
        self.server.log_line("%s - %s proxied %s %s%s to %s: %d" % (
            self.client_address[0], authid or "-", method, API_PREFIX, rel, node, status))

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
