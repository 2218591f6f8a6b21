"""Envoy's admin API over owner-only Unix sockets: the one way into a sandbox Envoy's admin.

Every Envoy of a sandbox serves its admin API on ``<state>/admin/<pod>.sock`` (mode 0600,
in a 0700 state directory), never on a TCP port, so no other local user can reach
``/runtime_modify``, ``/quitquitquit``, ``/healthcheck/fail`` or ``/drain_listeners``.
What others may read — ``/stats/prometheus`` and readiness — is served by each Envoy's
stats listener on 127.0.0.1 (``listeners.stats_listener``); see docs/explanation/envoy-notes.md.

``EnvoyAdmin`` is the asynchronous client (aiohttp over the socket) that ``pods``
(readiness) and ``faults`` (runtime keys, counters, endpoint read-back) use inside the
supervisor; ``get_json`` / ``request`` are the synchronous side (httpx) for tests and tools.
``socket_path`` decides where a pod's socket lives.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from chaosmesh_qa.errors import SandboxStartError

SOCKET_MODE = 0o600
SOCKET_SUFFIX = ".sock"
# sun_path holds 108 bytes including the terminating NUL
MAX_SOCKET_PATH = 107
BASE_URL = "http://envoy-admin"  # the host part is ignored on a Unix socket
TIMEOUT_S = 10.0
READY_TIMEOUT_S = 1.0


def socket_path(admin_dir: Path, pod_name: str) -> Path:
    """Where the admin socket of ``pod_name`` lives: ``<admin_dir>/<pod>.sock``.

    A name that would not fit a Unix socket address is replaced by a short digest of it;
    a directory too long for even that is a start error naming it.
    """
    path = admin_dir / f"{pod_name}{SOCKET_SUFFIX}"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        path = admin_dir / f"{hashlib.sha256(pod_name.encode()).hexdigest()[:12]}{SOCKET_SUFFIX}"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SandboxStartError(f"state directory {admin_dir.parent}: too long for its Unix sockets ({path} is "
                                f"{len(os.fsencode(path))} bytes, at most {MAX_SOCKET_PATH}); choose a shorter one")
    return path


class EnvoyAdmin:
    """Asynchronous client of one Envoy's admin socket; one keep-alive session, opened on first use.

    ``get`` / ``post`` take an admin path (``"/runtime?format=json"``) and are used as
    ``async with admin.get(path) as response``, exactly like ``aiohttp.ClientSession``.
    """

    def __init__(self, socket: Path | str) -> None:
        self.socket = Path(socket)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                base_url=BASE_URL, connector=aiohttp.UnixConnector(path=str(self.socket)),
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        return self._session

    def get(self, path: str, **kwargs: Any) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self._http().get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self._http().post(path, **kwargs)

    async def ready(self) -> bool:
        """``GET /ready`` answers 200: the initial listeners and clusters are loaded."""
        try:
            async with self.get("/ready", timeout=aiohttp.ClientTimeout(total=READY_TIMEOUT_S)) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    def close(self) -> Coroutine[Any, Any, None]:
        """Detach the session now (a later call opens a new one) and return the coroutine closing it."""
        session, self._session = self._session, None
        return _close(session)


async def _close(session: aiohttp.ClientSession | None) -> None:
    if session is not None:
        with contextlib.suppress(Exception):
            await session.close()


def request(socket: Path | str, method: str, path: str, timeout_s: float = 5.0, **kwargs: Any) -> httpx.Response:
    """One synchronous admin request (tests, tools); raises ``httpx.TransportError`` if nothing answers."""
    # a Unix socket: no TLS, so no SSL context (building one costs ~80 ms)
    transport = httpx.HTTPTransport(uds=str(socket), verify=False)
    with httpx.Client(transport=transport, base_url=BASE_URL, timeout=timeout_s, verify=False) as client:
        return client.request(method, path, **kwargs)


def get_json(socket: Path | str, path: str, timeout_s: float = 5.0) -> Any:
    """``GET`` an admin path that answers JSON (``/clusters?format=json``, ``/runtime?format=json``)."""
    response = request(socket, "GET", path, timeout_s)
    response.raise_for_status()
    return response.json()
