"""Faults toward a ServiceEntry's host on the Kubernetes target: at the callers' sidecars, as Istio places them.

A mesh-external host has no sidecar of its own to inject a fault into, so ``KubernetesTarget`` asks this module for
EnvoyFilters on the callers' side (``outbound_fault_filters``): an HTTP fault filter inserted before the router of
every SIDECAR_OUTBOUND HTTP connection manager, matching only requests whose authority is the host (with or without
a port).  With ``source``, one EnvoyFilter in the caller's namespace selecting its pods; without, one per namespace
of the target with no workload selector (every sidecar there: every caller in those namespaces).  That is the
placement of a VirtualService fault: before the caller's router, so the caller's own timeout and retries toward the
host do not see the delay or abort, and its outlier detection never counts one (``CALLER_SIDE``, in the record).
A partition ``a`` -> host (mode ``reject``) is that abort (503) for every request of ``a``; ``drop`` is refused
(``PARTITION_RULE``).  ``declared_host`` finds the ServiceEntry that declares the host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chaosmesh_qa.targets.kubernetes.cluster import Cluster
from chaosmesh_qa.targets.kubernetes.objects import ENVOYFILTER, Kind, fault_metadata

SERVICEENTRY = Kind("ServiceEntry", "networking.istio.io", "v1", "serviceentries")
WORKLOADENTRY = Kind("WorkloadEntry", "networking.istio.io", "v1", "workloadentries")  # a VM of a MESH_INTERNAL entry
CALLER_SIDE = ("caller-side: an HTTP fault filter in the callers' sidecars' outbound, before their router, for "
               "requests to this host (there is no callee sidecar; a VirtualService fault sits there too): the "
               "callers' timeout and retries toward the host do not see the delay or abort, and their outlier "
               "detection never counts it")

PARTITION_RULE = ("mode: a partition toward a ServiceEntry's host takes direction 'to' and mode 'reject' on the "
                  "kubernetes target (the caller's sidecar answers 503, as for a reject partition), and no "
                  "count/percent/version/zone/isolate: 'drop' would need an egress NetworkPolicy, which cannot "
                  "name a host")


def declared_host(cluster: Cluster, namespaces: list[str], host: str) -> str | None:
    """The ``<namespace>/<name>`` of the ServiceEntry declaring ``host`` (exactly, ignoring case) in ``namespaces``."""
    wanted = host.lower().rstrip(".")
    for namespace in namespaces:
        for entry in cluster.list_custom(SERVICEENTRY, namespace):
            hosts = [str(h).lower().rstrip(".") for h in (entry.get("spec") or {}).get("hosts") or []]
            if wanted in hosts:
                return f"{namespace}/{entry['metadata']['name']}"
    return None


def authority_regex(host: str) -> str:
    """RE2 for an ``:authority`` that is ``host``, with or without a port."""
    return rf"^{re.escape(host)}(:[0-9]+)?$"


def outbound_fault_filter(fault_id: str, expires_at: float, namespace: str, selector: Mapping[str, str] | None,
                          host: str, fault: dict[str, Any], name: str) -> dict[str, Any]:
    """An EnvoyFilter inserting the fault before the router of the outbound HTTP connection managers of the
    sidecars ``selector`` picks in ``namespace`` (all of them when None), for requests to ``host`` only."""
    matcher = {"name": ":authority", "string_match": {"safe_regex": {"regex": authority_regex(host)}}}
    typed_config = {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault", **fault,
                    "headers": [matcher]}
    patch = {"applyTo": "HTTP_FILTER",
             "match": {"context": "SIDECAR_OUTBOUND",
                       "listener": {"filterChain": {"filter": {
                           "name": "envoy.filters.network.http_connection_manager",
                           "subFilter": {"name": "envoy.filters.http.router"}}}}},
             "patch": {"operation": "INSERT_BEFORE",
                       "value": {"name": f"chaosmesh-qa.{fault_id}", "typed_config": typed_config}}}
    spec: dict[str, Any] = {"configPatches": [patch]}
    if selector is not None:
        spec = {"workloadSelector": {"labels": dict(selector)}, **spec}
    return {"apiVersion": ENVOYFILTER.api_version, "kind": ENVOYFILTER.kind,
            "metadata": fault_metadata(name, namespace, fault_id, expires_at), "spec": spec}
