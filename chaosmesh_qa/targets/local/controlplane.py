"""The local control plane: renders each Envoy's bootstrap and the xDS resources it is served.

The supervisor owns one ``ControlPlane``; its resources go into ``self.store``
(``xds.store.ConfigStore``), which the supervisor's ADS server (``xds.server``) serves to every
Envoy over ``<state>/xds/ads.sock``.  Groups in the store:

* ``caller:<service>``: a calling service's clusters, routes and its own view of every
  cluster's endpoints, shared by all its replicas (``ingress`` is a caller too); endpoints
  change whenever pods come and go (and, for partitions, are re-pointed for one caller only).
  When the mesh has localities, a caller whose pods differ in locality or version gets its endpoints in one
  group per (version, locality) instead, ``caller:<service>@<version>@<locality>`` (``caller_views``): Istio's
  locality load balancing gives each its own priorities and weights (``envoy.locality``);
* ``pod:<pod>``: one Envoy's listeners, and the endpoint assignments that differ for that Envoy alone: the
  NetworkPolicy denials of the Kubernetes API emulation (``deny``) are per source pod, so a pod that may not
  connect to some pods sees them at the tarpit in its own group, which overrides its caller group's.

Only the bootstrap is a file (``<state>/xds/pods/<pod>/bootstrap.json``), read once at
start; the admin API is a Unix socket outside ``xds`` (``PodSpec.admin_socket``).
``envoy_validation`` reads the same store back to have Envoy judge it.

EnvoyFilters (``set_envoy_filters``: the ones the Kubernetes API emulation stores) are applied to each
proxy's listeners with istiod's semantics (``envoy.envoyfilters``), on a view of the listeners named as
Istio names them where an EnvoyFilter can match: the inbound listener is ``virtualInbound`` and its
filter chains match the service's port (``destination_port``, ``inbound|<port>||``), as istiod builds
them.  The result is pushed as is: what Envoy rejects it NACKs and keeps its previous listeners
(``xds.server`` records the rejection), as a cluster's sidecars do.  Patches to clusters and route
configurations are not applied (the sandbox's cluster and route names are not Istio's); the supervisor's
status names them (``envoy_filters``).

AuthorizationPolicies are the model's (``MeshModel.authz``, the mesh directory's) until
``set_authorization_policies`` replaces them (the Kubernetes API emulation's store, every one); either way each
sidecar's inbound listener carries the RBAC filters of those that select it (``authz_for``: its namespace's and
the root namespace's, by selector on the pod's current labels, as istiod follows a pod's labels) and the
ingress gateway's those ``mesh.authz.enforced_at_ingress`` gives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chaosmesh_qa.files import atomic_write_json
from chaosmesh_qa.mesh.authz import enforced_at_ingress
from chaosmesh_qa.mesh.model import MeshModel, selects
from chaosmesh_qa.mesh.security_model import AuthzPolicy
from chaosmesh_qa.targets import policy
from chaosmesh_qa.targets.local.envoy import clusters, envoyfilters, external, listeners, routes
from chaosmesh_qa.targets.local.envoy import locality as locality_lb
from chaosmesh_qa.targets.local.envoy.common import INGRESS, JSON, address
from chaosmesh_qa.targets.local.pki import MeshPKI
from chaosmesh_qa.targets.local.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from chaosmesh_qa.targets.local.xds.store import ConfigStore

ADS_SOCKET = "ads.sock"  # under <state>/xds


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
    locality: str = ""  # 'region/zone/subzone' (mesh.localities): its Envoy's node locality; '' for none


class ControlPlane:
    def __init__(self, model: MeshModel, state_dir: Path, pki: MeshPKI) -> None:
        self.model = model
        self.root = state_dir / "xds"
        self.pki = pki
        self.store = ConfigStore()
        self.ads_socket = self.root / ADS_SOCKET
        self._eds_written: dict[tuple[str, str], Any] = {}
        # partitions: (caller, callee) -> (sink port, the callee pods it applies to; None: all of them, the zone
        # whose callers it spares: a zone partition's)
        self.redirects: dict[tuple[str, str], tuple[int, frozenset[str] | None, str | None]] = {}
        # the trace receiver's port (tracing.collector): every listener is traced when it is set
        self.trace_port: int | None = None
        self.envoy_filters: list[envoyfilters.EnvoyFilterObject] = []
        # pod -> labels as patched on it (EnvoyFilter and AuthorizationPolicy selection)
        self.pod_labels: dict[str, dict[str, str]] = {}
        # NetworkPolicy denials (``deny``): source node -> the pods it sees at the tarpit, in its own pod group
        self.denied: dict[str, frozenset[str]] = {}
        self.tarpit_port = 0
        self._sources: dict[str, str] = {}  # node -> its caller group (service, or ingress)
        self._overridden: set[str] = set()  # nodes whose pod group holds endpoint assignments
        # the ServiceEntry hosts' stand-ins: host -> loopback port; '': PassthroughCluster's (refuses connections)
        self.external_ports: dict[str, int] = {}

    # ------------------------------------------------------------------ callers

    def callers(self) -> list[str]:
        """Every node with an outbound side: every service (as in Istio), and the ingress."""
        return [INGRESS, *self.model.services]

    def callees_of(self, caller: str) -> list[str]:
        """The services ``caller`` sends traffic to (what a partition can cut)."""
        return self.model.ingress_services() if caller == INGRESS else self.model.callees(caller)

    def visible_to(self, caller: str) -> list[str]:
        """The services whose routes and clusters ``caller``'s Envoys get: every service, as Istio
        gives every sidecar and gateway, unless a Sidecar resource scopes a workload down."""
        return sorted(self.model.services) if caller == INGRESS else self.model.egress(caller)

    def write_caller_configs(self) -> None:
        for caller in self.callers():
            callee_list = self.visible_to(caller)
            identity = self._identity_files(caller)
            specs = clusters.caller_clusters(self.model, callee_list)
            docs = [
                clusters.cluster(spec, identity, self.pki.ca_path, self.model.services[spec.service].spiffe_id)
                for spec in specs
            ]
            route_config = (routes.ingress_route_config(self.model) if caller == INGRESS
                            else routes.outbound_route_config(self.model, caller, callee_list))
            if caller != INGRESS and self.external_ports:  # ServiceEntry hosts and the catch-all (envoy.external)
                cut = {host: port for (who, host), (port, _, _) in self.redirects.items()
                       if who == caller and host in self.external_ports}  # partitions toward an external host
                docs += external.external_clusters(self.model, {**self.external_ports, **cut}, self.pki.ca_path)
                route_config["virtual_hosts"] += external.virtual_hosts(self.model, caller)
            self.store.put(_caller_group(caller), CLUSTER, docs)
            self.store.put(_caller_group(caller), ROUTE, [route_config])

    def caller_views(self, caller: str) -> dict[str, locality_lb.CallerView]:
        """The endpoint views of a caller's pods, by the group key they get: one (the caller's own group) unless
        the mesh has localities and its pods differ in locality or version labels, which Istio's locality load
        balancing ranks endpoints by (``envoy.locality``); then one per (version, locality)."""
        if caller == INGRESS:
            return {caller: locality_lb.CallerView("", dict(self.model.ingress_gateway.labels))}
        if not any(v.localities for svc in self.model.services.values() for v in svc.versions):
            return {caller: locality_lb.CallerView()}
        views = {(v.name, v.locality(i)): locality_lb.CallerView(v.locality(i),
                                                                self.model.workload_labels(caller, v.name))
                 for v in self.model.services[caller].versions for i in range(max(v.replicas, 1))}
        if len(views) == 1:
            return {caller: next(iter(views.values()))}
        return {_view_key(caller, version, where): view for (version, where), view in views.items()}

    def view_of(self, pod: PodSpec) -> str:
        """The endpoint view (group key) a pod's Envoy gets (``caller_views``)."""
        views = self.caller_views(pod.service)
        key = _view_key(pod.service, pod.version, pod.locality)
        return key if key in views else pod.service

    def write_endpoints(self, ready: list[clusters.Endpoint], by_service: dict[str, list[str]]) -> int:
        """Publish every caller's endpoints whose content changed; returns how many assignments changed.

        ``ready`` lists ready pods; ``by_service`` maps a service to the names of its ready pods.
        """
        written = 0
        endpoints = {e.pod: e for e in ready}
        shared: dict[tuple[str, Any, Any], Any] = {}  # callers without a redirect see the very same assignment
        for caller in self.callers():
            specs = clusters.caller_clusters(self.model, self.visible_to(caller))
            for key, view in self.caller_views(caller).items():
                assignments = []
                changed = 0
                for spec in specs:
                    redirect = self.redirects.get((caller, spec.service))
                    if redirect is not None and policy.spares(view.locality, redirect[2]):
                        redirect = None  # a zone partition: this view's pods are in the zone it cuts off
                    seen_as = (view.locality, tuple(sorted(view.labels.items()))) if spec.zoned else None
                    assignment = shared.get((spec.name, redirect, seen_as))
                    if assignment is None:
                        pods = [endpoints[name] for name in by_service.get(spec.service, []) if name in endpoints]
                        if redirect is not None:
                            port, chosen, _ = redirect
                            pods = [replace(p, port=port) if chosen is None or p.pod in chosen
                                    else p for p in pods]
                        assignment = shared[spec.name, redirect, seen_as] = clusters.load_assignment(spec, pods, view)
                    assignments.append(assignment)
                    if self._eds_written.get((key, spec.name)) != assignment:
                        self._eds_written[key, spec.name] = assignment
                        changed += 1
                if changed:  # the ADS server sends the callers' Envoys only the assignments that changed
                    self.store.put(_caller_group(key), ENDPOINT, assignments)
                    written += changed
        return written + self._write_denials()

    def deny(self, denied: dict[str, frozenset[str]], tarpit_port: int) -> int:
        """NetworkPolicy denials (the Kubernetes API emulation's): source node -> the pods whose endpoints it sees at
        ``tarpit_port``; replaces the previous ones.  Returns how many nodes' endpoints changed."""
        self.denied = {node: pods for node, pods in denied.items() if pods}
        self.tarpit_port = tarpit_port
        return self._write_denials()

    def _write_denials(self) -> int:
        """Each source node with denials gets, in its own pod group, its caller group's assignments of the clusters
        that hold a denied pod, those pods at the tarpit (the node's view merges its pod group over its caller
        group's); a node without any has none there.  Returns how many nodes' endpoints changed."""
        written = 0
        for node, caller in self._sources.items():
            blocked = self.denied.get(node, frozenset())
            overrides = [found for (group, _), assignment in sorted(self._eds_written.items()) if group == caller
                         and (found := _tarpitted(assignment, blocked, self.tarpit_port)) is not None] \
                if blocked else []
            if overrides or node in self._overridden:
                written += self.store.put(_pod_group(node), ENDPOINT, overrides)
                self._overridden.discard(node)
                if overrides:
                    self._overridden.add(node)
        return written

    # ------------------------------------------------------------------ pods

    def write_pod(self, pod: PodSpec) -> Path:
        """Publish a pod's (or the ingress's) listeners and write its bootstrap; returns the bootstrap path."""
        pod_dir = self.root / "pods" / pod.name
        self.publish_listeners(pod)
        view = self.view_of(pod)  # its endpoints: its service's, or its (version, locality)'s (caller_views)
        groups = [_caller_group(pod.service), *([_caller_group(view)] if view != pod.service else [])]
        self.store.add_node(pod.name, [*groups, _pod_group(pod.name)])
        self._sources[pod.name] = view
        bootstrap = listeners.bootstrap(
            node_id=pod.name, node_cluster=pod.service, admin_socket=str(pod.admin_socket),
            stats_port=pod.ports.stats, ads_socket=str(self.ads_socket),
            app_port=None if pod.service == INGRESS else pod.ports.app, trace_port=self.trace_port,
            locality=locality_lb.node_locality(pod.locality),
        )
        path = pod_dir / "bootstrap.json"
        atomic_write_json(path, bootstrap)
        pod.admin_socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def publish_listeners(self, pod: PodSpec) -> None:
        """Render a pod's (or the ingress's) listeners, apply the EnvoyFilters that reach it, publish them."""
        traced = self.trace_port is not None
        if pod.service == INGRESS:
            docs = [listeners.outbound_listener("ingress", pod.ports.outbound, "ingress", traced, strip_port=True,
                                                policies=enforced_at_ingress(self.model))]
        else:
            svc = self.model.services[pod.service]
            files = self.pki.identity(svc.spiffe_id, f"{svc.name}.{svc.namespace}.svc")
            identity = listeners.PodIdentity(files.spiffe_id, files.cert, files.key, self.pki.ca_path)
            config = self.model.mesh_config
            docs = [listeners.inbound_listener(pod.ports.inbound, self.model.mtls_mode(pod.service, pod.version),
                                               identity, self.authz_for(pod), traced, config.forwarded_client_cert,
                                               config.xfcc_uri)]
            docs.append(listeners.outbound_listener("outbound", pod.ports.outbound, "outbound", traced))
        self.store.put(_pod_group(pod.name), LISTENER, self._with_envoy_filters(pod, docs))

    def set_envoy_filters(self, objects: list[envoyfilters.EnvoyFilterObject], pods: list[PodSpec],
                          labels: dict[str, dict[str, str]] | None = None) -> None:
        """Replace the EnvoyFilters in force (and the pods' current labels, which their workload selectors
        match: istiod follows a pod's labels) and re-publish the listeners of ``pods`` (every running proxy)."""
        self.envoy_filters = list(objects)
        if labels is not None:
            self.pod_labels = {name: dict(found) for name, found in labels.items()}
        for pod in pods:
            self.publish_listeners(pod)

    def set_authorization_policies(self, policies: tuple[AuthzPolicy, ...], pods: list[PodSpec],
                                   labels: dict[str, dict[str, str]] | None = None) -> None:
        """Replace the AuthorizationPolicies in force (the model's ``authz``; and the pods' current labels, which
        their selectors match) and re-publish the listeners of ``pods`` (every running proxy and the ingress
        gateway): each one's RBAC filters change only where the policies that reach it changed."""
        self.model = replace(self.model, authz=tuple(policies))
        if labels is not None:
            self.pod_labels = {name: dict(found) for name, found in labels.items()}
        for pod in pods:
            self.publish_listeners(pod)

    def authz_for(self, pod: PodSpec) -> list[AuthzPolicy]:
        """The AuthorizationPolicies that reach a sidecar: ``MeshModel.authz_for``'s (its namespace's and the root
        namespace's, a selector restricting a policy to matching workloads), matched on the pod's current labels
        (as patched through the Kubernetes API emulation, else its workload's)."""
        namespace = self.model.services[pod.service].namespace
        labels = self.pod_labels.get(pod.name, pod.labels)
        return [p for p in self.model.authz if p.namespace in (self.model.root_namespace, namespace)
                and (not p.selector or selects(p.selector, labels))]

    def envoy_filters_for(self, pod: PodSpec) -> list[envoyfilters.EnvoyFilterObject]:
        return (envoyfilters.filters_for(self.envoy_filters, self._proxy(pod), self.model.root_namespace)
                if self.envoy_filters else [])

    def _proxy(self, pod: PodSpec) -> envoyfilters.Proxy:
        if pod.service == INGRESS:
            gateway = self.model.ingress_gateway
            return envoyfilters.Proxy(gateway.namespace, dict(gateway.labels), "gateway")
        labels = self.pod_labels.get(pod.name, pod.labels)
        return envoyfilters.Proxy(self.model.services[pod.service].namespace, dict(labels), "sidecar")

    def _with_envoy_filters(self, pod: PodSpec, docs: list[JSON]) -> list[JSON]:
        """The listeners with the EnvoyFilters that reach the pod applied.  Every inbound listener goes through the
        same naming whether any filter reaches it or not, so that one that changes nothing leaves the listeners
        exactly as they were (Envoy then counts no modification: ``targets.kubernetes.dataplane``)."""
        port = None if pod.service == INGRESS else self.model.services[pod.service].pod_port
        view = [_as_istio_names(d, port) for d in docs]
        chosen = self.envoy_filters_for(pod)
        patched = envoyfilters.patch_listeners(view, chosen, self._proxy(pod)) if chosen else view
        return [_as_sandbox_names(d, port) for d in patched]

    def remove_pod(self, name: str) -> None:
        self._sources.pop(name, None)
        self._overridden.discard(name)
        self.store.remove_node(name)
        self.store.drop_group(_pod_group(name))
        pod_dir = self.root / "pods" / name
        for child in pod_dir.glob("*"):
            child.unlink(missing_ok=True)
        if pod_dir.exists():
            pod_dir.rmdir()

    # ------------------------------------------------------------------ helpers

    def _identity_files(self, caller: str) -> tuple[str, str]:
        if caller == INGRESS:
            gateway = self.model.ingress_gateway
            files = self.pki.identity(self.model.ingress_spiffe, f"{gateway.name}.{gateway.namespace}.svc")
        else:
            svc = self.model.services[caller]
            files = self.pki.identity(svc.spiffe_id, f"{svc.name}.{svc.namespace}.svc")
        return files.cert, files.key


