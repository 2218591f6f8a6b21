"""The stand-ins of the ServiceEntries' hosts: one process per mesh-external host, outside the mesh.

The supervisor starts them (``start``) before the pods and hands their ports to the control plane
(``ControlPlane.external_ports``), whose callers reach them through their sidecars' outbound
(``envoy.external``); they have no sidecar, as the real external service has none.  A stand-in is the demo app
(the Mesh document's ``external[].app``: latency, error rate and status, response size; by default it answers
200 at once; HTTPS where the host's DestinationRule originates TLS) forked like a pod's, or the team's own
``command`` (``{port}`` replaced by its port, ``PORT`` in its environment).
Each serves on 127.0.0.1 at a port of the sandbox; its log is ``<logs>/external/<host>.log``.
``stop`` stops them with the mesh.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp

from chaosmesh_qa.apps.demo import HEALTH_PATH
from chaosmesh_qa.mesh.model import ExternalHost
from chaosmesh_qa.targets.local import processes
from chaosmesh_qa.targets.local.forkserver import ForkServer
from chaosmesh_qa.targets.local.pki import MeshPKI
from chaosmesh_qa.targets.local.processes import ChildProcess

log = logging.getLogger("chaosmesh_qa.standins")
READY_TIMEOUT_S = 30.0


def stand_in_identity(host: str) -> str:
    """The identity of the certificate a TLS stand-in serves (its DNS SAN is the host): outside the mesh's."""
    return f"spiffe://external/ns/external/sa/{host}"


class StandIns:
    def __init__(self, logs: Path) -> None:
        self.logs = logs / "external"
        self.ports: dict[str, int] = {}  # host -> port
        self._processes: dict[str, ChildProcess] = {}

    async def start(self, hosts: list[ExternalHost], ports: dict[str, int], forkserver: ForkServer,
                    session: aiohttp.ClientSession, pki: MeshPKI) -> None:
        """Start one stand-in per host at ``ports[host]`` and wait until each answers (a command's on ``/``: any
        HTTP answer; the demo app's on its health path).  Toward a host whose DestinationRule originates TLS
        (``ExternalHost.originates_tls``) the demo app serves HTTPS with a certificate ``pki`` issues for the host."""
        await asyncio.gather(*(self._start(entry, ports[entry.host], forkserver, session, pki) for entry in hosts))

    async def _start(self, entry: ExternalHost, port: int, forkserver: ForkServer,
                     session: aiohttp.ClientSession, pki: MeshPKI) -> None:
        log_path = self.logs / f"{entry.host}.log"
        env = {"PORT": str(port), "CHAOSMESH_SERVICE": entry.host}
        if entry.command is not None:
            argv = [arg.replace("{port}", str(port)) for arg in entry.command]
            process: ChildProcess = await processes.spawn(argv, log_path, env)
        else:
            behaviour = entry.behaviour
            config = {"service": entry.host, "version": "external", "pod": f"{entry.host}-stand-in", "port": port,
                      "outbound_port": 0,
                      "behaviour": {"latency_ms": behaviour.latency_ms, "error_rate": behaviour.error_rate,
                                    "error_status": behaviour.error_status,
                                    "response_bytes": behaviour.response_bytes}}
            if entry.originates_tls:
                files = pki.identity(stand_in_identity(entry.host), entry.host)
                config["tls"] = {"cert": files.cert, "key": files.key}
            process = await forkserver.spawn({**env, "CHAOSMESH_APP": json.dumps(config)}, log_path)
        self._processes[entry.host] = process
        self.ports[entry.host] = port
        scheme = "https" if entry.originates_tls else "http"
        url = f"{scheme}://127.0.0.1:{port}{HEALTH_PATH if entry.command is None else '/'}"

        async def answers() -> bool:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1), ssl=False) as response:
                    return entry.command is not None or response.status == 200
            except (aiohttp.ClientError, TimeoutError, OSError):
                return False

        await processes.wait_until(answers, READY_TIMEOUT_S, f"stand-in of {entry.host} (log: {log_path})",
                                   alive=lambda: process.returncode is None)
        log.info("stand-in of %s serving on 127.0.0.1:%d", entry.host, port)

    def describe(self) -> dict[str, dict[str, object]]:
        return {host: {"port": self.ports[host], "pid": p.pid, "running": p.returncode is None}
                for host, p in self._processes.items()}

    async def stop(self) -> None:
        await asyncio.gather(*(processes.stop(p) for p in self._processes.values()))
        self._processes.clear()
