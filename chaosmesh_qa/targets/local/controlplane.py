"""The local control plane: renders Envoy bootstraps and file-xDS documents, rewrites them atomically.

The supervisor owns one ``ControlPlane``.  Layout under ``<state>/xds``:

* ``<caller>/cds.json``, ``<caller>/rds.json``: a calling service's clusters and routes,
  shared by all its replicas (``ingress`` is a caller too);
* ``<caller>/eds/<cluster>.json``: that caller's view of a cluster's endpoints, rewritten
  whenever pods come and go (and, for partitions, re-pointed for one caller only);
* ``pods/<pod>/bootstrap.json`` and ``lds.json``: one sidecar's bootstrap and listeners
  (its admin API is a Unix socket outside ``xds``, ``PodSpec.admin_socket``).

Envoy reloads a file-xDS document only when a file is *renamed* over it, so every write
goes to a temporary file in the same directory and is renamed into place.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.targets.local.envoy import clusters, listeners, routes
from chaosmesh_qa.targets.local.envoy.common import INGRESS, INGRESS_SPIFFE, discovery_response
from chaosmesh_qa.targets.local.pki import MeshPKI

LISTENER_TYPE = "config.listener.v3.Listener"
CLUSTER_TYPE = "config.cluster.v3.Cluster"
ROUTE_TYPE = "config.route.v3.RouteConfiguration"
ENDPOINT_TYPE = "config.endpoint.v3.ClusterLoadAssignment"


@dataclass
class PodPorts:
    stats: int  # read-only listener: /stats/prometheus and /healthz/ready (the admin API is a Unix socket)
    inbound: int = 0  # sidecars only
    outbound: int = 0  # sidecar outbound listener, or the ingress listener
    app: int = 0


@dataclass
class PodSpec:
    """What the control plane needs to know about one pod (or the ingress gateway)."""

    name: str
    service: str  # "ingress" for the gateway
    version: str
    ports: PodPorts
    admin_socket: Path  # the Envoy's admin API, owner-only (envoy.admin)
    labels: dict[str, str] = field(default_factory=dict)


def atomic_write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=1))
    os.replace(tmp, path)


class ControlPlane:
    def __init__(self, model: MeshModel, state_dir: Path, pki: MeshPKI) -> None:
        self.model = model
        self.root = state_dir / "xds"
        self.pki = pki
        self._version = 0
        self._eds_written: dict[Path, Any] = {}
        # partitions: (caller, callee) -> (sink port, the callee pods it applies to; None: all of them)
        self.redirects: dict[tuple[str, str], tuple[int, frozenset[str] | None]] = {}

    # ------------------------------------------------------------------ callers

    def callers(self) -> list[str]:
        """Every node that makes calls into the mesh: services with callees, and the ingress."""
        return [INGRESS, *(s for s in self.model.services if self.model.callees(s))]

    def callees_of(self, caller: str) -> list[str]:
        return [self.model.ingress_service] if caller == INGRESS else self.model.callees(caller)

    def write_caller_configs(self) -> None:
        for caller in self.callers():
            callee_list = self.callees_of(caller)
            identity = self._identity_files(caller)
            specs = clusters.caller_clusters(self.model, callee_list)
            docs = [
                clusters.cluster(spec, str(self._eds_path(caller, spec.name)), identity, self.pki.ca_path,
                                 self.model.services[spec.service].spiffe_id)
                for spec in specs
            ]
            atomic_write_json(self.root / caller / "cds.json", discovery_response(CLUSTER_TYPE, docs, self._next()))
            route_config = (routes.ingress_route_config(self.model) if caller == INGRESS
                            else routes.outbound_route_config(self.model, caller, callee_list))
            atomic_write_json(self.root / caller / "rds.json",
                              discovery_response(ROUTE_TYPE, [route_config], self._next()))

    def write_endpoints(self, ready: list[clusters.Endpoint], by_service: dict[str, list[str]]) -> int:
        """Rewrite every caller's EDS documents whose content changed; returns how many were written.

        ``ready`` lists ready pods; ``by_service`` maps a service to the names of its ready pods.
        """
        written = 0
        endpoints = {e.pod: e for e in ready}
        for caller in self.callers():
            for spec in clusters.caller_clusters(self.model, self.callees_of(caller)):
                pods = [endpoints[name] for name in by_service.get(spec.service, []) if name in endpoints]
                redirect = self.redirects.get((caller, spec.service))
                if redirect is not None:
                    port, chosen = redirect
                    pods = [clusters.Endpoint(p.pod, port, p.labels) if chosen is None or p.pod in chosen else p
                            for p in pods]
                assignment = clusters.load_assignment(spec, pods)
                path = self._eds_path(caller, spec.name)
                if self._eds_written.get(path) == assignment:
                    continue
                atomic_write_json(path, discovery_response(ENDPOINT_TYPE, [assignment], self._next()))
                self._eds_written[path] = assignment
                written += 1
        return written

    # ------------------------------------------------------------------ pods

    def write_pod(self, pod: PodSpec) -> Path:
        """Write a pod's (or the ingress's) bootstrap and LDS; returns the bootstrap path."""
        pod_dir = self.root / "pods" / pod.name
        caller_dir = self.root / pod.service
        lds_path = pod_dir / "lds.json"
        if pod.service == INGRESS:
            docs = [listeners.outbound_listener("ingress", pod.ports.outbound, "ingress",
                                                str(caller_dir / "rds.json"))]
        else:
            svc = self.model.services[pod.service]
            files = self.pki.identity(svc.spiffe_id, f"{svc.name}.{svc.namespace}.svc")
            identity = listeners.PodIdentity(files.spiffe_id, files.cert, files.key, self.pki.ca_path)
            docs = [listeners.inbound_listener(pod.ports.inbound, self.model.mtls_mode(pod.service, pod.version),
                                               identity, self.model.authz_for(pod.service, pod.version))]
            if self.model.callees(pod.service):
                docs.append(listeners.outbound_listener("outbound", pod.ports.outbound, "outbound",
                                                        str(caller_dir / "rds.json")))
        atomic_write_json(lds_path, discovery_response(LISTENER_TYPE, docs, self._next()))
        cds_path = caller_dir / "cds.json"
        if not cds_path.exists():  # a leaf service calls nobody: an empty CDS document
            atomic_write_json(cds_path, discovery_response(CLUSTER_TYPE, [], self._next()))
        bootstrap = listeners.bootstrap(
            node_id=pod.name, node_cluster=pod.service, admin_socket=str(pod.admin_socket),
            stats_port=pod.ports.stats,
            lds_path=str(lds_path), cds_path=str(cds_path),
            app_port=None if pod.service == INGRESS else pod.ports.app,
        )
        path = pod_dir / "bootstrap.json"
        atomic_write_json(path, bootstrap)
        pod.admin_socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def remove_pod(self, name: str) -> None:
        pod_dir = self.root / "pods" / name
        for child in pod_dir.glob("*"):
            child.unlink(missing_ok=True)
        if pod_dir.exists():
            pod_dir.rmdir()

    # ------------------------------------------------------------------ helpers

    def _identity_files(self, caller: str) -> tuple[str, str]:
        if caller == INGRESS:
            files = self.pki.identity(INGRESS_SPIFFE, "istio-ingressgateway.istio-system.svc")
        else:
            svc = self.model.services[caller]
            files = self.pki.identity(svc.spiffe_id, f"{svc.name}.{svc.namespace}.svc")
        return files.cert, files.key

    def _eds_path(self, caller: str, cluster: str) -> Path:
        return self.root / caller / "eds" / f"{cluster}.json"

    def _next(self) -> int:
        self._version += 1
        return self._version