SANDBOX_PATCHES = {"SIDECAR_INBOUND": ("LISTENER", "LISTENER_FILTER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER",
                                       "ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE"),
                   "other": ("LISTENER", "LISTENER_FILTER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER")}


def not_applied_patches(objects: list[envoyfilters.EnvoyFilterObject]) -> list[str]:
    """One line per config patch the sandbox leaves out although istiod would apply it: clusters, and route
    configurations served over RDS (only the inbound one is inline in its listener, and patched)."""
    lines = envoyfilters.unsupported_patches(objects)
    for obj in objects:
        for index, patch in enumerate(obj.spec.get("configPatches") or []):
            apply_to = str((patch or {}).get("applyTo", ""))
            context = str(((patch or {}).get("match") or {}).get("context", "ANY"))
            if apply_to in ("EXTENSION_CONFIG", "BOOTSTRAP"):
                continue  # said by unsupported_patches, or never applied by istiod either
            if apply_to not in SANDBOX_PATCHES["SIDECAR_INBOUND" if context == "SIDECAR_INBOUND" else "other"]:
                lines.append(f"EnvoyFilter {obj.namespace}/{obj.name} configPatches[{index}]: applyTo {apply_to} "
                             f"in context {context} is not applied by the sandbox (its cluster and outbound route "
                             "names are not Istio's)")
    return lines


