"""Mesh-external hosts in a caller's outbound: the ServiceEntries' stand-ins as Istio's sidecars reach them.

``controlplane`` adds, for every caller, one cluster per HTTP port of each ServiceEntry host whose stand-in runs
(``ExternalHost.runs``), named as istiod names it (``outbound|<port>||<host>``): no mTLS (a MESH_EXTERNAL host is
no workload of the mesh; auto mTLS never applies to it), the DestinationRule of the host in force (connection pool,
outlier detection, load balancer; TLS origination for ``tls.mode: SIMPLE``, toward a stand-in that serves HTTPS);
its one endpoint is the stand-in on loopback (the sandbox resolves the host, as Envoy resolves a DNS entry's).
Each host gets a virtual host (its name, and ``<name>:<port>``) with its
VirtualService's routes (timeouts, retries, faults) or Istio's default route (no timeout, default retries).  A
``*`` virtual host catches every other authority, as istiod's catch-all does by ``outboundTrafficPolicy``:
``REGISTRY_ONLY`` answers 502 itself (istiod's ``block_all`` route: a direct response, BlackHoleCluster);
``ALLOW_ANY`` sends the request to ``PassthroughCluster``, which in the sandbox is a loopback port that refuses
connections (the sandbox reaches nothing outside: the caller sees 503, upstream connect failure).

Faults on an external host (``targets.local.faults``) are the caller's own: each external route carries the fault
filter's per-route config with runtime keys (``runtime_keys``), zero unless a fault sets them on the caller pods'
Envoys.  That is where Istio puts a VirtualService's fault (the caller's outbound, before its router): the route's
own timeout and retries do not see an injected delay or abort.
"""

from __future__ import annotations

from dataclasses import replace

from chaosmesh_qa.mesh.callers import as_seen_by
from chaosmesh_qa.mesh.model import ExternalHost, MeshModel, Route, TrafficPolicy, WeightedDestination, default_retries
from chaosmesh_qa.targets.local.envoy import clusters, routes
from chaosmesh_qa.targets.local.envoy.common import API, JSON, TYPE, address

PASSTHROUGH = "PassthroughCluster"
BLOCK_ALL_STATUS = 502  # istiod's block_all route (REGISTRY_ONLY): DirectResponse{Status: 502}
_PREFIX = "fault.external"


def cluster_name(host: str, port: int) -> str:
    return f"outbound|{port}||{host}"


def runtime_prefix(host: str) -> str:
    """The runtime keys of faults toward ``host`` on a caller's Envoy: ``<prefix>.delay.*`` / ``<prefix>.abort.*``."""
    return f"{_PREFIX}.{host}"


def running(model: MeshModel) -> list[ExternalHost]:
    return [e for e in model.external_hosts.values() if e.runs]


def external_clusters(model: MeshModel, ports: dict[str, int], ca_path: str = "") -> list[JSON]:
    """Every caller's clusters toward the stand-ins (``ports``: host -> the stand-in's loopback port) and
    PassthroughCluster (at ``ports['']``: a port that refuses connections).  Toward a host whose DestinationRule
    originates TLS (``tls.mode: SIMPLE``) the cluster does, as istiod renders it: SNI the rule's ``sni`` (else the
    host), the server's certificate verified against ``ca_path`` (the sandbox's CA, standing for the trusted roots
    a cluster's sidecar verifies a public server with) and its SAN against the rule's ``subjectAltNames`` (else the
    host)."""
    found: list[JSON] = []
    for entry in running(model):
        policy = replace(entry.policy or TrafficPolicy(), tls_mode="DISABLE")
        for port in entry.http_ports():
            name = cluster_name(entry.host, port)
            rendered = clusters.cluster(clusters.ClusterSpec(name, entry.host, {}, policy), ("", ""), "", "")
            rendered.pop("eds_cluster_config")
            if entry.originates_tls:
                rendered["transport_socket"] = _originated_tls(entry, ca_path)
            found.append({**rendered, "type": "STATIC", "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address(ports[entry.host]),
                                                              "hostname": f"{entry.host}-stand-in"}}]}]}})
    found.append({"name": PASSTHROUGH, "type": "STATIC", "connect_timeout": "1s",
                  "load_assignment": {"cluster_name": PASSTHROUGH, "endpoints": [
                      {"lb_endpoints": [{"endpoint": {"address": address(ports[""])}}]}]}})
    return found


