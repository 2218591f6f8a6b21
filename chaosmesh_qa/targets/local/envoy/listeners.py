"""Sidecar and ingress listeners (LDS) and the Envoy bootstrap.

The inbound listener terminates mTLS per the workload's PeerAuthentication mode,
enforces AuthorizationPolicies with the HTTP RBAC filter, and carries the runtime-driven
fault filter that fault actions steer through ``/runtime_modify``; the outbound listener
routes the app's calls by ``Host`` through RDS.  The admin API listens on an owner-only
Unix socket; the static stats listener serves only ``/stats/prometheus`` and a readiness
path from it, read-only, on 127.0.0.1 (as Istio's sidecars do).  Called by ``controlplane``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chaosmesh_qa.mesh.security_model import AuthzPolicy
from chaosmesh_qa.targets.local.envoy import tracing
from chaosmesh_qa.targets.local.envoy.common import API, JSON, TYPE, address, ads_source
from chaosmesh_qa.targets.local.envoy.rbac import rbac_filters
from chaosmesh_qa.targets.local.envoy.routes import FAULT_FILTER, OUTBOUND_ROUTE_CONFIG

LOCAL_APP_CLUSTER = "local_app"
# starts with "_": no DNS-1123 service name (and so no SLI's cluster-name pattern) can match it
ADMIN_CLUSTER = "_admin"
ADS_CLUSTER = "_xds"
STATS_PATH = "/stats/prometheus"
READY_PATH = "/healthz/ready"  # -> the admin API's /ready
ADMIN_SOCKET_MODE = 0o600
HCM = "envoy.filters.network.http_connection_manager"
ISTIO_INBOUND = "virtualInbound"  # istiod's name of the sidecar's inbound listener
# The inbound fault filter the sandbox's own faults steer through runtime keys.  Not Istio's name for its
# fault filter (istiod puts an ``envoy.filters.http.fault`` only in outbound and gateway HTTP managers), so an
# EnvoyFilter that matches that name at SIDECAR_INBOUND matches nothing here either, as on a cluster.
SANDBOX_FAULT_FILTER = "chaosmesh-qa.sandbox-faults"
# Fine latency buckets (ms) so that SLOs such as "p99 <= 300 ms" are resolvable (Envoy's
# defaults jump from 250 to 500 ms).
HISTOGRAM_BUCKETS_MS = [1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750,
                        1000, 1500, 2000, 3000, 5000, 10000, 30000, 60000]


@dataclass(frozen=True)
class PodIdentity:
    spiffe_id: str
    cert: str
    key: str
    ca: str


def bootstrap(node_id: str, node_cluster: str, admin_socket: str, stats_port: int, ads_socket: str,
              app_port: int | None, trace_port: int | None = None, locality: JSON | None = None) -> JSON:
    """Everything but the static stats listener and local clusters comes over ADS (``xds.server``).

    ``trace_port``: the trace receiver's port (``tracing.collector``), for listeners rendered with tracing.
    ``locality``: the pod's Envoy ``Locality`` (``envoy.locality.node_locality``), as istiod's sidecars know theirs.
    """
    static_clusters = [_admin_cluster(admin_socket), _ads_cluster(ads_socket)]
    if trace_port is not None:  # where the tracer POSTs its span batches (plain HTTP/1.1)
        static_clusters.append(_static_cluster(tracing.COLLECTOR_CLUSTER, address(trace_port)))
    if app_port is not None:
        static_clusters.append(_static_cluster(LOCAL_APP_CLUSTER, address(app_port), circuit_breakers={
            "thresholds": [{"max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000}]}))
    return {
        "node": {"id": node_id, "cluster": node_cluster, **({"locality": locality} if locality else {})},
        "admin": {"address": _pipe(admin_socket)},
        "layered_runtime": {"layers": [
            {"name": "static", "static_layer": tracing.RUNTIME if trace_port is not None else {}},
            {"name": "admin", "admin_layer": {}},
        ]},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only": True,
                           "grpc_services": [{"envoy_grpc": {"cluster_name": ADS_CLUSTER}}]},
            "lds_config": ads_source(), "cds_config": ads_source(),
        },
        "static_resources": {"listeners": [stats_listener(stats_port)], "clusters": static_clusters},
        # histograms reach /stats/prometheus at each stats flush: every second, not Envoy's default 5 s
        "stats_flush_interval": "1s",
        "stats_config": {"histogram_bucket_settings": [
            {"match": {"safe_regex": {"regex": ".*"}}, "buckets": HISTOGRAM_BUCKETS_MS}]},
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                TYPE: f"{API}.extensions.resource_monitors.downstream_connections.v3."
                      "DownstreamConnectionsConfig",
                "max_active_downstream_connections": 50000,
            },
        }]},
    }


def stats_listener(port: int) -> JSON:
    """Read-only view of the admin API on 127.0.0.1: ``GET /stats/prometheus`` (any query) and
    ``GET /healthz/ready`` (admin ``/ready``); every other request is answered 404 here."""
    get = [{"name": ":method", "string_match": {"exact": "GET"}}]
    return {
        "name": "stats",
        "address": address(port),
        "enable_reuse_port": False,
        "filter_chains": [{"filters": [_hcm("stats", {
            "route_config": {"name": "stats", "virtual_hosts": [{
                "name": "stats", "domains": ["*"],
                "routes": [
                    {"match": {"path": STATS_PATH, "headers": get}, "route": {"cluster": ADMIN_CLUSTER}},
                    {"match": {"path": READY_PATH, "headers": get},
                     "route": {"cluster": ADMIN_CLUSTER, "prefix_rewrite": "/ready"}},
                    {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
                ],
            }]},
            "http_filters": [_router()],
        })]}],
    }


def _static_cluster(name: str, endpoint: JSON, **extra: Any) -> JSON:
    """A bootstrap cluster of one fixed endpoint (a socket address or a Unix socket ``pipe``)."""
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name,
                            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": endpoint}}]}]},
        **extra,
    }


def _admin_cluster(admin_socket: str) -> JSON:
    return _static_cluster(ADMIN_CLUSTER, {"pipe": {"path": admin_socket}})


def _ads_cluster(ads_socket: str) -> JSON:
    """The control plane's gRPC server: HTTP/2 over the supervisor's owner-only Unix socket."""
    return _static_cluster(ADS_CLUSTER, {"pipe": {"path": ads_socket}}, typed_extension_protocol_options={
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            TYPE: f"{API}.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }})


def _pipe(path: str) -> JSON:
    return {"pipe": {"path": path, "mode": ADMIN_SOCKET_MODE}}


def outbound_listener(name: str, port: int, stat_prefix: str, traced: bool = False, strip_port: bool = False,
                      policies: list[AuthzPolicy] | None = None) -> JSON:
    """Plaintext HTTP listener for an app's (or the outside world's) calls into the mesh.

    ``policies``: AuthorizationPolicies enforced here (the ingress gateway's, ``mesh.authz``).

    ``traced``: each request is a CLIENT span (the bootstrap must have the collector cluster).
    ``strip_port``: hosts are matched without their port (the ingress: a Gateway's hosts have none).
    """
    return {
        "name": name,
        "address": address(port),
        "enable_reuse_port": False,
        "traffic_direction": "OUTBOUND",
        "filter_chains": [{"filters": [_hcm(stat_prefix, {
            "rds": {"route_config_name": OUTBOUND_ROUTE_CONFIG, "config_source": ads_source()},
            "http_filters": [
                *rbac_filters(policies or []),
                {"name": FAULT_FILTER, "disabled": True, "typed_config": _fault_filter()},
                _router(),
            ],
            **({"tracing": tracing.hcm_tracing()} if traced else {}),
            **({"strip_any_host_port": True} if strip_port else {}),
        })]}],
    }


def inbound_listener(port: int, mtls_mode: str, identity: PodIdentity,
                     policies: list[AuthzPolicy], traced: bool = False, forward_client_cert: str = "APPEND_FORWARD",
                     xfcc_uri: bool = True) -> JSON:
    """The sidecar's inbound listener: mTLS per PeerAuthentication, RBAC, runtime faults;
    ``traced``: each request is a SERVER span; ``forward_client_cert`` / ``xfcc_uri``: the mesh's
    ``proxyHeaders`` (what the header forwarded to the app holds)."""
    http_filters = [*rbac_filters(policies), {"name": SANDBOX_FAULT_FILTER, "typed_config": _fault_filter()},
                    _router()]
    hcm = _hcm("inbound", {
        "route_config": {"name": "inbound", "virtual_hosts": [{
            "name": "local_app", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": LOCAL_APP_CLUSTER, "timeout": "0s"}}],
        }]},
        "http_filters": http_filters,
        # as istiod sets them for a sidecar's inbound from proxyHeaders (by default the caller's certificate is
        # appended to what came in)
        "forward_client_cert_details": forward_client_cert,
        "set_current_client_cert_details": {"subject": True, "uri": xfcc_uri, "dns": True},
        **({"tracing": tracing.hcm_tracing()} if traced else {}),
    })
    tls_chain: JSON = {"filters": [hcm], "transport_socket": _downstream_tls(identity)}
    plain_chain: JSON = {"filters": [hcm]}
    listener: JSON = {
        "name": "inbound",
        "address": address(port),
        "enable_reuse_port": False,
        "traffic_direction": "INBOUND",
    }
    if mtls_mode == "STRICT":
        listener["filter_chains"] = [tls_chain]
    elif mtls_mode == "DISABLE":
        listener["filter_chains"] = [plain_chain]
    else:  # PERMISSIVE: TLS and plaintext on the same port, told apart by the TLS inspector
        listener["listener_filters"] = [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {TYPE: f"{API}.extensions.filters.listener.tls_inspector.v3.TlsInspector"},
        }]
        listener["filter_chains"] = [
            {**tls_chain, "filter_chain_match": {"transport_protocol": "tls"}},
            {**plain_chain, "filter_chain_match": {"transport_protocol": "raw_buffer"}},
        ]
    return listener


def _hcm(stat_prefix: str, extra: JSON) -> JSON:
    return {"name": HCM, "typed_config": {
        TYPE: f"{API}.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "generate_request_id": True,
        "normalize_path": True,
        **extra,
    }}


def _router() -> JSON:
    return {"name": "envoy.filters.http.router",
            "typed_config": {TYPE: f"{API}.extensions.filters.http.router.v3.Router"}}


def _fault_filter() -> JSON:
    """Inert until runtime keys ``fault.http[.<caller>].{delay,abort}.*`` are set
    (docs/explanation/envoy-notes.md §4)."""
    return {
        TYPE: f"{API}.extensions.filters.http.fault.v3.HTTPFault",
        "delay": {"fixed_delay": "0.001s", "percentage": {"numerator": 0, "denominator": "HUNDRED"}},
        "abort": {"http_status": 503, "percentage": {"numerator": 0, "denominator": "HUNDRED"}},
    }


def _trust_domain_prefix(spiffe_id: str) -> str:
    """``spiffe://<trust domain>/`` of a workload's own identity: its peers must be of the same mesh."""
    return "spiffe://" + spiffe_id.removeprefix("spiffe://").split("/", 1)[0] + "/"


def _downstream_tls(identity: PodIdentity) -> JSON:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            TYPE: f"{API}.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": identity.cert},
                                      "private_key": {"filename": identity.key}}],
                "validation_context": {
                    "trusted_ca": {"filename": identity.ca},
                    "match_typed_subject_alt_names": [
                        {"san_type": "URI", "matcher": {"prefix": _trust_domain_prefix(identity.spiffe_id)}}],
                },
            },
        },
    }
