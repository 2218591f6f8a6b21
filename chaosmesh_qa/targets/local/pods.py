"""A pod of the embedded mesh: one app process and its sidecar Envoy, started and watched together.

The supervisor creates ``Pod`` objects (and one for the ingress gateway, which has no
app).  A pod is *ready* when its sidecar answers ``/ready`` on its admin socket
(``pod.admin``, also what fault code uses to reach that Envoy) and its app answers its
health path; the supervisor publishes only ready pods as endpoints.  A container that
exits on its own is restarted in place (same pod, restart count + 1), as the kubelet
would, unless a fault holds it down; a pod that is *killed* is gone for good and the
supervisor replaces it; a *failed* pod is down until it recovers under the same name.
Each container writes stdout and stderr to ``<logs>/<container>.log``, appended across restarts;
``log(container)`` says where in that file each instance of the container began (what a kubelet's
current and previous logs are read from).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import psutil

from chaosmesh_qa.errors import ProcessNotReady
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.targets.local import processes
from chaosmesh_qa.targets.local.controlplane import PodSpec
from chaosmesh_qa.targets.local.envoy.admin import EnvoyAdmin
from chaosmesh_qa.targets.local.forkserver import ForkServer

PodState = Literal["starting", "ready", "degraded", "failed", "terminated"]
Container = Literal["app", "envoy"]
# States in which callers keep the pod as an endpoint: a crashed container does not remove it
# (the sidecar answers 503, or refuses connections) -- that is what retries and outlier detection
# are for.  Only a deleted (terminated) or failed pod leaves the endpoint set.
SERVING_STATES = ("ready", "degraded")
CONTAINER_RESTART_DELAY_S = 1.0
READY_TIMEOUT_S = 30.0
DEMO_APP_ARGS = ["-m", "chaosmesh_qa.apps.demo"]  # after the interpreter: the built-in app's argv
NO_PROXY = ("localhost", "127.0.0.1", "::1")  # a program's own loopback calls never go through the proxy


@dataclass(frozen=True)
class ContainerLog:
    """One container's log file and where each instance of the container began in it."""

    path: Path  # stdout and stderr, appended across restarts
    starts: tuple[tuple[int, float], ...]  # (byte offset, epoch seconds) of each start, oldest first