def _originated_tls(entry: ExternalHost, ca_path: str) -> JSON:
    settings = dict(entry.tls_settings)
    names = [n for n in settings.get("subjectAltNames", "").split(",") if n] or [entry.host]
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        TYPE: f"{API}.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": settings.get("sni", entry.host),
        "common_tls_context": {"validation_context": {
            "trusted_ca": {"filename": ca_path},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": n}} for n in names]}}}}


def virtual_hosts(model: MeshModel, caller: str) -> list[JSON]:
    """The external hosts' virtual hosts of ``caller``'s outbound route configuration, then the catch-all."""
    found = []
    for entry in running(model):
        ports = entry.http_ports()
        default = 80 if 80 in ports else ports[0]
        for port in ports:
            domains = [f"{entry.host}:{port}", *([entry.host] if port == default else [])]
            found.append({"name": f"{entry.host}:{port}", "domains": domains,
                          "routes": [r for route in as_seen_by(model, _routes(entry, port), caller)
                                     for r in _with_runtime_faults(routes.envoy_routes(route, caller), entry.host)]})
    if model.mesh_config.outbound_policy == "REGISTRY_ONLY":
        found.append({"name": "block_all", "domains": ["*"],
                      "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": BLOCK_ALL_STATUS}}]})
    else:
        found.append({"name": "allow_any", "domains": ["*"],
                      "routes": [{"match": {"prefix": "/"}, "route": {"cluster": PASSTHROUGH, "timeout": "0s"}}]})
    return found


def _routes(entry: ExternalHost, port: int) -> tuple[Route, ...]:
    """The host's routes toward its cluster on ``port`` (its VirtualService's, else Istio's default route)."""
    declared = entry.routes or (Route((), (WeightedDestination(entry.host, None, 100),), default_retries(), None,
                                      None),)
    target = cluster_name(entry.host, port)
    return tuple(replace(r, destinations=tuple(replace(d, service=target, subset=None) for d in r.destinations),
                         mirrors=()) for r in declared)


def _with_runtime_faults(rendered: list[JSON], host: str) -> list[JSON]:
    """Each route with the fault filter enabled on runtime keys of ``host`` (a declared fault's values stay the
    defaults: the keys override them while a fault sets them)."""
    prefix = runtime_prefix(host)
    out = []
    for route in rendered:
        per_filter = dict(route.get("typed_per_filter_config") or {})
        declared = (per_filter.get(routes.FAULT_FILTER) or {}).get("config") or {}
        zero = {"numerator": 0, "denominator": "MILLION"}
        config: JSON = {
            TYPE: f"{API}.extensions.filters.http.fault.v3.HTTPFault",
            "delay": declared.get("delay") or {"fixed_delay": "0.001s", "percentage": zero},
            "abort": declared.get("abort") or {"http_status": 503, "percentage": zero},
            "delay_percent_runtime": f"{prefix}.delay.fixed_delay_percent",
            "delay_duration_runtime": f"{prefix}.delay.fixed_duration_ms",
            "abort_percent_runtime": f"{prefix}.abort.abort_percent",
            "abort_http_status_runtime": f"{prefix}.abort.http_status",
        }
        per_filter[routes.FAULT_FILTER] = {TYPE: f"{API}.config.route.v3.FilterConfig", "disabled": False,
                                           "config": config}
        out.append({**route, "typed_per_filter_config": per_filter})
    return out
