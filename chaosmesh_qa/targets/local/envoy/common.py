"""Small Envoy v3 building blocks shared by the listener, route and cluster renderers."""

from __future__ import annotations

from typing import Any

TYPE = "@type"
API = "type.googleapis.com/envoy"
CALLER_HEADER = "x-envoy-downstream-service-cluster"
INGRESS = "ingress"  # the ingress gateway's name as a caller / node cluster
INGRESS_SPIFFE = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"

JSON = dict[str, Any]


def address(port: int, host: str = "127.0.0.1") -> JSON:
    return {"socket_address": {"address": host, "port_value": port}}


def duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def file_source(path: str) -> JSON:
    return {"resource_api_version": "V3", "path_config_source": {"path": path}}


def discovery_response(type_url: str, resources: list[JSON], version: int) -> JSON:
    return {
        "version_info": str(version),
        "resources": [{TYPE: f"{API}.{type_url}", **r} for r in resources],
    }


def cluster_name(service: str, subset: str | None = None) -> str:
    """Envoy cluster for a service (or one subset). DNS-1123 names cannot hold '_', so it is unambiguous."""
    return f"{service}_{subset}" if subset else service


def string_matcher(kind: str, value: str) -> JSON:
    if kind == "regex":
        return {"safe_regex": {"regex": value}}
    return {kind: value}
