"""relay: a team's own edge service that forwards every request to frontend and drops the trace headers.

The broken twin of experiments/tracing-complete.json (mesh.yaml beside this file starts it with
``command``).  Standard library only; ``urllib`` reaches ``http://frontend`` through the pod's
sidecar (``HTTP_PROXY``).  It copies no header of the request it serves onto its call, so the
sidecar starts a new trace for that call: every request's trace breaks at relay.

    python3 relay.py PORT

``GET /healthz`` answers 200; any other GET answers frontend's status and body.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = "http://frontend"


class Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            status, body = 200, b'{"status": "ok"}'
        else:
            try:  # deliberately without the incoming x-request-id, traceparent, b3 or x-b3-* headers
                with urllib.request.urlopen(UPSTREAM + self.path, timeout=5) as answer:
                    status, body = answer.status, answer.read()
            except urllib.error.HTTPError as exc:
                status, body = exc.code, exc.read()
            except OSError as exc:
                status, body = 502, f'{{"error": "{type(exc).__name__}"}}'.encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None  # no line per request in the pod's log


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Relay)
    server.daemon_threads = True
    server.serve_forever()
