"""Loopback port allocation that never hands out the same port twice in one sandbox.

Envoy binds with ``enable_reuse_port: false`` so a collision with another process fails
loudly; this allocator makes sure we never collide with ourselves (docs/envoy-notes.md §1).
"""

from __future__ import annotations

import socket


class PortAllocator:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._given: set[int] = set()

    def allocate(self) -> int:
        for _ in range(1000):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((self.host, 0))
                port = int(sock.getsockname()[1])
            if port not in self._given:
                self._given.add(port)
                return port
        raise RuntimeError("no free loopback port found")