@dataclass
class Pod:
    spec: PodSpec
    bootstrap: Path
    logs: Path
    app_argv: list[str] | None
    app_env: dict[str, str]
    health_path: str
    on_change: Callable[[Pod], None]
    ready_timeout_s: float = READY_TIMEOUT_S  # for the app (the service's readyTimeout)
    state: PodState = "starting"
    started_at: float = field(default_factory=time.time)
    restarts: int = 0
    forkserver: ForkServer | None = None  # forks the built-in demo app (a team's own command: a plain child)
    app: processes.ChildProcess | None = None
    envoy: processes.ChildProcess | None = None
    held: set[Container] = field(default_factory=set)  # containers a fault keeps down
    log_starts: dict[Container, list[tuple[int, float]]] = field(default_factory=dict)  # see ``log``
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    admin: EnvoyAdmin = field(init=False)  # the sidecar's admin API (owner-only Unix socket)

    def __post_init__(self) -> None:
        self.admin = EnvoyAdmin(self.spec.admin_socket)

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "service": self.spec.service, "version": self.spec.version,
            "state": self.state, "restarts": self.restarts, "started_at": self.started_at,
            "pids": {"app": _pid(self.app), "sidecar": _pid(self.envoy)},
            "ports": {k: v for k, v in vars(self.spec.ports).items() if v},
            "admin_socket": str(self.spec.admin_socket),
            "labels": self.spec.labels,
            **({"locality": self.spec.locality} if self.spec.locality else {}),  # region/zone/subzone
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Start both containers and wait until the pod is ready (raises on failure)."""
        self.envoy = await processes.spawn(processes.envoy_command(self.bootstrap), self._next_log("envoy"))
        if self.app_argv is not None:
            self.app = await self._spawn_app()
        await self._wait_ready(session)
        self._watch("envoy")
        if self.app_argv is not None:
            self._watch("app")
        self._set_state("ready")

    async def _spawn_app(self) -> processes.ChildProcess:
        assert self.app_argv is not None
        log = self._next_log("app")
        if self.forkserver is not None and self.app_argv[1:] == DEMO_APP_ARGS:
            return await self.forkserver.spawn(self.app_env, log)
        return await processes.spawn(self.app_argv, log, self.app_env)

    def _next_log(self, container: Container) -> Path:
        """The container's log file, noting that a new instance of it starts writing at its current end."""
        path = self.logs / f"{container}.log"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        self.log_starts.setdefault(container, []).append((size, time.time()))
        return path

    def log(self, container: Container) -> ContainerLog:
        """Where ``container`` logs, and where each of its instances (this pod's restarts) began."""
        return ContainerLog(self.logs / f"{container}.log", tuple(self.log_starts.get(container, ())))

    async def _wait_ready(self, session: aiohttp.ClientSession) -> None:
        checks = [self._ready("envoy", self.admin.ready, READY_TIMEOUT_S)]
        if self.app_argv is not None:
            url = f"http://127.0.0.1:{self.spec.ports.app}{self.health_path}"
            checks.append(self._ready("app", lambda: processes.http_ok(session, url), self.ready_timeout_s))
        await asyncio.gather(*checks)

    async def _ready(self, container: Container, check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
        """Wait for one container; on failure one line naming the pod, what went wrong and its log."""
        def current() -> processes.ChildProcess | None:
            return self.app if container == "app" else self.envoy

        try:
            await processes.wait_until(check, timeout_s, f"pod {self.name}: {container}",
                                       alive=lambda: _running(current()))
        except ProcessNotReady:
            process = current()
            if process is not None and process.returncode is not None:
                why = f"exited with status {process.returncode} before it was ready"
            elif container == "app":
                why = (f"not healthy after {timeout_s:g} s: GET {self.health_path} on its port "
                       f"{self.spec.ports.app} never answered 200{_listening_hint(process, self.spec.ports.app)}")
            else:
                why = f"not ready after {timeout_s:g} s"
            log = self.logs / f"{container}.log"
            raise ProcessNotReady(f"pod {self.name}: {'app' if container == 'app' else 'sidecar'} {why} "
                                  f"(log: {log})") from None

    def kill(self, state: PodState = "terminated") -> None:
        """SIGKILL both containers: a pod deletion with grace period 0 (or a pod failure)."""
        self._set_state(state)
        for task in self._tasks:
            task.cancel()
        processes.kill(self.app)
        processes.kill(self.envoy)
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to close
            closing = asyncio.get_running_loop().create_task(self.admin.close())
            self._tasks.add(closing)
            closing.add_done_callback(self._tasks.discard)

    async def recover(self, session: aiohttp.ClientSession) -> None:
        """Bring a failed pod back under the same name (restart count + 1)."""
        self.restarts += 1
        self.state = "starting"
        await self.start(session)

    def kill_container(self, container: Container, hold: bool = False) -> None:
        """SIGKILL one container; the watcher restarts it in place unless ``hold``."""
        if hold:
            self.held.add(container)
        processes.kill(self.app if container == "app" else self.envoy)

    def release(self, container: Container) -> None:
        """Let a held container restart now."""
        self.held.discard(container)
        self._wake.set()

    async def stop(self) -> None:
        self._set_state("terminated")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(processes.stop(self.app), processes.stop(self.envoy))
        await self.admin.close()

    async def reap(self) -> None:
        for process in (self.app, self.envoy):
            if process is not None:
                await process.wait()

    # ------------------------------------------------------------------ watching

    def _watch(self, container: Container) -> None:
        task = asyncio.get_running_loop().create_task(self._restart_on_exit(container))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restart_on_exit(self, container: Container) -> None:
        process = self.app if container == "app" else self.envoy
        assert process is not None
        await process.wait()
        if self.state in ("terminated", "failed"):
            return
        self._set_state("degraded")
        await asyncio.sleep(CONTAINER_RESTART_DELAY_S)
        while container in self.held:
            self._wake.clear()
            await self._wake.wait()
        if self.state in ("terminated", "failed"):
            return
        self.restarts += 1
        if container == "app":
            self.app = await self._spawn_app()
        else:
            self.envoy = await processes.spawn(processes.envoy_command(self.bootstrap), self._next_log("envoy"))
        async with aiohttp.ClientSession() as session:
            # on failure, the watcher below sees the exit again and retries after the delay
            with contextlib.suppress(ProcessNotReady):
                await self._wait_ready(session)
        self._watch(container)
        if self.state == "degraded" and _running(self.app) and _running(self.envoy):
            self._set_state("ready")

    def _set_state(self, state: PodState) -> None:
        if self.state != state:
            self.state = state
            self.on_change(self)


def app_command(model: MeshModel, spec: PodSpec, python: str = sys.executable) -> tuple[list[str], dict[str, str]]:
    """The app container's argv and environment: the demo app, or the service's own command."""
    svc = model.services[spec.service]
    ports = spec.ports
    env = {
        "PORT": str(ports.app), "CHAOSMESH_SERVICE": svc.name, "CHAOSMESH_VERSION": spec.version,
        "CHAOSMESH_POD": spec.name, "CHAOSMESH_OUTBOUND": f"http://127.0.0.1:{ports.outbound}",
        **proxy_env(ports.outbound),
    }
    if svc.command is not None:
        return [arg.replace("{port}", str(ports.app)) for arg in svc.command], env
    behaviour = svc.version(spec.version).behaviour
    config = {
        "service": svc.name, "version": spec.version, "pod": spec.name, "port": ports.app,
        "outbound_port": ports.outbound,
        "behaviour": {
            "calls": [(_called_as(model, c), p) for c, p in behaviour.calls], "parallel": behaviour.parallel,
            "latency_ms": behaviour.latency_ms,
            "error_rate": behaviour.error_rate, "error_status": behaviour.error_status,
            "response_bytes": behaviour.response_bytes, "propagate_headers": list(behaviour.propagate_headers),
        },
    }
    env["CHAOSMESH_APP"] = json.dumps(config)
    return [python, *DEMO_APP_ARGS], env


def _called_as(model: MeshModel, callee: str) -> str:
    """The authority the demo app calls ``callee`` by: its name, or a MESH_INTERNAL ServiceEntry's first host."""
    svc = model.services.get(callee)
    return svc.hosts[0] if svc is not None and svc.hosts else callee


def proxy_env(outbound_port: int) -> dict[str, str]:
    """How an unchanged program reaches the mesh by Kubernetes names: its sidecar's outbound listener
    as the HTTP proxy (routed by the request's authority), loopback excluded (docs/how-to/own-services.md)."""
    proxy, direct = f"http://127.0.0.1:{outbound_port}", ",".join(NO_PROXY)
    return {
        "HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": direct, "no_proxy": direct,
        # the JVM reads no proxy variable; its standard system properties, through the variable it reads
        "JAVA_TOOL_OPTIONS": " ".join(filter(None, (
            os.environ.get("JAVA_TOOL_OPTIONS", ""), f"-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort={outbound_port}",
            "-Dhttp.nonProxyHosts=" + "|".join(NO_PROXY)))),
        "NODE_USE_ENV_PROXY": "1",  # Node.js >= 24: fetch and http honour HTTP_PROXY with this set
    }


def _listening_hint(process: processes.ChildProcess | None, port: int) -> str:
    """``" (it listens on 9999 instead)"`` when the app (or a child of it) listens on other ports."""
    if process is None:
        return ""
    try:
        root = psutil.Process(process.pid)
        found = sorted({c.laddr.port for p in (root, *root.children(recursive=True))
                        for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN})
    except psutil.Error:
        return ""
    if not found or port in found:
        return ""
    return f" (it listens on {', '.join(map(str, found))} instead: use {{port}} or $PORT)"


def _pid(process: processes.ChildProcess | None) -> int | None:
    return process.pid if process is not None and process.returncode is None else None


def _running(process: processes.ChildProcess | None) -> bool:
    return process is None or process.returncode is None
