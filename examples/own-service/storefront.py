"""storefront: a team's own service, as it would run in a cluster, run by chaosmesh-qa as a mesh workload.

Plain Python (standard library only, 3.9+), nothing mesh-specific: it calls other services by
their Kubernetes names (``http://catalog/items``,
``http://reviews.default.svc.cluster.local:8080/reviews``) and urllib sends those calls to the
HTTP proxy in ``http_proxy``/``HTTP_PROXY``, which the sandbox sets to the pod's sidecar, as
a cluster's DNS and iptables would make them reach it.

It has its own client policy, as real programs do: a timeout per attempt and retries on 5xx,
timeouts and connection errors (``STOREFRONT_TIMEOUT_S``, ``STOREFRONT_RETRIES``).  It copies
the trace headers of the request it serves onto its calls (Envoy cannot do that for it), unless
started with ``--drop-trace-headers``: the broken variant a tracing check must catch.

    python3 storefront.py PORT [--drop-trace-headers]

``GET /`` answers JSON: its service, pod, the caller identity its sidecar verified, the
``x-request-id`` it received, and one entry per call (the callee's answer, status, attempts,
milliseconds).  ``GET /?call=URL`` (repeatable) makes those calls instead of the default ones.
``GET /healthz`` answers 200.  Started by examples/own-service/mesh/mesh.yaml.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CALLS = ("http://catalog/items", "http://reviews.default.svc.cluster.local:8080/reviews")
# What a service must copy from the request it serves onto the requests it makes, so that a
# trace stays one trace: Envoy's request id, W3C trace context, and Zipkin B3 (single and multi).
TRACE_HEADERS = ("x-request-id", "traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid",
                 "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags")
TIMEOUT_S = float(os.environ.get("STOREFRONT_TIMEOUT_S", "1.0"))
RETRIES = int(os.environ.get("STOREFRONT_RETRIES", "2"))
DROP_TRACE_HEADERS = "--drop-trace-headers" in sys.argv[2:]
_XFCC_URI = re.compile(r"URI=([^;,]+)")
OPENER = urllib.request.build_opener()  # honours http_proxy / HTTP_PROXY and no_proxy


def call(url: str, headers: dict[str, str]) -> dict[str, object]:
    """GET ``url`` with up to RETRIES retries on 5xx, timeouts and connection errors."""
    started = time.monotonic()
    answer: dict[str, object] = {}
    for attempt in range(1, RETRIES + 2):
        try:
            with OPENER.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        except OSError as exc:  # timeouts, refused or reset connections
            status, body = 599, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {"body": body[:200].decode(errors="replace")}
        if status < 500:
            break
        if attempt <= RETRIES:
            time.sleep(0.025 * attempt)
    answer.update(url=url, status=status, attempts=attempt,
                  elapsed_ms=round((time.monotonic() - started) * 1000, 1))
    answer.pop("padding", None)
    return answer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            return self.reply(200, {"status": "ok"})
        xfcc = _XFCC_URI.search((self.headers.get("x-forwarded-client-cert") or "").split(",")[-1])
        propagated = {} if DROP_TRACE_HEADERS else {
            name: value for name in TRACE_HEADERS if (value := self.headers.get(name)) is not None}
        calls = parse_qs(url.query).get("call") or list(CALLS)
        upstreams = [call(target, propagated) for target in calls]
        status = 502 if any(u["status"] >= 500 for u in upstreams) else 200
        self.reply(status, {
            "service": os.environ.get("CHAOSMESH_SERVICE", "storefront"),
            "pod": os.environ.get("CHAOSMESH_POD", ""), "status": status,
            "caller": xfcc.group(1).strip('"') if xfcc else None,
            "request_id": self.headers.get("x-request-id"), "upstreams": upstreams,
        })

    def reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would fill the pod's log


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ["PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
