"""Loopback port allocation that never hands out the same port twice in one sandbox.

Envoy binds with ``enable_reuse_port: false`` so a collision with another process fails
loudly; this allocator makes sure we never collide with ourselves (docs/explanation/envoy-notes.md §1).

Ports are taken from below the kernel's ephemeral range (``net.ipv4.ip_local_port_range``)
when there is room there: a port is handed out some time before its pod binds it (pods start
a few at a time), and a port of the ephemeral range can meanwhile become the local end of
some outgoing connection (measured on a 60-pod mesh: "Address already in use").  Outside
that range the kernel never picks it on its own; a free one is found by trying to bind it.

``allocate(hold=True)`` also keeps the port bound (``SO_REUSEADDR``, never listening) until
``release``: nobody else's ``bind`` gets it meanwhile (another sandbox's allocator included),
while a server that sets ``SO_REUSEADDR`` itself (Envoy, asyncio, Go) binds it next to the held socket.
The supervisor releases a pod's ports once the pod has started (its servers bound them), and a team's own
program's port right before that program starts (it may not set ``SO_REUSEADDR``).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 10000  # below this, ports of well-known local services are more likely
MIN_RANGE = 4096
LOCAL_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _below_ephemeral() -> range | None:
    try:
        low = int(LOCAL_PORT_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return range(LOWEST, low) if low - LOWEST >= MIN_RANGE else None


class PortAllocator:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._given: set[int] = set()
        self._range = _below_ephemeral()
        self._random = random.Random()
        self._held: dict[int, socket.socket] = {}

    def allocate(self, hold: bool = False) -> int:
        for _ in range(1000):
            port = self._random.choice(self._range) if self._range is not None else 0
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                continue
            port = int(sock.getsockname()[1])
            if port in self._given:
                sock.close()
                continue
            self._given.add(port)
            if hold:  # re-bound with SO_REUSEADDR, so that the pod's own server can take it over
                sock.close()
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((self.host, port))
                except OSError:
                    sock.close()
                    continue
                self._held[port] = sock
            else:
                sock.close()
            return port
        raise RuntimeError("no free loopback port found")

    def release(self, *ports: int) -> None:
        """Stop holding ``ports`` (allocated with ``hold=True``); unknown or 0 ports are ignored."""
        for port in ports:
            sock = self._held.pop(port, None)
            if sock is not None:
                sock.close()

    def release_all(self) -> None:
        self.release(*list(self._held))
