"""The sandbox supervisor: one background process that owns every child of an embedded mesh.

``chaosmesh-qa up`` starts it as ``python -m chaosmesh_qa.targets.local.supervisor``.
It renders the Envoy configuration and serves it over ADS (``xds.server``), starts
Prometheus, the ingress gateway and every pod, a few at a time (reporting ``ready`` once
they serve, and ``metrics_ready`` once Prometheus has scraped every Envoy), keeps each
caller's endpoints true to the pods that are running and ready,
replaces killed pods, and serves a control API (HTTP over the Unix socket
``<state>/control.sock``) that the CLI, the target and the fault actions use.  Its
children die with it (``processes``).

Extensions (``SupervisorExtension``) serve more next to the mesh.  The supervisor knows none by name:
an entry point above the targets constructs it with their factories and calls ``main`` (the Kubernetes
API emulation's is ``python -m chaosmesh_qa.emulation.kubeapi``, which ``up --kube-api`` starts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from chaosmesh_qa.errors import ProcessNotReady
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.mesh.security_model import AuthzPolicy
from chaosmesh_qa.targets.local import control_api, preflight, prometheus
from chaosmesh_qa.targets.local.controlplane import ControlPlane, PodPorts, PodSpec, not_applied_patches
from chaosmesh_qa.targets.local.envoy import admin
from chaosmesh_qa.targets.local.envoy.clusters import Endpoint
from chaosmesh_qa.targets.local.envoy.common import INGRESS
from chaosmesh_qa.targets.local.envoy.envoyfilters import EnvoyFilterObject
from chaosmesh_qa.targets.local.faults import DEFAULT_MAX_TTL_S, FaultManager
from chaosmesh_qa.targets.local.forkserver import ForkServer
from chaosmesh_qa.targets.local.leases import Redirect
from chaosmesh_qa.targets.local.pki import MeshPKI
from chaosmesh_qa.targets.local.pods import READY_TIMEOUT_S, SERVING_STATES, ContainerLog, Pod, app_command
from chaosmesh_qa.targets.local.ports import PortAllocator
from chaosmesh_qa.targets.local.sandbox_prometheus import SandboxPrometheus, scrape_target
from chaosmesh_qa.targets.local.standins import StandIns
from chaosmesh_qa.targets.local.state import SandboxPaths
from chaosmesh_qa.targets.local.tracing.collector import TraceCollector
from chaosmesh_qa.targets.local.xds.server import AdsServer

log = logging.getLogger("chaosmesh_qa.supervisor")
ORPHAN_CHECK_S = 2.0
# Seconds between a pod's death and its endpoint leaving callers' config: Kubernetes needs about
# this long (kubelet -> endpoints controller -> istiod push); it is when retries and outlier
# detection earn their keep.
DEFAULT_ENDPOINT_DELAY_S = 1.0
START_CONCURRENCY_PER_CPU = 6  # pods starting at once, per CPU (each is an Envoy and a Python app)


class SupervisorExtension(Protocol):
    """Something more a supervisor serves next to the mesh, in its process (e.g. the Kubernetes API emulation)."""

    def write_prometheus_rules(self, directory: Path) -> None:
        """Write any recording-rule files Prometheus should load into ``directory``: the mesh model is
        loaded, Prometheus not yet started."""
        ...

    async def start(self) -> None:
        """Start serving: the mesh is ready (the sandbox reports ``ready`` only after this returns)."""
        ...

    async def close(self) -> None:
        """Stop, before the mesh stops."""
        ...

    def status(self) -> dict[str, Any]:
        """Keys merged into the sandbox's status once started."""
        ...

    def pod_created(self, name: str) -> None:
        """A pod of the ready mesh (a replacement) exists and is about to start: called synchronously, before it
        can be ready, so that whatever decides who may reach it (the emulation's NetworkPolicies) is in force
        before its endpoint is ever published."""
        ...


ExtensionFactory = Callable[["Supervisor"], SupervisorExtension]


