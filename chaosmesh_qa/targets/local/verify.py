"""Active checks of the sandbox's mesh promises, for ``LocalTarget``'s verdict methods.

``plaintext_refused`` speaks plaintext HTTP to each pod's sidecar inbound port (127.0.0.1 only,
bounded by a timeout); ``call_tree_edges`` sends requests through the ingress and reads the demo
apps' call trees, in which every app names the caller identity its sidecar verified;
``authorization_answers`` sends one mTLS request to each pod's inbound port as each caller identity asked
for, with the certificate the sandbox's PKI issued that identity.  Called by
``chaosmesh_qa.targets.local.target.LocalTarget``; used by ``chaosmesh_qa.probes.mtls`` and ``.authz``.
"""

from __future__ import annotations

import socket
import ssl
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from chaosmesh_qa.errors import MeasurementFailed
from chaosmesh_qa.targets.local.pki import IdentityFiles, issued

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


def authorization_answers(status: dict[str, Any], pki_dir: Path, service: str,
                          requests: dict[str, str]) -> list[dict[str, Any]]:
    """One record per serving pod of ``service`` and caller identity of ``requests`` (SPIFFE id -> path): the
    status its sidecar answered to ``GET <path>`` with ``Host: <service>`` over mTLS as that identity."""
    records = []
    for pod in status["pods"]:
        if pod["service"] != service or pod["state"] not in ("ready", "degraded"):
            continue
        for principal, path in sorted(requests.items()):
            files = issued(pki_dir, principal)
            answer, detail = (None, "the sandbox's PKI has issued no certificate for it") if files is None \
                else _try_as(files, int(pod["ports"]["inbound"]), service, path, str(pki_dir / "ca.crt"))
            records.append({"how": "sent", "pod": pod["name"], "version": pod["version"], "principal": principal,
                            "path": path, "codes": {} if answer is None else {str(answer): 1}, "detail": detail})
    return records


def _try_as(files: IdentityFiles, port: int, service: str, path: str, ca: str) -> tuple[int | None, str]:
    try:
        context = ssl.create_default_context(cafile=ca)
        context.check_hostname = False
        context.load_cert_chain(files.cert, files.key)
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw, \
                context.wrap_socket(raw, server_hostname=service) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {service}\r\nConnection: close\r\n\r\n".encode())
            first = b""
            while b"\r\n" not in first and len(first) < 4096 and (chunk := tls.recv(4096)):
                first += chunk
    except OSError as exc:  # a pod that just died, a workload that takes no mTLS (DISABLE)
        return None, f"no answer over mTLS: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    line = first.split(b"\r\n", 1)[0].decode("ascii", "replace")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not line.startswith("HTTP/") or not parts[1].isdigit():
        return None, f"no HTTP answer over mTLS ({line[:60]!r})"
    return int(parts[1]), line


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
