"""What the mesh QA verdicts read on a cluster: the declared mesh, effective mTLS modes, observed hops.

``KubernetesTarget.declared_mesh`` / ``check_plaintext_refused`` / ``observed_edges`` call these for
``chaosmesh_qa.probes.routing`` and ``chaosmesh_qa.probes.mtls``.  The declared mesh is rebuilt from the
API: each Service with a selector and the ``version`` labels of its pods (replicas = pods per version,
the service account of its pods, the Service's first port), and the VirtualServices, DestinationRules,
PeerAuthentications and AuthorizationPolicies of the configured namespaces plus Istio's root namespace
(chaosmesh-qa's own fault objects left out); every document goes through the same validation and
``chaosmesh_qa.mesh.build.build_model`` as a mesh directory.  Observed hops come from Istio's
``istio_requests_total`` as the callee's proxy reported them (``reporter="destination"``), counted over the
last minute with a series born in it counted from 0 (Istio creates a series at its first request).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import httpx

from chaosmesh_qa.errors import MeasurementFailed
from chaosmesh_qa.mesh import yamlfiles
from chaosmesh_qa.mesh.build import build_model
from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.loader import validate_document  # one document, as a mesh file's
from chaosmesh_qa.mesh.model import ROOT_NAMESPACE, MeshModel
from chaosmesh_qa.targets.base import Record
from chaosmesh_qa.targets.kubernetes.cluster import Cluster, NotFound
from chaosmesh_qa.targets.kubernetes.objects import AUTHORIZATIONPOLICY, MANAGED_BY, MANAGER, Kind
from chaosmesh_qa.targets.kubernetes.workloads import DESTINATIONRULE, VIRTUALSERVICE, is_serving

PEERAUTHENTICATION = Kind("PeerAuthentication", "security.istio.io", "v1", "peerauthentications")
ISTIO_KINDS = (VIRTUALSERVICE, DESTINATIONRULE, PEERAUTHENTICATION, AUTHORIZATIONPOLICY)
GATEWAY = "istio-ingressgateway"  # the canonical service of Istio's default ingress gateway: "ingress" here
EDGE_WINDOW = "1m"
EDGE_SETTLE_S = 15.0  # Istio's sample Prometheus scrapes every 15 s: a hop is in Prometheus within one interval
EDGE_POLL_S = 1.0
EDGE_LABELS = ("source_canonical_service", "destination_service_name", "source_principal",
               "connection_security_policy")


def declared_mesh(cluster: Cluster, namespaces: list[str], ingress_service: str | None) -> MeshModel:
    """The mesh as the API declares it, resolved like a mesh directory; problems are one line."""
    source = f"cluster {cluster.host}"
    services: list[dict[str, Any]] = []
    for namespace in namespaces:
        pods = cluster.list_pods(namespace, "app")
        for service in cluster.list_services(namespace):
            entry = _service(service, pods)
            if entry is not None and all(s["name"] != entry["name"] for s in services):
                services.append(entry)
    if not services:
        raise MeasurementFailed(f"{source}: no Service in {', '.join(namespaces)} selects pods with a 'version' "
                                "label: nothing to declare")
    if ingress_service is None:
        raise MeasurementFailed("configuration.chaosmesh_qa_ingress_service: not set and no gateway-bound "
                                "VirtualService names the mesh's front service")
    mesh = {"apiVersion": "chaosmesh-qa.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "cluster"},
            "spec": {"services": services, "ingress": {"service": ingress_service}}}
    raw = [mesh] + [obj for kind in ISTIO_KINDS for namespace in dict.fromkeys([*namespaces, ROOT_NAMESPACE])
                    for obj in _declared(cluster, kind, namespace)]
    problems: list[str] = []
    warnings: list[str] = []
    documents: list[Document] = []
    for index, obj in enumerate(raw):
        path = Path(f"{source}: {obj['metadata'].get('namespace', '-')}")
        document = validate_document(path, yamlfiles.Document(index, 0, obj), problems, warnings)
        if document is not None:
            documents.append(document)
    model = build_model(documents, problems, warnings, source=source) if not problems else None
    if problems or model is None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MeasurementFailed(f"the declared mesh read from the API does not resolve: {problems[0]}{more}")
    return model


def effective_modes(model: MeshModel, cluster: Cluster, namespace: str, service: str) -> list[Record]:
    """One record per running pod of ``service``: its effective PeerAuthentication mode (no plaintext tried)."""
    selector = ",".join(f"{k}={v}" for k, v in sorted({"app": service}.items()))
    records = []
    for pod in sorted(cluster.list_pods(namespace, selector), key=lambda p: str(p["metadata"]["name"])):
        version = str((pod["metadata"].get("labels") or {}).get("version", ""))
        if not is_serving(pod) or version not in {v.name for v in model.services[service].versions}:
            continue
        mode = model.mtls_mode(service, version)
        records.append({"pod": pod["metadata"]["name"], "version": version, "refused": mode == "STRICT",
                        "detail": f"effective PeerAuthentication mode {mode}, read from the API (no plaintext "
                                  "request tried: the kubernetes target runs no pod outside the mesh)"})
    return records


def observed_edges(prometheus_url: str, services: set[str], settle_s: float = EDGE_SETTLE_S,
                   poll_s: float = EDGE_POLL_S) -> list[Record]:
    """Hops into the mesh's services over the last minute, as the callees' proxies reported them.

    When none is seen yet, asks again every ``poll_s`` for up to ``settle_s``: the requests of a run
    that has just started are in Prometheus only after the callees' next scrape."""
    deadline = time.monotonic() + settle_s
    while True:
        edges = _edges(prometheus_url, services)
        if edges or time.monotonic() >= deadline:
            return edges
        time.sleep(poll_s)


