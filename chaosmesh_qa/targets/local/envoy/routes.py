"""Outbound HTTP routes (RDS) from VirtualServices, with Istio's defaults for retries and timeouts.

Called by ``controlplane`` for each calling service's sidecars and for the ingress
gateway.  Every route stamps the caller's name into ``x-envoy-downstream-service-cluster``
(by the router, after the HTTP filters have run) so that the callee's
fault filter can target one caller→callee edge through its per-caller runtime keys.
"""

from __future__ import annotations

from chaosmesh_qa.mesh.callers import as_seen_by, routes_seen_by
from chaosmesh_qa.mesh.model import MeshModel, Route, RouteMatch
from chaosmesh_qa.targets.local.envoy.common import (
    API,
    CALLER_HEADER,
    JSON,
    TYPE,
    cluster_name,
    duration,
    string_matcher,
)

OUTBOUND_ROUTE_CONFIG = "outbound"
FAULT_FILTER = "envoy.filters.http.fault"


def service_domains(model: MeshModel, service: str) -> list[str]:
    svc = model.services[service]
    names = list(svc.host_names)  # a MESH_INTERNAL entry: its hosts
    return [*names, *(f"{n}:{svc.port}" for n in names)]


def outbound_route_config(model: MeshModel, caller: str, callees: list[str]) -> JSON:
    """RouteConfiguration for a caller's outbound listener: one virtual host per service it knows.

    Envoy routes a request by its authority: the ``Host`` header, or the host of an absolute-form
    request line (``GET http://catalog/items``, what HTTP clients send to a proxy).
    """
    return {
        "name": OUTBOUND_ROUTE_CONFIG,
        "virtual_hosts": [
            {
                "name": callee,
                "domains": service_domains(model, callee),
                "routes": [r for route in routes_seen_by(model, callee, caller) for r in envoy_routes(route, caller)],
            }
            for callee in callees
        ],
        "request_headers_to_add": [_caller_header(caller)],
        # a destination a Sidecar resource hides has no cluster here: Envoy answers 503 for that
        # share (as Istio does) instead of refusing the whole configuration
        "validate_clusters": False,
    }


def ingress_route_config(model: MeshModel) -> JSON:
    """RouteConfiguration of the ingress gateway: the fronted service's routes under its paths."""
    front = model.ingress_service
    routes: list[JSON] = []
    for prefix in model.ingress_paths:
        for route in routes_seen_by(model, front, "ingress"):
            for envoy_route in envoy_routes(route, "ingress"):
                if "prefix" in envoy_route["match"] and envoy_route["match"]["prefix"] == "/":
                    envoy_route["match"]["prefix"] = prefix
                routes.append(envoy_route)
    virtual_hosts = [{"name": "ingress", "domains": ["*"], "routes": routes}]
    if model.gateway_hosts:  # a Gateway's hosts, each with its gateway-bound routes only (not the mesh's)
        virtual_hosts = [{"name": host.name, "domains": list(host.domains),
                          "routes": [r for route in as_seen_by(model, host.routes, "ingress")
                                     for r in envoy_routes(route, "ingress")]}
                         for host in model.gateway_hosts]
    return {
        "name": OUTBOUND_ROUTE_CONFIG,
        "virtual_hosts": virtual_hosts,
        # nobody outside the mesh may steer Envoy's header-driven fault filter
        "request_headers_to_remove": ["x-envoy-fault-delay-request", "x-envoy-fault-abort-request",
                                      "x-envoy-fault-abort-request-percentage",
                                      "x-envoy-fault-delay-request-percentage"],
        "request_headers_to_add": [_caller_header("ingress")],
    }


def envoy_routes(route: Route, caller: str) -> list[JSON]:
    """One Envoy route per match (Istio ORs a route's matches); first match wins, as in Istio."""
    matches = route.matches or (RouteMatch(None, ()),)
    return [{"match": _match(m), "route": _action(route), **_fault(route), **_headers(route)} for m in matches]


def _headers(route: Route) -> JSON:
    """An HTTPRoute's RequestHeaderModifier, applied by the router before the request is forwarded."""
    changes = route.headers
    if changes is None:
        return {}
    found: JSON = {}
    added = [{"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for k, v in changes.set]
    added += [{"header": {"key": k, "value": v}, "append_action": "APPEND_IF_EXISTS_OR_ADD"} for k, v in changes.add]
    if added:
        found["request_headers_to_add"] = added
    if changes.remove:
        found["request_headers_to_remove"] = list(changes.remove)
    return found


def _match(match: RouteMatch) -> JSON:
    result: JSON = {"prefix": "/"}
    if match.uri is not None:
        kind = {"exact": "path", "prefix": "prefix", "regex": "safe_regex"}[match.uri.kind]
        result = {kind: {"regex": match.uri.value} if kind == "safe_regex" else match.uri.value}
    if match.headers:
        result["headers"] = [
            {"name": name, "string_match": string_matcher(m.kind, m.value)} for name, m in match.headers
        ]
    if match.query_params:  # an HTTPRoute's queryParams
        result["query_parameters"] = [
            {"name": name, "string_match": string_matcher(m.kind, m.value)} for name, m in match.query_params
        ]
    return result


def _action(route: Route) -> JSON:
    # "0s" turns Envoy's 15 s default route timeout off: Istio's default is no timeout
    action: JSON = {"timeout": "0s" if route.timeout_s is None else duration(route.timeout_s)}
    if len(route.destinations) == 1:
        only = route.destinations[0]
        action["cluster"] = cluster_name(only.service, only.subset)
    else:
        action["weighted_clusters"] = {"clusters": [
            {"name": cluster_name(d.service, d.subset), "weight": d.weight}
            for d in route.destinations if d.weight > 0
        ]}
    if route.mirrors:  # as Istio: a copy of the request (Host suffixed "-shadow"), its answer dropped
        action["request_mirror_policies"] = [
            {"cluster": cluster_name(m.service, m.subset),
             "runtime_fraction": {"default_value": _percent(m.percent)}}
            for m in route.mirrors
        ]
    retries = route.retries
    if retries.attempts > 0:
        policy: JSON = {
            "retry_on": retries.retry_on,
            "num_retries": retries.attempts,
            "retry_host_predicate": [{
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {TYPE: f"{API}.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
            }],
            "host_selection_retry_max_attempts": "5",
        }
        if retries.per_try_timeout_s:
            policy["per_try_timeout"] = duration(retries.per_try_timeout_s)
        if retries.retriable_status_codes:
            policy["retriable_status_codes"] = list(retries.retriable_status_codes)
        action["retry_policy"] = policy
    return action


def _fault(route: Route) -> JSON:
    """A VirtualService's declared fault, applied caller-side as Istio does."""
    fault = route.fault
    if fault is None:
        return {}
    config: JSON = {TYPE: f"{API}.extensions.filters.http.fault.v3.HTTPFault"}
    if fault.delay_s is not None:
        config["delay"] = {"fixed_delay": duration(fault.delay_s), "percentage": _percent(fault.delay_percent)}
    if fault.abort_status is not None:
        config["abort"] = {"http_status": fault.abort_status, "percentage": _percent(fault.abort_percent)}
    return {"typed_per_filter_config": {FAULT_FILTER: {
        TYPE: f"{API}.config.route.v3.FilterConfig", "disabled": False, "config": config,
    }}}


def _percent(value: float) -> JSON:
    return {"numerator": round(value * 10_000), "denominator": "MILLION"}


def _caller_header(caller: str) -> JSON:
    return {"header": {"key": CALLER_HEADER, "value": caller}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
