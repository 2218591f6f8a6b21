"""relay: a team's own edge service that forwards every request to frontend and drops the trace headers.

The broken twin of experiments/tracing-complete.json (mesh.yaml beside this file starts it with
``command``).  Standard library only (a threaded WSGI server); ``urllib`` reaches
``http://frontend`` through the pod's sidecar (``HTTP_PROXY``).  It copies no header of the
request it serves onto its call, so the sidecar starts a new trace for that call: every request's
trace breaks at relay.

    python3 relay.py PORT

``GET /healthz`` answers 200; any other request answers frontend's status and body.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

UPSTREAM = "http://frontend"


def relay(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO") or "/"
    if path == "/healthz":
        status, body = 200, b'{"status": "ok"}'
    else:  # deliberately without the incoming x-request-id, traceparent, b3 or x-b3-* headers
        query = environ.get("QUERY_STRING")
        try:
            with urllib.request.urlopen(UPSTREAM + path + (f"?{query}" if query else ""), timeout=5) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        except OSError as exc:
            status, body = 502, f'{{"error": "{type(exc).__name__}"}}'.encode()
    start_response(f"{status} {HTTPStatus(status).phrase}", [("content-type", "application/json"),
                                                            ("content-length", str(len(body)))])
    return [body]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None  # no line per request in the pod's log


class ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128  # a connection per request (HTTP/1.0): socketserver's 5 drops connects under load


if __name__ == "__main__":
    make_server("127.0.0.1", int(sys.argv[1]), relay, ThreadedServer, QuietHandler).serve_forever()
