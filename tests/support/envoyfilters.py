"""Builders shared by the EnvoyFilter engine's tests (tests/targets/local/envoy/envoyfilters/): EnvoyFilter objects
and config patches, the sandbox's own listeners, clusters and route configurations to patch, and what to read back
from them.  Pure: nothing here starts a process.
"""

from __future__ import annotations

from typing import Any

from chaosmesh_qa.targets.local.envoy import envoyfilters as ef
from chaosmesh_qa.targets.local.envoy.envoyfilters import EnvoyFilterObject, Proxy
from chaosmesh_qa.targets.local.envoy.listeners import (
    SANDBOX_FAULT_FILTER,
    PodIdentity,
    inbound_listener,
    outbound_listener,
)

JSON = dict[str, Any]
HCM = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"
FAULT = SANDBOX_FAULT_FILTER  # the filter before the router in the inbound listeners these tests patch
OUTBOUND_FAULT = "envoy.filters.http.fault"  # ... and in the outbound and gateway ones (Istio's name)
T = "type.googleapis.com/"
FAULT_TYPE = f"{T}envoy.extensions.filters.http.fault.v3.HTTPFault"
HCM_TYPE = f"{T}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
SIDECAR = Proxy("shop", {"app": "catalog", "version": "v1"}, "sidecar", istio_version="1.29.1",
                metadata={"CLUSTER_ID": "Kubernetes"})
GATEWAY = Proxy("istio-system", {"istio": "ingressgateway"}, "gateway")
IDENTITY = PodIdentity("spiffe://cluster.local/ns/shop/sa/catalog", "/pki/catalog.crt", "/pki/catalog.key",
                       "/pki/ca.crt")


def filt(*patches: JSON, namespace: str = "shop", name: str = "f", order: int = 0, **spec: Any) -> EnvoyFilterObject:
    return EnvoyFilterObject(namespace, name, {"configPatches": list(patches), **spec}, order)


def cp(apply_to: str, operation: str, value: JSON | None = None, **match: Any) -> JSON:
    patch: JSON = {"operation": operation}
    if value is not None:
        patch["value"] = value
    return {"applyTo": apply_to, "match": match, "patch": patch} if match else {"applyTo": apply_to, "patch": patch}


def on_hcm(sub: str | None = None, filter_name: str = HCM, **listener: Any) -> JSON:
    """A listener match on the HTTP connection manager (and one of its HTTP filters)."""
    wanted: JSON = {"name": filter_name}
    if sub is not None:
        wanted["subFilter"] = {"name": sub}
    return {"filterChain": {"filter": wanted}, **listener}


def inbound(mode: str = "STRICT") -> JSON:
    return inbound_listener(15006, mode, IDENTITY, [])


def outbound() -> JSON:
    return outbound_listener("outbound", 15001, "outbound")


def apply_listeners(listeners: list[JSON], *objects: EnvoyFilterObject, proxy: Proxy = SIDECAR) -> list[JSON]:
    return ef.patch_listeners(listeners, ef.filters_for(objects, proxy), proxy)


def http_filters(listener: JSON, chain: int = 0) -> list[str]:
    hcm = next(f for f in listener["filter_chains"][chain]["filters"] if f["name"] == HCM)
    return [h["name"] for h in hcm["typed_config"]["http_filters"]]


def hcm_config(listener: JSON, chain: int = 0) -> JSON:
    return next(f for f in listener["filter_chains"][chain]["filters"] if f["name"] == HCM)["typed_config"]


def fault_value(name: str = "team.fault", status: int = 418) -> JSON:
    return {"name": name, "typedConfig": {"@type": FAULT_TYPE,
                                          "abort": {"httpStatus": status, "percentage": {"numerator": 100}}}}


def insert_fault(operation: str = "INSERT_BEFORE", sub: str | None = ROUTER, context: str = "SIDECAR_INBOUND",
                 **listener: Any) -> JSON:
    return cp("HTTP_FILTER", operation, fault_value(), context=context, listener=on_hcm(sub, **listener))


def cluster(name: str, **extra: Any) -> JSON:
    return {"name": name, "type": "EDS", "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN", **extra}


def apply_clusters(clusters: list[JSON], *objects: EnvoyFilterObject, proxy: Proxy = SIDECAR,
                   **kwargs: Any) -> list[JSON]:
    return ef.patch_clusters(clusters, ef.filters_for(objects, proxy), proxy, **kwargs)


def route_config(name: str = "80") -> JSON:
    return {"name": name, "virtual_hosts": [
        {"name": "catalog.shop.svc.cluster.local:80", "domains": ["catalog", "catalog.shop.svc.cluster.local"],
         "routes": [{"name": "default", "match": {"prefix": "/"}, "route": {"cluster": "outbound|80||catalog"}}]},
        {"name": "reviews.shop.svc.cluster.local:80", "domains": ["reviews"],
         "routes": [{"name": "moved", "match": {"prefix": "/old"}, "redirect": {"path_redirect": "/new"}},
                    {"name": "default", "match": {"prefix": "/"}, "route": {"cluster": "outbound|80||reviews"}}]},
    ]}


def apply_routes(rcs: list[JSON], *objects: EnvoyFilterObject, proxy: Proxy = SIDECAR) -> list[JSON]:
    return ef.patch_route_configurations(rcs, ef.filters_for(objects, proxy), proxy)


def route_names(rc: JSON, host: int = 0) -> list[str]:
    return [r.get("name", "?") for r in rc["virtual_hosts"][host]["routes"]]
