"""Cluster patches (istiod's cluster_patch.go; core/cluster.go for the contexts).
Part of ``envoyfilters``, whose docstring says what istiod does and where.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from chaosmesh_qa.targets.local.envoy.envoyfilters.model import (
    CLUSTER_MESSAGE,
    JSON,
    MERGES,
    EnvoyFilterObject,
    IstiodPanic,
    Patch,
    Proxy,
    Unresolvable,
    log,
)
from chaosmesh_qa.targets.local.envoy.envoyfilters.protomerge import (
    clone,
    descriptor,
    merge_any_with_any,
    merge_message,
    snake,
)
from chaosmesh_qa.targets.local.envoy.envoyfilters.selection import compile_patches, context_matches


def patch_clusters(clusters: Sequence[JSON], filters: Sequence[EnvoyFilterObject], proxy: Proxy,
                   inbound_services: Mapping[str, Sequence[str]] | None = None) -> list[JSON]:
    """``clusters`` (CDS documents of ``proxy``) with the CLUSTER patches of ``filters`` applied.

    Context, as istiod builds them: every cluster of a gateway is GATEWAY; on a sidecar ``inbound|…`` clusters
    and ``InboundPassthroughCluster`` are SIDECAR_INBOUND, every other one (``outbound|…``, ``BlackHoleCluster``,
    ``PassthroughCluster``) SIDECAR_OUTBOUND.  Bootstrap (static) clusters are never patched: leave them out.
    ``cluster.service``/``subset``/``portNumber`` read Istio cluster names (``direction|port|subset|host``);
    ``inbound_services``: the service hostnames an inbound cluster serves, by cluster name (istiod matches
    ``cluster.service`` on them for inbound clusters).  Added clusters follow the generated ones.
    """
    patches = compile_patches(filters, proxy).get("CLUSTER", [])
    if not patches:
        return clone(list(clusters))
    out = []
    for original in clusters:
        name = str(original.get("name", ""))
        context = _cluster_context(name, proxy)
        try:
            patched = _patch_cluster(context, patches, snake(clone(original), CLUSTER_MESSAGE),
                                     list((inbound_services or {}).get(name, ())))
        except IstiodPanic as exc:
            log.error("cluster %s: patches did not take effect, as in istiod: %s", name, exc)
            patched = clone(original)
        if patched is not None:
            out.append(patched)
    for context in (("GATEWAY",) if proxy.kind == "gateway" else ("SIDECAR_OUTBOUND", "SIDECAR_INBOUND")):
        for p in patches:
            if p.operation != "ADD" or p.value is None or (p.context == "ANY" and context == "SIDECAR_INBOUND"):
                continue
            if context_matches(context, p):
                out.append(clone(p.value))
    return out


def _cluster_context(name: str, proxy: Proxy) -> str:
    if proxy.kind == "gateway":
        return "GATEWAY"
    inbound = name.startswith(("inbound|", "inbound_.", "InboundPassthroughCluster"))
    return "SIDECAR_INBOUND" if inbound else "SIDECAR_OUTBOUND"


def _patch_cluster(context: str, patches: list[Patch], cluster: JSON, hosts: list[str]) -> JSON | None:
    for p in patches:
        matched = context_matches(context, p) and _cluster_matches(cluster, p, hosts)
        if p.operation == "REMOVE" and matched:
            return None
        if p.operation not in MERGES or not matched or p.value is None:
            continue
        try:
            handled = _merge_cluster_transport_socket(cluster, p)
        except Unresolvable:
            continue
        if not handled:
            merge_message(cluster, p.value, descriptor(CLUSTER_MESSAGE), p.operation == "MERGE_AND_REPLACE_LIST")
    return cluster


def _merge_cluster_transport_socket(cluster: JSON, p: Patch) -> bool:
    """A CLUSTER MERGE with a transport socket changes only the cluster's transport socket (istiod)."""
    theirs = (p.value or {}).get("transport_socket")
    if not isinstance(theirs, dict):
        return False
    target = None
    matches = cluster.get("transport_socket_matches") or []
    if matches:
        for entry in matches:
            socket = entry.get("transport_socket")
            if isinstance(socket, dict) and socket.get("name", "") == theirs.get("name", ""):
                target = socket
                break
        if target is None:
            return True  # no socket of that name among the matches: istiod drops the patch
    elif (isinstance(cluster.get("transport_socket"), dict)
          and cluster["transport_socket"].get("name", "") == theirs.get("name", "")):
        target = cluster["transport_socket"]
    if target is None:
        cluster["transport_socket"] = clone(theirs)
    elif isinstance(target.get("typed_config"), dict) and isinstance(theirs.get("typed_config"), dict):
        target["typed_config"] = merge_any_with_any(target["typed_config"], theirs["typed_config"], p)
    return True


def parse_cluster_name(name: str) -> tuple[str, int, str, str]:
    """``(direction, port, subset, host)`` of an Istio cluster name (``outbound|80|v1|reviews.default.svc…``,
    or its DNS SRV form ``outbound_.80_.v1_.reviews…``); empty parts (and port 0) where it is not one."""
    sep = "_." if name.startswith(("outbound_", "inbound_")) else "|"
    direction, found, rest = name.partition(sep)
    if not found:
        return "", 0, "", ""
    port_text, found, rest = rest.partition(sep)
    if not found:
        return direction, 0, "", ""
    port = int(port_text) if port_text.isdigit() else 0
    subset, found, rest = rest.partition(sep)
    if not found:
        return direction, port, "", ""
    return (direction, port, subset, "") if sep in rest else (direction, port, subset, rest)


def _cluster_matches(cluster: JSON, p: Patch, hosts: list[str]) -> bool:
    wanted = p.match.get("cluster")
    if not isinstance(wanted, dict):
        return True
    if wanted.get("name"):
        return bool(wanted["name"] == cluster.get("name"))
    direction, port, subset, host = parse_cluster_name(str(cluster.get("name", "")))
    candidates = hosts if direction == "inbound" and hosts else [host]
    if wanted.get("subset") and wanted["subset"] != subset:
        return False
    if wanted.get("service") and wanted["service"] not in candidates:
        return False
    return not wanted.get("portNumber") or wanted["portNumber"] == port
