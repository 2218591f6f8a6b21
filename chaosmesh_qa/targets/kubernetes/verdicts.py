"""What the mesh QA verdicts read on a cluster besides the declared mesh: effective mTLS modes, observed hops.

``KubernetesTarget.check_plaintext_refused`` / ``observed_edges`` call these for ``chaosmesh_qa.probes.mtls`` and
``routing`` (the declared mesh itself is ``declared``'s).  Effective modes are the declared model's, per running
pod of the service (found by the Service's selector, its version by Istio's canonical revision).  Observed hops
come from Istio's ``istio_requests_total`` as the callee's proxy reported them (``reporter="destination"``),
counted over the last minute with a series born in it counted from 0 (Istio creates a series at its first
request); the caller is Istio's canonical service of its pods (``app.kubernetes.io/name`` before ``app``), named
back to its Service.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

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
                   settle_s: float = EDGE_SETTLE_S, poll_s: float = EDGE_POLL_S) -> list[Record]:
    """Hops into the mesh's services over the last minute, as the callees' proxies reported them, each caller
    named by its service (``sources``: canonical service -> service, the ingress gateway's -> ``ingress``; a name
    not in it is kept).

    When none is seen yet, asks again every ``poll_s`` for up to ``settle_s``: the requests of a run
    that has just started are in Prometheus only after the callees' next scrape."""
    deadline = time.monotonic() + settle_s
    while True:
        edges = _edges(prometheus_url, services, sources or {})
        if edges or time.monotonic() >= deadline:
            return edges
        time.sleep(poll_s)


def _edges(prometheus_url: str, services: set[str], sources: Mapping[str, str]) -> list[Record]:
    # Not increase(): Istio creates an istio_requests_total series at its first request (one per callee pod,
    # source and response code), so a hop that began within the window has a first sample holding its first
    # requests, which increase() takes as its baseline, and no increase at all while it has one sample (a
    # run's first seconds; any hop younger than two scrapes).  Absent at the window's start is 0 there.
    series = 'istio_requests_total{reporter="destination"}'
    promql = (f"sum by ({', '.join(EDGE_LABELS)}) ((last_over_time({series}[{EDGE_WINDOW}]) - {series} offset "
              f"{EDGE_WINDOW} >= 0) or last_over_time({series}[{EDGE_WINDOW}]))")
    try:
        response = httpx.get(f"{prometheus_url.rstrip('/')}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        result = response.json()["data"]["result"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise MeasurementFailed(f"Prometheus {prometheus_url}: istio_requests_total: "
                                f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
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
