"""Test helpers that talk to a running sandbox like a client or a mesh workload would.

Plain and mTLS requests, many requests at once, a sidecar's admin JSON, the first request that shows a
partition.  Used by the probe, action, target and emulation tests that send traffic through a sandbox.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from chaosmesh_qa.targets.local.envoy import admin


def hops(tree: dict[str, Any]) -> list[dict[str, Any]]:
    """Every hop of a demo-app call tree, depth first."""
    return [tree, *(hop for child in tree.get("upstreams", []) for hop in hops(child))]


async def _get_many(url: str, count: int, headers: dict[str, str], concurrency: int) -> list[tuple[int, Any]]:
    results: list[tuple[int, Any]] = []
    queue = iter(range(count))  # bounded: exactly `count` requests
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def worker() -> None:
            for _ in queue:
                async with session.get(url, headers=headers) as response:
                    results.append((response.status, await response.json(content_type=None)))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def get_many(url: str, count: int, headers: dict[str, str] | None = None,
             concurrency: int = 8) -> list[tuple[int, Any]]:
    assert url.startswith("http://127.0.0.1:"), "tests only send traffic to loopback"
    return asyncio.run(_get_many(url, count, headers or {}, concurrency))


async def _timed(url: str, count: int, concurrency: int) -> list[tuple[int, Any, float]]:
    results: list[tuple[int, Any, float]] = []
    queue = iter(range(count))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def worker() -> None:
            for _ in queue:
                started = time.monotonic()
                async with session.get(url) as response:
                    body = await response.json(content_type=None)
                results.append((response.status, body, time.monotonic() - started))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def timed_get_many(url: str, count: int, concurrency: int = 8) -> list[tuple[int, Any, float]]:
    """``count`` GETs: each one's status, call tree and seconds from sending to the whole body."""
    assert url.startswith("http://127.0.0.1:"), "tests only send traffic to loopback"
    return asyncio.run(_timed(url, count, concurrency))


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    return get_many(url, 1, headers, concurrency=1)[0]


def mesh_tls_get(port: int, pki_dir: Path, identity: str, path: str = "/") -> int:
    """GET over mTLS to a sidecar inbound port, presenting a workload identity of the mesh PKI.

    ``identity`` is the certificate stem, e.g. ``default-sa-catalog``; returns the HTTP status.
    """
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    context.check_hostname = False
    context.load_cert_chain(pki_dir / f"{identity}.crt", pki_dir / f"{identity}.key")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="mesh.local") as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def plaintext_get(port: int) -> bytes:
    """A plaintext HTTP request to ``port``; returns whatever came back (b"" if the peer hung up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data


def admin_json(admin_socket: str, path: str) -> Any:
    """GET a JSON admin path of a sandbox Envoy, over its owner-only Unix socket (``pod["admin_socket"]``)."""
    return admin.get_json(admin_socket, path)


def first_showing(http: httpx.Client, url: str, callee: str, failing: bool, since: float) -> float:
    """Milliseconds from ``since`` to the sending of the first request whose ``callee`` hop shows the
    partition (``failing``) or its end; bounded to 5 s."""
    deadline = time.perf_counter() + 5
    while time.perf_counter() < deadline:
        sent = time.perf_counter()
        hops = {u["service"]: u["status"] for u in http.get(url).json()["upstreams"]}
        if (hops[callee] >= 500) == failing:
            return (sent - since) * 1000
    raise AssertionError(f"{callee}: the partition's {'start' if failing else 'end'} never showed within 5 s")


def after_pooled_connections(url: str, shows: Callable[[int, Any, float], bool]) -> list[tuple[int, Any, float]]:
    """Three consecutive answers that ``shows`` the change, within ten requests: a connection a caller's app pooled
    before a listener change keeps the old filters until its next response, and one that races the drain's close
    fails once (docs/reference/kubernetes-target.md); both are transient."""
    answers: list[tuple[int, Any, float]] = []
    for _ in range(10):
        started = time.monotonic()
        code, tree = get(url)
        elapsed = time.monotonic() - started
        answers = [*answers, (code, tree, elapsed)] if shows(code, tree, elapsed) else []
        if len(answers) == 3:
            return answers
    raise AssertionError(f"no three answers in a row showed it within ten requests; the last: {code} {tree}")
