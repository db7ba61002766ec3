"""The test's Alertmanager webhook receiver: every POST body, with the time it arrived, as one JSON line.

    webhook_receiver.py --listen 127.0.0.1:PORT --out posts.jsonl
Loopback only; stdlib only; stops on SIGTERM.
"""

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    if host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the receiver listens on loopback only")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1 << 20))
            try:
                payload = json.loads(body)
            except ValueError:
                payload = {"unparsed": body.decode("utf-8", "replace")}
            with open(args.out, "a") as handle:
                handle.write(json.dumps({"received": time.time(), "path": self.path, "payload": payload}) + "\n")
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args):
            pass

    HTTPServer((host, int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
