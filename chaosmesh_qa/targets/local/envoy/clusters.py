"""Outbound clusters (CDS) and their endpoints (EDS) from DestinationRules and running pods.

``controlplane`` renders one CDS document per calling service (shared by its replicas)
and one EDS document per (caller, cluster), so a partition can re-point one caller's
view of a callee without touching anybody else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chaosmesh_qa.mesh.model import MeshModel, TrafficPolicy
from chaosmesh_qa.mesh.workloadentries import TLS_MODE_LABEL
from chaosmesh_qa.targets.local.envoy import locality
from chaosmesh_qa.targets.local.envoy.common import (
    API,
    JSON,
    TYPE,
    address,
    ads_source,
    cluster_name,
    duration,
)

TLS_MODE_KEY = "tlsMode"  # the endpoint metadata key auto mTLS matches on (Istio's own name for it)
_LB_POLICY = {"ROUND_ROBIN": "ROUND_ROBIN", "LEAST_REQUEST": "LEAST_REQUEST", "RANDOM": "RANDOM",
              "LEAST_CONN": "LEAST_REQUEST"}


@dataclass(frozen=True)
class Endpoint:
    """A ready pod as callers see it: the sidecar's inbound port and the pod's labels."""

    pod: str
    port: int
    labels: dict[str, str]
    version: str = ""  # the version (workload) the pod runs: what a version without a sidecar is keyed by
    locality: str = ""  # 'region/zone/subzone' (mesh.localities); '' for none


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    service: str
    subset_labels: dict[str, str]
    policy: TrafficPolicy
    # versions whose PeerAuthentication mode is DISABLE: auto mTLS sends them plaintext
    plaintext_versions: frozenset[str] = frozenset()
    zoned: bool = False  # some pod of the service has a locality: endpoints are grouped by it (envoy.locality)


def caller_clusters(model: MeshModel, callees: Iterable[str]) -> list[ClusterSpec]:
    """The clusters a caller needs: each callee as a whole, plus one per DestinationRule subset."""
    specs = []
    for callee in callees:
        svc = model.services[callee]
        # a workload entry Istio takes for one without a sidecar (mesh.workloadentries) is sent plaintext too
        plain = frozenset(v.name for v in svc.versions if model.mtls_mode(callee, v.name) == "DISABLE"
                          or (svc.hosts and v.labels.get(TLS_MODE_LABEL) == "disabled"))
        zoned = any(v.localities for v in model.services[callee].versions)
        specs.append(ClusterSpec(cluster_name(callee), callee, {}, model.policies[callee], plain, zoned))
        for subset in model.subsets.get(callee, {}).values():
            specs.append(ClusterSpec(cluster_name(callee, subset.name), callee, subset.labels, subset.policy, plain,
                                     zoned))
    return specs


def _auto_mtls(spec: ClusterSpec) -> bool:
    """Istio's auto mTLS applies (no DestinationRule tls.mode) and some endpoints take plaintext only."""
    return spec.policy.tls_mode == "ISTIO_MUTUAL" and not spec.policy.tls_explicit and bool(spec.plaintext_versions)


def cluster(spec: ClusterSpec, identity: tuple[str, str], ca_path: str,
            callee_spiffe: str) -> JSON:
    policy = spec.policy
    breaker = policy.circuit_breaker
    result: JSON = {
        "name": spec.name,
        "type": "EDS",
        "eds_cluster_config": {"service_name": spec.name, "eds_config": ads_source()},
        "connect_timeout": duration(policy.connect_timeout_s),
        "lb_policy": _LB_POLICY[policy.load_balancer],
        "circuit_breakers": {"thresholds": [{
            "priority": "DEFAULT",
            "max_connections": breaker.max_connections,
            "max_pending_requests": breaker.max_pending_requests,
            "max_requests": breaker.max_requests,
            "max_retries": breaker.max_retries,
            "track_remaining": True,
        }]},
        "common_lb_config": {"healthy_panic_threshold": {"value": 0},
                             **(locality.lb_config(policy.locality_lb) if spec.zoned else {})},
    }
    if breaker.max_requests_per_connection:
        result["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                TYPE: f"{API}.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {
                    "max_requests_per_connection": breaker.max_requests_per_connection},
                "explicit_http_config": {"http_protocol_options": {}},
            }
        }
    if policy.outlier is not None:
        od = policy.outlier
        result["outlier_detection"] = {
            "consecutive_5xx": od.consecutive_5xx,
            "enforcing_consecutive_5xx": 100 if od.consecutive_5xx else 0,
            "consecutive_gateway_failure": od.consecutive_gateway_errors or 5,
            "enforcing_consecutive_gateway_failure": 100 if od.consecutive_gateway_errors else 0,
            "enforcing_success_rate": 0,
            "interval": duration(od.interval_s),
            "base_ejection_time": duration(od.base_ejection_time_s),
            "max_ejection_percent": od.max_ejection_percent,
        }
    if _auto_mtls(spec):
        # per endpoint, as Istio's auto mTLS: mTLS to the endpoints labelled for it, plaintext to the rest
        result["transport_socket_matches"] = [{
            "name": "tlsMode-istio", "match": {TLS_MODE_KEY: "istio"},
            "transport_socket": upstream_tls(identity, ca_path, callee_spiffe, spec.service),
        }]
    elif policy.tls_mode == "ISTIO_MUTUAL":
        result["transport_socket"] = upstream_tls(identity, ca_path, callee_spiffe, spec.service)
    return result


def upstream_tls(identity: tuple[str, str], ca_path: str, callee_spiffe: str, sni: str) -> JSON:
    cert, key = identity
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            TYPE: f"{API}.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": sni,
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": cert},
                                      "private_key": {"filename": key}}],
                "validation_context": {
                    "trusted_ca": {"filename": ca_path},
                    "match_typed_subject_alt_names": [
                        {"san_type": "URI", "matcher": {"exact": callee_spiffe}}],
                },
            },
        },
    }


def load_assignment(spec: ClusterSpec, endpoints: Iterable[Endpoint], view: locality.CallerView | None = None) -> JSON:
    """One cluster's endpoints; for a service with localities, grouped by locality with the priorities and weights
    the caller ``view`` gets (``envoy.locality``)."""
    chosen = {e.pod: e for e in endpoints if all(e.labels.get(k) == v for k, v in spec.subset_labels.items())}
    auto = _auto_mtls(spec)

    def render(pod: str) -> JSON:
        e = chosen[pod]
        return {"endpoint": {"address": address(e.port), "hostname": e.pod},
                **({"metadata": {"filter_metadata": {"envoy.transport_socket_match": {TLS_MODE_KEY: "istio"}}}}
                   if auto and e.version not in spec.plaintext_versions else {})}

    if spec.zoned:
        groups = locality.locality_endpoints(((e.pod, e.locality, e.labels) for e in chosen.values()),
                                             view or locality.CallerView(), spec.policy.locality_lb,
                                             spec.policy.outlier is not None, render)
        return {"cluster_name": spec.name, "endpoints": groups}
    return {"cluster_name": spec.name, "endpoints": [{"lb_endpoints": [render(pod) for pod in chosen]}]}
