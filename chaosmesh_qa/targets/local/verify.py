"""Active checks of the sandbox's mesh promises, for ``LocalTarget``'s verdict methods.

``plaintext_refused`` speaks plaintext HTTP to each pod's sidecar inbound port (127.0.0.1 only,
bounded by a timeout); ``call_tree_edges`` sends requests through the ingress and reads the demo
apps' call trees, in which every app names the caller identity its sidecar verified.  Called by
``chaosmesh_qa.targets.local.target.LocalTarget``; used by ``chaosmesh_qa.probes.mtls``.
"""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any

import httpx

from chaosmesh_qa.errors import MeasurementFailed

TIMEOUT_S = 2.0
MAX_SAMPLES = 1000
PLAINTEXT_REQUEST = b"GET / HTTP/1.1\r\nHost: chaosmesh-qa-plaintext-check\r\nConnection: close\r\n\r\n"


def plaintext_refused(status: dict[str, Any], service: str) -> list[dict[str, Any]]:
    """One record per serving pod of ``service``: did its inbound refuse a plaintext request?"""
    records = []
    for pod in status["pods"]:
        if pod["service"] != service or pod["state"] not in ("ready", "degraded"):
            continue
        port = int(pod["ports"]["inbound"])
        refused, detail = _try_plaintext(port)
        records.append({"pod": pod["name"], "version": pod["version"], "refused": refused, "detail": detail})
    return records


def _try_plaintext(port: int) -> tuple[bool, str]:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
            sock.sendall(PLAINTEXT_REQUEST)
            first = sock.recv(64)
    except ConnectionRefusedError:
        return True, "connection refused"
    except ConnectionResetError:
        return True, "connection reset at the TLS handshake"
    except TimeoutError:
        return True, f"no answer in {TIMEOUT_S:g} s"
    except OSError as exc:
        return True, f"{type(exc).__name__}: {exc}"
    if first.startswith(b"HTTP/"):
        return False, "answered plaintext HTTP: " + first.split(b"\r\n", 1)[0].decode("ascii", "replace")
    return True, "closed without an HTTP answer" if not first else "answered with non-HTTP bytes"


def call_tree_edges(status: dict[str, Any], samples: int) -> list[dict[str, Any]]:
    """Hops of ``samples`` requests through the ingress, with the principal each callee verified."""
    url, paths = status.get("ingress_url"), ["/"]
    if not url:
        raise MeasurementFailed("the sandbox has no ingress to send requests through")
    seen: Counter[tuple[str, str, str | None]] = Counter()
    with httpx.Client(timeout=TIMEOUT_S * 5) as client:
        for i in range(min(samples, MAX_SAMPLES)):
            try:
                body = client.get(url + paths[i % len(paths)]).json()
            except (httpx.HTTPError, ValueError):
                continue  # a failed request shows no edge; the others do
            if isinstance(body, dict):
                _walk("ingress", body, seen)
    return [{"source": s, "destination": d, "principal": p, "requests": n} for (s, d, p), n in sorted(
        seen.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or ""))]


def _walk(source: str, node: dict[str, Any], seen: Counter[tuple[str, str, str | None]]) -> None:
    service = node.get("service")
    if not isinstance(service, str):
        return
    if "caller" in node:  # a demo app reported what its sidecar verified; other workloads cannot
        caller = node["caller"]
        seen[(source, service, caller if isinstance(caller, str) else None)] += 1
    for child in node.get("upstreams") or []:
        if isinstance(child, dict):
            _walk(service, child, seen)