class Supervisor:
    def __init__(self, paths: SandboxPaths, mesh_dir: Path, max_fault_ttl_s: float = DEFAULT_MAX_TTL_S,
                 endpoint_delay_s: float = DEFAULT_ENDPOINT_DELAY_S,
                 extensions: Sequence[ExtensionFactory] = (),
                 scrape_interval_s: int = prometheus.DEFAULT_SCRAPE_INTERVAL_S) -> None:
        self.paths = paths
        self.mesh_dir = mesh_dir
        self.model: MeshModel | None = None
        self.control_plane: ControlPlane | None = None
        self.xds: AdsServer | None = None  # every Envoy's configuration, over gRPC (ADS)
        self.ports = PortAllocator()
        self.pods: dict[str, Pod] = {}
        self._starting_names: set[str] = set()  # StatefulSet ordinals handed out before their pods exist
        self.ingress: Pod | None = None
        self.prometheus = SandboxPrometheus(paths, self.ports, self.http, self._scrape_targets, scrape_interval_s)
        self.traces = TraceCollector()  # Zipkin-v2-compatible receiver every Envoy reports spans to
        self.forkserver: ForkServer | None = None  # forks the built-in demo app for each pod
        self.stand_ins = StandIns(paths.logs)  # the ServiceEntries' mesh-external hosts (standins)
        self.state = "starting"
        self.error: str | None = None
        self.started_at = time.time()
        self.ready_at: float | None = None
        self.timings: dict[str, float] = {}
        self.shutdown_requested = asyncio.Event()
        self.faults = FaultManager(self, max_fault_ttl_s)
        self.endpoint_delay_s = endpoint_delay_s
        self._departing: dict[str, PodSpec] = {}  # dead pods callers still route to (propagation delay)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.extensions = [make(self) for make in extensions]  # last: each may read the above
        self._started: list[SupervisorExtension] = []

    @property
    def state_dir(self) -> Path:
        return self.paths.root

    @property
    def pki(self) -> MeshPKI:
        assert self.control_plane is not None
        return self.control_plane.pki

    def allocate_port(self) -> int:
        return self.ports.allocate()

    # ------------------------------------------------------------------ main

    async def run(self) -> None:
        runner = await control_api.serve(self, self.paths.socket)
        self._session = aiohttp.ClientSession()
        try:
            await self._start_mesh()
            for extension in self.extensions:
                self._started.append(extension)  # closed even if its start fails part-way
                await extension.start()
            self.state, self.ready_at = "ready", time.time()
            log.warning("sandbox ready in %.2f s", self.ready_at - self.started_at)
        except Exception as exc:
            self.state, self.error = "failed", str(exc) or type(exc).__name__
            log.exception("sandbox failed to start")
        self.paths.write_status(self.status())
        if self.state == "ready":
            self._background(self._stop_when_orphaned())
            await self.shutdown_requested.wait()
        for extension in reversed(self._started):
            await extension.close()
        await self._stop_mesh()
        await self._session.close()
        await runner.cleanup()
        if self.state != "failed":
            self.paths.remove_runtime_files()

    async def _start_mesh(self) -> None:
        loaded = load_mesh(self.mesh_dir)
        self.model = model = loaded.model
        gateway = model.ingress_gateway.name  # the gateway the mesh's Gateways select (Istio's default one)
        ingress_spec = PodSpec(gateway, INGRESS, "", PodPorts(
            stats=self.ports.allocate(hold=True), outbound=self.ports.allocate(hold=True)),
            admin.socket_path(self.paths.admin, gateway))
        replicas = [(s.name, v.name, v.locality(i)) for s in model.services.values() for v in s.versions
                    for i in range(v.replicas)]
        pod_specs = [self._new_pod_spec(service, version, locality=where) for service, version, where in replicas]
        # Prometheus first, already knowing every target: its service discovery hands targets to its
        # scrapers on a fixed 5 s tick from process start; until then the scrape bridge pushes them.
        targets = [scrape_target(spec) for spec in [ingress_spec, *pod_specs]]
        rules = [extension.write_prometheus_rules for extension in self.extensions]
        prometheus_started = self._background(self.prometheus.start(targets, rules, self._background))
        self.control_plane = cp = ControlPlane(model, self.paths.root, MeshPKI.create(self.paths.pki))
        await self.traces.start(self.ports.allocate())
        cp.trace_port = self.traces.port
        outside = [e for e in model.external_hosts.values() if e.runs]
        external_ports = {e.host: self.ports.allocate(hold=True) for e in outside}
        # PassthroughCluster (outboundTrafficPolicy ALLOW_ANY): nothing outside the sandbox is reachable
        cp.external_ports = {**external_ports, "": self.faults.sink_port("reject")}
        cp.write_caller_configs()
        cp.write_endpoints([], {})
        self.xds = AdsServer(cp.store, cp.ads_socket)
        await self.xds.start()
        self.forkserver = ForkServer(self.paths.logs / "forkserver.log")
        self.ports.release(*external_ports.values())
        await self.stand_ins.start(outside, external_ports, self.forkserver, self.http(), cp.pki)
        pods = [self._make_pod(spec) for spec in [ingress_spec, *pod_specs]]
        # a bounded number of pods starting at once: a 60-pod mesh started all together starved
        # Prometheus (not ready after 20 s) and every readiness check on two cores
        gate = asyncio.Semaphore(START_CONCURRENCY_PER_CPU * (os.cpu_count() or 2))

        async def start(pod: Pod) -> None:
            async with gate:
                await self._start_pod(pod)

        await asyncio.gather(*(start(p) for p in pods))
        self.publish_endpoints()  # once for all of them (_pod_changed does not while starting)
        self.timings["pods_ready_s"] = round(time.time() - self.started_at, 3)
        await prometheus_started
        self.timings["prometheus_ready_s"] = round(time.time() - self.started_at, 3)
        self._background(self._note_scraping())

    async def _stop_when_orphaned(self) -> None:
        """Stop the mesh once its state directory is gone (deleted by hand, or a test's temporary
        directory cleaned up): nobody could reach it with ``down`` any more, so it would run forever."""
        while not self.shutdown_requested.is_set():
            await asyncio.sleep(ORPHAN_CHECK_S)
            if not self.paths.pid_file.exists():
                log.error("state directory %s is gone: stopping the sandbox", self.paths.root)
                self.shutdown_requested.set()

    async def _note_scraping(self) -> None:
        """Every Envoy has a sample in Prometheus (the scrape bridge's or Prometheus's own scrape's)."""
        if await self.prometheus.wait_scraped():
            self.timings["prometheus_scraping_s"] = round(time.time() - self.started_at, 3)
        log.info("startup timings: %s", self.timings)

    async def _stop_mesh(self) -> None:
        if self.state == "ready":
            self.state = "stopping"  # no endpoint pushes while every pod goes (60 pods: 60 x 61 pushes)
        await self.faults.close()
        pods = [*self.pods.values(), *([self.ingress] if self.ingress else [])]
        for task in self._tasks:
            task.cancel()
        for pod in pods:  # nothing to drain at teardown: SIGKILL, except a team's own program (its grace)
            if not self._runs_own_program(pod):
                pod.kill()
        await asyncio.gather(*(p.stop() for p in pods), self.prometheus.stop(), self.stand_ins.stop())
        if self.forkserver is not None:
            await self.forkserver.close()
        if self.xds is not None:
            await self.xds.stop()
        await self.traces.close()
        self.ports.release_all()

    # ------------------------------------------------------------------ pods

    def _new_pod_spec(self, service: str, version: str, name: str | None = None, locality: str = "") -> PodSpec:
        """A pod of ``service``'s ``version``: a Deployment's gets a new random suffix, a StatefulSet's the lowest
        free ordinal (``<statefulset>-<n>``); ``name`` (a StatefulSet's replacement) keeps its predecessor's.
        ``locality``: its region/zone/subzone (``VersionModel.locality``; a replacement keeps its predecessor's)."""
        assert self.model is not None
        workload = self.model.services[service].version(version)
        if name is None and workload.workload_kind == "StatefulSet":
            taken = {p.name for p in self.pods.values()} | set(self._starting_names)
            base = self.model.services[service].workload_name(version)
            name = next(f"{base}-{n}" for n in itertools.count() if f"{base}-{n}" not in taken)
            self._starting_names.add(name)
        name = name or f"{service}-{version}-{secrets.token_hex(3)}"
        # every pod has an outbound side
        ports = PodPorts(stats=self.ports.allocate(hold=True), inbound=self.ports.allocate(hold=True),
                         outbound=self.ports.allocate(hold=True), app=self.ports.allocate(hold=True))
        return PodSpec(name, service, version, ports, admin.socket_path(self.paths.admin, name),
                       self.model.workload_labels(service, version), locality)

    async def _start_pod(self, pod: Pod) -> None:
        """Start a pod, its ports held (``PortAllocator.allocate(hold=True)``) until its servers have bound them.

        Envoy and the built-in app bind with ``SO_REUSEADDR`` next to the held socket, so no other process's
        ``bind`` gets a port between its allocation and its use (another sandbox starting at the same moment did:
        "Address already in use", the sidecar dead before ready).  A team's own program may not set it: its port
        is released right before it starts.
        """
        ports = pod.spec.ports
        if self._runs_own_program(pod):
            self.ports.release(ports.app)
        try:
            await pod.start(self.http())
        finally:
            self.ports.release(ports.stats, ports.inbound, ports.outbound, ports.app)

    def _runs_own_program(self, pod: Pod) -> bool:
        return (pod.spec.service != INGRESS and self.model is not None
                and self.model.services[pod.spec.service].command is not None)

    def _make_pod(self, spec: PodSpec) -> Pod:
        assert self.control_plane is not None and self.model is not None
        bootstrap = self.control_plane.write_pod(spec)
        argv, env = (None, {}) if spec.service == INGRESS else app_command(self.model, spec)
        health = "/healthz" if spec.service == INGRESS else self.model.services[spec.service].health_path
        timeout = READY_TIMEOUT_S if spec.service == INGRESS else self.model.services[spec.service].ready_timeout_s
        pod = Pod(spec, bootstrap, self.paths.logs / spec.name, argv, env, health, self._pod_changed, timeout,
                  forkserver=self.forkserver)
        if spec.service == INGRESS:
            self.ingress = pod
        else:
            self.pods[spec.name] = pod
            if self.state == "ready":
                for extension in self._started:
                    extension.pod_created(spec.name)
        return pod

    def _pod_changed(self, pod: Pod) -> None:
        if pod.state in ("terminated", "failed") and self.endpoint_delay_s > 0 and self.state == "ready":
            # like Kubernetes, callers learn of a dead pod only after endpoint propagation
            self._departing[pod.name] = pod.spec
            asyncio.get_running_loop().call_later(self.endpoint_delay_s, self._departed, pod.name)
        else:
            self._departing.pop(pod.name, None)
        if self.state == "ready":  # while starting, _start_mesh publishes once every pod is up
            self.publish_endpoints()
        if pod.state == "ready" and self.state == "ready":
            self._background(self.faults.pod_ready(pod))

    def _departed(self, name: str) -> None:
        if self._departing.pop(name, None) is not None:
            self.publish_endpoints()

    def publish_endpoints(self) -> None:
        assert self.control_plane is not None
        serving = [p.spec for p in self.pods.values() if p.state in SERVING_STATES and p.name not in self._departing]
        serving += self._departing.values()
        by_service: dict[str, list[str]] = {}
        for spec in serving:
            by_service.setdefault(spec.service, []).append(spec.name)
        self.control_plane.write_endpoints(
            [Endpoint(spec.name, spec.ports.inbound, spec.labels, spec.version, spec.locality) for spec in serving],
            by_service)

    def kill_pod(self, name: str) -> Pod:
        """Delete a pod: SIGKILL app and sidecar; its endpoint goes after the propagation delay."""
        pod = self.pods.pop(name)
        pod.kill()
        self.publish_endpoints()
        return pod

    async def replace_pod(self, dead: Pod) -> Pod | None:
        """Start a pod with a new name (and new ports) in place of a deleted one, as a Deployment would."""
        assert self.control_plane is not None
        await dead.reap()
        self.control_plane.remove_pod(dead.name)
        stateful = self.model is not None and self.model.services[dead.spec.service].version(
            dead.spec.version).workload_kind == "StatefulSet"
        pod = self._make_pod(self._new_pod_spec(dead.spec.service, dead.spec.version,
                                                dead.name if stateful else None, dead.spec.locality))
        try:
            await self._start_pod(pod)
        except ProcessNotReady as exc:
            log.error("replacement %s failed: %s", pod.name, exc)
            pod.kill()
            self.pods.pop(pod.name, None)
            return None
        await self.prometheus.reload()
        return pod

    async def recover_pod(self, pod: Pod) -> None:
        await pod.reap()
        try:
            await pod.recover(self.http())
        except ProcessNotReady as exc:
            log.error("recovery of %s failed: %s", pod.name, exc)

    def container_log(self, pod: str, container: str) -> ContainerLog | None:
        """Where a running pod's ``app`` or ``envoy`` container logs, and where each of its instances began;
        ``None`` for a pod that is not running (deleted, or never was) or another container name."""
        found = self.pods.get(pod)
        if found is None or container not in ("app", "envoy") or (container == "app" and found.app_argv is None):
            return None
        return found.log("app" if container == "app" else "envoy")

    def callees_of(self, caller: str) -> list[str]:
        assert self.control_plane is not None
        return self.control_plane.callees_of(caller)

    def set_envoy_filters(self, objects: list[EnvoyFilterObject], labels: dict[str, dict[str, str]]) -> None:
        """The EnvoyFilters in force (all of them, the Kubernetes API emulation's store) and each pod's labels as
        patched: every proxy's listeners are rendered again with those that reach it, and pushed."""
        assert self.control_plane is not None
        proxies = [p.spec for p in self.pods.values() if p.state != "terminated"]
        self.control_plane.set_envoy_filters(objects, [*proxies, *([self.ingress.spec] if self.ingress else [])],
                                             labels)

    def set_authorization_policies(self, policies: tuple[AuthzPolicy, ...], labels: dict[str, dict[str, str]]) -> None:
        """The AuthorizationPolicies in force (all of them: the Kubernetes API emulation's store, the mesh directory's
        included) and each pod's labels as patched: every sidecar's and the ingress gateway's RBAC filters are
        rendered again from them, and pushed where they changed."""
        assert self.control_plane is not None
        proxies = [p.spec for p in self.pods.values() if p.state != "terminated"]
        self.control_plane.set_authorization_policies(
            policies, [*proxies, *([self.ingress.spec] if self.ingress else [])], labels)

    def deny_connections(self, denied: Mapping[str, frozenset[str]]) -> None:
        """The new connections NetworkPolicies deny (the Kubernetes API emulation's): source pod (``ingress``: the
        gateway) -> the pods it may not connect to.  Each source's own endpoints of those pods point at the drop
        tarpit; pushes EDS to the sources whose view changed."""
        assert self.control_plane is not None
        gateway = self.ingress.spec.name if self.ingress is not None else INGRESS
        self.control_plane.deny({gateway if source == INGRESS else source: frozenset(pods)
                                 for source, pods in denied.items()}, self.faults.sink_port("drop"))

    def redirect(self, edge: tuple[str, str], to: Redirect | None) -> None:
        """Re-point ``edge``'s endpoints at a sink (a partition), or back (``None``); pushes EDS."""
        assert self.control_plane is not None
        if to is None:
            self.control_plane.redirects.pop(edge, None)
        else:
            self.control_plane.redirects[edge] = to
        if edge[1] in self.control_plane.external_ports:  # a ServiceEntry host's cluster is static: CDS
            self.control_plane.write_caller_configs()
        else:
            self.publish_endpoints()

    def _background(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _scrape_targets(self) -> list[prometheus.ScrapeTarget]:
        pods = [*([self.ingress] if self.ingress else []), *self.pods.values()]
        return [scrape_target(p.spec) for p in pods]

    # ------------------------------------------------------------------ status (the control API's /status)

    def status(self) -> dict[str, Any]:
        ingress_port = self.ingress.spec.ports.outbound if self.ingress else 0
        return {
            "state": self.state, "error": self.error, "pid": os.getpid(),
            "mesh": self.model.name if self.model else None, "mesh_dir": str(self.mesh_dir),
            "started_at": self.started_at, "ready_at": self.ready_at, "timings": self.timings,
            "ingress_url": f"http://127.0.0.1:{ingress_port}" if ingress_port else None,
            "ingress_admin_socket": str(self.ingress.spec.admin_socket) if self.ingress else None,
            "prometheus_url": self.prometheus.url,
            "tracing": self.traces.describe() if self.traces.port else None,
            "metrics_ready": self.prometheus.scraped_every_target, "metrics_error": self.prometheus.error,
            "ingress_service": self.model.ingress_service if self.model else None,
            # the gateway's workload name (what Istio's metrics name it, through the Kubernetes API emulation); not
            # describe()'s "ingress_gateway", the name the target's metrics give it ("ingress" in the sandbox's own)
            "ingress_gateway_workload": self.model.ingress_gateway.name if self.model else None,
            "services": self._describe_services(),
            "pods": [p.describe() for p in sorted(self.pods.values(), key=lambda p: p.name)],
            "ingress": self.ingress.describe() if self.ingress else None,
            "faults": self.faults.active(),
            "xds": self.xds.describe() if self.xds else None,
            "envoy_filters": self._describe_envoy_filters(),
            "external": self.stand_ins.describe(),
            **{k: v for extension in self._started for k, v in extension.status().items()},
        }

    def _describe_envoy_filters(self) -> dict[str, Any] | None:
        plane = self.control_plane
        if plane is None or not plane.envoy_filters:
            return None
        proxies = [p.spec for p in self.pods.values()] + ([self.ingress.spec] if self.ingress else [])
        return {"in_force": [f"{o.namespace}/{o.name}" for o in plane.envoy_filters],
                "reaching": {spec.name: [f"{o.namespace}/{o.name}" for o in plane.envoy_filters_for(spec)]
                             for spec in proxies if plane.envoy_filters_for(spec)},
                "not_applied": not_applied_patches(plane.envoy_filters)}

    def _describe_services(self) -> dict[str, Any]:
        model = self.model
        if model is None:
            return {}
        return {name: {"namespace": svc.namespace, "versions": [v.name for v in svc.versions],
                       "subsets": sorted(model.subsets.get(name, {})), "callers": model.callers(name),
                       "callees": model.callees(name)}
                for name, svc in model.services.items()}

    def http(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session


def main(extensions: Sequence[ExtensionFactory] = (), argv: Sequence[str] | None = None) -> None:
    """The supervisor process (``python -m``); an entry point above the targets may add ``extensions``."""
    parser = argparse.ArgumentParser(description="chaosmesh-qa sandbox supervisor (started by `chaosmesh-qa up`)")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--mesh", required=True, type=Path)
    parser.add_argument("--max-fault-ttl", type=float, default=DEFAULT_MAX_TTL_S)
    parser.add_argument("--endpoint-delay", type=float, default=DEFAULT_ENDPOINT_DELAY_S)
    parser.add_argument("--scrape-interval", type=int, default=prometheus.DEFAULT_SCRAPE_INTERVAL_S)
    args = parser.parse_args(argv)
    paths = SandboxPaths(args.state_dir)
    preflight.raise_open_files_limit()  # `up` judged the limits after raising its own; started otherwise, do it here
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    supervisor = Supervisor(paths, args.mesh, args.max_fault_ttl, args.endpoint_delay, extensions,
                            args.scrape_interval)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, supervisor.shutdown_requested.set)
        await supervisor.run()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    paths.pid_file.unlink(missing_ok=True)
    # Every child is reaped and every file written by now: skip the interpreter's finalization, which only frees the
    # heap (0.12 s of every `down`, and of every experiment that started its own sandbox). No atexit hook is ours.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
