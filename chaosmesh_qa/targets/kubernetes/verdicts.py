"""What the mesh QA verdicts read on a cluster besides the declared mesh: effective mTLS modes, observed hops.

``KubernetesTarget.check_plaintext_refused`` / ``observed_edges`` / ``check_authorization`` call these for
``chaosmesh_qa.probes.mtls``, ``routing`` and ``authz`` (the declared mesh itself is ``declared``'s).  Effective
modes are the declared model's, per running pod of the service (found by the Service's selector, its version by
Istio's canonical revision).  Observed hops
come from Istio's ``istio_requests_total`` as the callee's proxy reported them (``reporter="destination"``),
counted over the last minute with a series born in it counted from 0 (Istio creates a series at its first
request); the caller is Istio's canonical service of its pods (``app.kubernetes.io/name`` before ``app``), named
back to its Service.  ``caller_answers`` counts a callee's requests per caller identity (``source_principal`` on a
mutual-TLS hop, else unnamed), serving version and response code over a window, the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import httpx

from chaosmesh_qa.errors import MeasurementFailed
from chaosmesh_qa.mesh.identity import canonical_revision, canonical_service
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.targets.base import Record
from chaosmesh_qa.targets.kubernetes.cluster import Cluster
from chaosmesh_qa.targets.kubernetes.workloads import is_serving

EDGE_WINDOW = "1m"
EDGE_SETTLE_S = 15.0  # Istio's sample Prometheus scrapes every 15 s: a hop is in Prometheus within one interval
EDGE_POLL_S = 1.0
EDGE_LABELS = ("source_canonical_service", "destination_service_name", "source_principal",
               "connection_security_policy")


def effective_modes(model: MeshModel, cluster: Cluster, namespace: str, service: str) -> list[Record]:
    """One record per running pod of ``service``: its effective PeerAuthentication mode (no plaintext tried)."""
    selector = ",".join(f"{k}={v}" for k, v in sorted(model.services[service].pod_selector.items()))
    records = []
    for pod in sorted(cluster.list_pods(namespace, selector), key=lambda p: str(p["metadata"]["name"])):
        version = canonical_revision(pod["metadata"].get("labels") or {})
        if not is_serving(pod) or version not in {v.name for v in model.services[service].versions}:
            continue
        mode = model.mtls_mode(service, version)
        records.append({"pod": pod["metadata"]["name"], "version": version, "refused": mode == "STRICT",
                        "detail": f"effective PeerAuthentication mode {mode}, read from the API (no plaintext "
                                  "request tried: the kubernetes target runs no pod outside the mesh)"})
    return records


def source_names(model: MeshModel) -> dict[str, str]:
    """Istio's canonical service of each service's pods -> the service (a Helm chart's pods are named by their
    ``app.kubernetes.io/name``, which need not be their Service's name)."""
    return {canonical_service(v.labels, svc.workload_name(v.name)): svc.name
            for svc in model.services.values() for v in svc.versions}


def observed_edges(prometheus_url: str, services: set[str], sources: Mapping[str, str] | None = None,
                   settle_s: float = EDGE_SETTLE_S, poll_s: float = EDGE_POLL_S, window: str = EDGE_WINDOW
                   ) -> list[Record]:
    """Hops into the mesh's services over the last ``window`` (a minute), as the callees' proxies reported them,
    each caller named by its service (``sources``: canonical service -> service, the ingress gateway's ->
    ``ingress``; a name not in it is kept).

    When none is seen yet, asks again every ``poll_s`` for up to ``settle_s``: the requests of a run
    that has just started are in Prometheus only after the callees' next scrape."""
    deadline = time.monotonic() + settle_s
    while True:
        edges = _edges(prometheus_url, services, sources or {}, window)
        if edges or time.monotonic() >= deadline:
            return edges
        time.sleep(poll_s)


def caller_answers(prometheus_url: str, service: str, namespace: str, window_s: float,
                   settle_s: float = EDGE_SETTLE_S, poll_s: float = EDGE_POLL_S) -> list[Record]:
    """The requests into ``service`` over the last ``window_s`` as its pods' proxies counted them, one record per
    caller identity and serving version, with ``codes`` (response code -> requests).  ``principal`` is None where
    the proxy named none (``source_principal`` "unknown", or a hop that was not mutual TLS).  Asks again every
    ``poll_s`` for up to ``settle_s`` while none is seen (a run's first requests are in Prometheus a scrape late)."""
    series = (f'istio_requests_total{{reporter="destination",destination_service_name="{service}",'
              f'destination_service_namespace="{namespace}"}}')
    span = f"{max(2, math.ceil(window_s))}s"
    labels = ("source_principal", "source_canonical_service", "connection_security_policy", "destination_version",
              "response_code")
    promql = (f"sum by ({', '.join(labels)}) ((last_over_time({series}[{span}]) - {series} offset {span} >= 0) "
              f"or last_over_time({series}[{span}]))")
    deadline = time.monotonic() + settle_s
    while True:
        found: dict[tuple[str | None, str, str], dict[str, float]] = {}
        for item in _query(prometheus_url, promql, "istio_requests_total"):
            got, value = item["metric"], float(item["value"][1])
            if math.isnan(value) or value < 0.5:
                continue
            mutual = got.get("connection_security_policy") == "mutual_tls"
            principal = got.get("source_principal") if mutual and got.get("source_principal") not in (
                None, "", "unknown") else None
            key = (principal, got.get("source_canonical_service") or "unknown", got.get("destination_version") or
                   "unknown")
            codes = found.setdefault(key, {})
            code = str(got.get("response_code") or "unknown")
            codes[code] = codes.get(code, 0.0) + value
        if found or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    return [{"how": "observed", "pod": None, "version": version, "principal": principal, "source": source,
             "path": None, "codes": {c: round(n) for c, n in sorted(codes.items())},
             "detail": f"istio_requests_total{{reporter=\"destination\"}} over the last {span}"}
            for (principal, source, version), codes in sorted(found.items(), key=lambda f: (str(f[0][0]), f[0][1:]))]


def _query(prometheus_url: str, promql: str, what: str) -> list[dict[str, Any]]:
    try:
        response = httpx.get(f"{prometheus_url.rstrip('/')}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        return list(response.json()["data"]["result"])
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise MeasurementFailed(f"Prometheus {prometheus_url}: {what}: "
                                f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None


def _edges(prometheus_url: str, services: set[str], sources: Mapping[str, str], window: str) -> list[Record]:
    # Not increase(): Istio creates an istio_requests_total series at its first request (one per callee pod,
    # source and response code), so a hop that began within the window has a first sample holding its first
    # requests, which increase() takes as its baseline, and no increase at all while it has one sample (a
    # run's first seconds; any hop younger than two scrapes).  Absent at the window's start is 0 there.
    series = 'istio_requests_total{reporter="destination"}'
    promql = (f"sum by ({', '.join(EDGE_LABELS)}) ((last_over_time({series}[{window}]) - {series} offset "
              f"{window} >= 0) or last_over_time({series}[{window}]))")
    result = _query(prometheus_url, promql, "istio_requests_total")
    edges: dict[tuple[str, str, str | None], float] = {}
    for item in result:
        labels, value = item["metric"], float(item["value"][1])
        source, destination = labels.get("source_canonical_service", ""), labels.get("destination_service_name")
        if math.isnan(value) or value < 0.5 or source in ("", "unknown") or destination not in services:
            continue  # a hop whose caller the callee's proxy could not name is left out
        source = sources.get(source, source)
        mutual = labels.get("connection_security_policy") == "mutual_tls"
        principal = labels.get("source_principal") if mutual and labels.get("source_principal") not in (
            None, "", "unknown") else None
        key = (source, str(destination), principal)
        edges[key] = edges.get(key, 0.0) + value
    return [{"source": s, "destination": d, "principal": p, "requests": round(n)}
            for (s, d, p), n in sorted(edges.items(), key=lambda e: (e[0][0], e[0][1], str(e[0][2])))]