def _as_istio_names(listener: JSON, port: int | None) -> JSON:
    """The inbound listener as istiod builds it, where an EnvoyFilter can tell: ``virtualInbound``, each filter
    chain named ``inbound|<port>||`` and matching the workload's ``port`` (the sandbox's port is allocated)."""
    if listener.get("name") != "inbound" or port is None:
        return listener
    chains = [{**chain, "name": f"inbound|{port}||",
               "filter_chain_match": {**(chain.get("filter_chain_match") or {}), "destination_port": port}}
              for chain in listener.get("filter_chains") or []]
    return {**listener, "name": listeners.ISTIO_INBOUND, "filter_chains": chains}


def _as_sandbox_names(listener: JSON, port: int | None) -> JSON:
    """Back to the listener the sandbox serves: its own name, and chains that match its allocated port."""
    if listener.get("name") != listeners.ISTIO_INBOUND or port is None:
        return listener
    chains = []
    for chain in listener.get("filter_chains") or []:
        match = dict(chain.get("filter_chain_match") or {})
        if match.get("destination_port") == port:
            del match["destination_port"]
        chains.append({**{k: v for k, v in chain.items() if k != "filter_chain_match"},
                       **({"filter_chain_match": match} if match else {})})
    return {**listener, "name": "inbound", "filter_chains": chains}


def _tarpitted(assignment: JSON, blocked: frozenset[str], port: int) -> JSON | None:
    """``assignment`` with the endpoints of the ``blocked`` pods at ``port``; ``None`` if it holds none of them."""
    moved = False
    localities = []
    for locality in assignment.get("endpoints") or []:
        hosts = []
        for host in locality.get("lb_endpoints") or []:
            if host.get("endpoint", {}).get("hostname") in blocked:
                host = {**host, "endpoint": {**host["endpoint"], "address": address(port)}}
                moved = True
            hosts.append(host)
        localities.append({**locality, "lb_endpoints": hosts})
    return {**assignment, "endpoints": localities} if moved else None


def _caller_group(caller: str) -> str:
    return f"caller:{caller}"


def _view_key(caller: str, version: str, where: str) -> str:
    """The group key of a caller's pods of one version in one locality (``ControlPlane.caller_views``)."""
    return f"{caller}@{version}@{where}"


def _pod_group(pod: str) -> str:
    return f"pod:{pod}"