def _edges(prometheus_url: str, services: set[str]) -> list[Record]:
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
        source = "ingress" if source == GATEWAY else source
        mutual = labels.get("connection_security_policy") == "mutual_tls"
        principal = labels.get("source_principal") if mutual and labels.get("source_principal") not in (
            None, "", "unknown") else None
        key = (source, str(destination), principal)
        edges[key] = edges.get(key, 0.0) + value
    return [{"source": s, "destination": d, "principal": p, "requests": round(n)}
            for (s, d, p), n in sorted(edges.items(), key=lambda e: (e[0][0], e[0][1], str(e[0][2])))]


def _service(service: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    mine = [p for p in pods if selector and all((p["metadata"].get("labels") or {}).get(k) == v
                                                for k, v in selector.items())]
    versions: dict[str, int] = {}
    for pod in mine:
        version = (pod["metadata"].get("labels") or {}).get("version")
        if version and not pod["metadata"].get("deletionTimestamp"):
            versions[version] = versions.get(version, 0) + 1
    if not versions:
        return None
    accounts = sorted({str((p.get("spec") or {}).get("serviceAccountName") or "default") for p in mine})
    entry: dict[str, Any] = {"name": service["metadata"]["name"], "namespace": service["metadata"]["namespace"],
                             "serviceAccount": accounts[0],
                             "versions": [{"name": v, "replicas": n} for v, n in sorted(versions.items())]}
    ports = spec.get("ports") or []
    if ports and ports[0].get("port"):
        entry["port"] = int(ports[0]["port"])
        target = ports[0].get("targetPort")
        if isinstance(target, str):  # a container port's name, as the pods name it
            target = next((p["containerPort"] for pod in mine for c in (pod.get("spec") or {}).get("containers") or []
                           for p in c.get("ports") or [] if p.get("name") == target), None)
        if isinstance(target, int) and target != entry["port"]:
            entry["targetPort"] = target
    return entry


def _declared(cluster: Cluster, kind: Kind, namespace: str) -> list[dict[str, Any]]:
    """The namespace's objects of ``kind`` as a mesh file would hold them; chaosmesh-qa's fault objects left out."""
    found = []
    try:
        listed = cluster.list_custom(kind, namespace)
    except NotFound:  # the namespace (Istio's root namespace on a cluster without one) or the kind is absent
        return []
    # oldest first: where Istio lets the oldest of two policies win (PeerAuthentications), document order decides
    for obj in sorted(listed, key=lambda o: (str((o.get("metadata") or {}).get("creationTimestamp") or ""),
                                             str((o.get("metadata") or {}).get("name")))):
        metadata = obj.get("metadata") or {}
        if (metadata.get("labels") or {}).get(MANAGED_BY) == MANAGER:
            continue
        found.append({"apiVersion": obj.get("apiVersion") or f"{kind.group}/{kind.version}", "kind": kind.kind,
                      "metadata": {"name": metadata.get("name"), "namespace": metadata.get("namespace", namespace)},
                      "spec": obj.get("spec") or {}})
    return found
