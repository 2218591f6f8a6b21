"""Route-configuration, virtual-host and HTTP-route patches (istiod's rc_patch.go; core/httproute.go for the
contexts).
Part of ``envoyfilters``, whose docstring says what istiod does and where.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from chaosmesh_qa.targets.local.envoy.envoyfilters.cluster_patch import parse_cluster_name
from chaosmesh_qa.targets.local.envoy.envoyfilters.model import (
    INSERTS,
    JSON,
    MERGES,
    ROUTE_CONFIGURATION_MESSAGE,
    ROUTE_MESSAGE,
    VIRTUAL_HOST_MESSAGE,
    EnvoyFilterObject,
    Patch,
    Patches,
    Proxy,
)
from chaosmesh_qa.targets.local.envoy.envoyfilters.protomerge import clone, descriptor, merge_message, snake
from chaosmesh_qa.targets.local.envoy.envoyfilters.selection import compile_patches, context_matches, ordered_ops


def patch_route_configurations(route_configurations: Sequence[JSON], filters: Sequence[EnvoyFilterObject],
                               proxy: Proxy) -> list[JSON]:
    """``route_configurations`` (RDS documents of ``proxy``) with the route-class patches of ``filters`` applied.

    RDS route configurations are SIDECAR_OUTBOUND on a sidecar and GATEWAY on a gateway (istiod's sidecar
    inbound ones are inlined in their listener: ``patch_listeners`` patches those).  Sidecar matches read the
    port from the name as istiod does (``80``, ``inbound|80||``); gateway ones from ``http.80`` or
    ``https.443.name.gateway.namespace``.
    """
    patches = compile_patches(filters, proxy)
    context = "GATEWAY" if proxy.kind == "gateway" else "SIDECAR_OUTBOUND"
    out = []
    for original in route_configurations:
        work = snake(clone(original), ROUTE_CONFIGURATION_MESSAGE)
        out.append(patch_route_configuration(context, patches, work, proxy))
    return out


def patch_route_configuration(context: str, patches: Patches, rc: JSON, proxy: Proxy) -> JSON:
    for p in patches.get("ROUTE_CONFIGURATION", []):
        if (p.operation in MERGES and p.value is not None and context_matches(context, p)
                and _route_configuration_matches(context, rc, p, proxy)):
            merge_message(rc, p.value, descriptor(ROUTE_CONFIGURATION_MESSAGE), p.operation == "MERGE_AND_REPLACE_LIST")
    hosts: list[JSON] = rc.get("virtual_hosts") or []
    removed: set[str] = set()
    for index in range(len(hosts)):
        if _patch_virtual_host(context, patches, rc, hosts, index, proxy):
            removed.add(hosts[index].get("name", ""))
    for p in patches.get("VIRTUAL_HOST", []):
        if (p.operation == "ADD" and p.value is not None and context_matches(context, p)
                and _route_configuration_matches(context, rc, p, proxy)):
            hosts.append(clone(p.value))
    if removed:  # istiod removes by name, after the adds: an added host of a removed name goes too
        hosts = [h for h in hosts if h.get("name", "") not in removed]
    if hosts or "virtual_hosts" in rc:
        rc["virtual_hosts"] = hosts
    return rc


def _patch_virtual_host(context: str, patches: Patches, rc: JSON, hosts: list[JSON], index: int,
                        proxy: Proxy) -> bool:
    """Patches ``hosts[index]`` in place (REPLACE swaps it); True: removed."""
    for p in patches.get("VIRTUAL_HOST", []):
        if not (context_matches(context, p) and _route_configuration_matches(context, rc, p, proxy)
                and _virtual_host_matches(hosts[index], p)):
            continue
        if p.operation == "REMOVE":
            return True
        if p.operation in MERGES and p.value is not None:
            merge_message(hosts[index], p.value, descriptor(VIRTUAL_HOST_MESSAGE),
                          p.operation == "MERGE_AND_REPLACE_LIST")
        elif p.operation == "REPLACE" and p.value is not None:
            hosts[index] = clone(p.value)
    _patch_http_routes(context, patches, rc, hosts[index], proxy)
    return False


def _patch_http_routes(context: str, patches: Patches, rc: JSON, host: JSON, proxy: Proxy) -> None:
    routes: list[JSON | None] = list(host.get("routes") or [])
    for index in range(len(routes)):
        for p in patches.get("HTTP_ROUTE", []):
            route = routes[index]
            if route is None or not (context_matches(context, p)
                                     and _route_configuration_matches(context, rc, p, proxy)
                                     and _virtual_host_matches(host, p) and _route_matches(route, p)):
                continue
            if p.operation == "REMOVE":
                routes[index] = None
            elif p.operation in MERGES and p.value is not None:
                merge_message(route, p.value, descriptor(ROUTE_MESSAGE), p.operation == "MERGE_AND_REPLACE_LIST")
    for p in patches.get("HTTP_ROUTE", []):
        if (p.value is None or p.operation not in ("ADD", *INSERTS) or not context_matches(context, p)
                or not _route_configuration_matches(context, rc, p, proxy) or not _virtual_host_matches(host, p)):
            continue
        has_match = _route_match(p) is not None
        if p.operation == "INSERT_FIRST":  # with a route match, only when some route matches; always first
            if not has_match or any(r is not None and _route_matches(r, p) for r in routes):
                routes.insert(0, clone(p.value))
            continue
        routes = ordered_ops(routes, p, has_match, partial(_live_route_matches, p=p))
    kept = [r for r in routes if r is not None]
    if kept or "routes" in host:
        host["routes"] = kept


def _route_configuration_matches(context: str, rc: JSON, p: Patch, proxy: Proxy) -> bool:
    wanted = p.match.get("routeConfiguration")
    if not isinstance(wanted, dict):
        return True
    name = str(rc.get("name", ""))
    if wanted.get("name") and wanted["name"] != name:
        return False
    port = wanted.get("portNumber") or 0
    if context != "GATEWAY":
        if name.startswith("inbound"):
            listener_port = parse_cluster_name(name)[1]
        else:
            listener_port = int(name) if name.isdigit() else 0
        return not port or port == listener_port
    route_port, port_name, gateway = parse_gateway_route_name(name)
    if wanted.get("portName") and wanted["portName"] != port_name:
        return False
    if wanted.get("gateway") and wanted["gateway"] != gateway:
        return False
    if port:
        served = proxy.gateway_ports.get(route_port)
        return port in served if served is not None else port == route_port
    return True


def parse_gateway_route_name(name: str) -> tuple[int, str, str]:
    """``(port, port name, "namespace/gateway")`` of a gateway RDS name (``http.80``,
    ``https.443.https-port.gateway.namespace``); 0 and empty strings where it has none."""
    if name.startswith("http."):
        rest = name[len("http."):]
        return (int(rest) if rest.isdigit() else 0), "", ""
    if name.startswith("https.") and name.count(".") == 4:
        port_text, port_name, gateway, namespace = name[len("https."):].split(".")
        return (int(port_text) if port_text.isdigit() else 0), port_name, f"{namespace}/{gateway}"
    return 0, "", ""


def _vhost_match(p: Patch) -> JSON | None:
    found = (p.match.get("routeConfiguration") or {}).get("vhost")
    return found if isinstance(found, dict) else None


def _route_match(p: Patch) -> JSON | None:
    vhost = _vhost_match(p)
    found = vhost.get("route") if vhost is not None else None
    return found if isinstance(found, dict) else None


def _virtual_host_matches(host: JSON, p: Patch) -> bool:
    wanted = _vhost_match(p)
    if wanted is None:
        return True
    return ((not wanted.get("name") or wanted["name"] == host.get("name"))
            and (not wanted.get("domainName") or wanted["domainName"] in (host.get("domains") or [])))


def _live_route_matches(route: JSON | None, p: Patch) -> bool:
    return route is not None and _route_matches(route, p)


def _route_matches(route: JSON, p: Patch) -> bool:
    wanted = _route_match(p)
    if wanted is None:
        return True
    if wanted.get("name") and wanted["name"] != route.get("name", ""):
        return False
    action = wanted.get("action", "ANY")
    for key, kind in (("route", "ROUTE"), ("redirect", "REDIRECT"), ("direct_response", "DIRECT_RESPONSE")):
        if action != "ANY" and key in route:
            return bool(action == kind)
    return True  # another action (filter_action, non_forwarding_action) or ANY: istiod matches it
