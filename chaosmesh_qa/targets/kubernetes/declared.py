"""The mesh as a cluster's API declares it, rebuilt as the documents of a mesh directory.

``KubernetesTarget.declared_mesh`` calls ``declared_mesh`` for the mesh QA verdicts
(``chaosmesh_qa.probes.routing``, ``mtls``, ``tracing``); ``KubernetesTarget.write_declared_mesh`` writes
``declared_documents`` as a mesh directory (``write_directory``), with the calls Istio's metrics saw in its ``Mesh``
document (``with_calls``), for ``chaosmesh-qa coverage --target kubernetes``.  Nothing here invents a label: each
Service with a selector becomes a Service document as it is (selector, ports), and the pods it selects become one
Deployment document per workload that runs them (the controller in the pods' ``ownerReferences``: a ReplicaSet's
Deployment, a StatefulSet), with the pods' own labels as its template (less what controllers add:
``pod-template-hash``, ``controller-revision-hash``, ``statefulset.kubernetes.io/pod-name``), the pods not being
deleted as its replicas (a replacement still starting too) and their service account.  So a Helm chart's
``app.kubernetes.io/name`` pods, a Service named unlike its pods and a version read from
``app.kubernetes.io/version`` resolve exactly as the same manifests would in a mesh directory
(``chaosmesh_qa.mesh.manifests``; the version is Istio's canonical revision, ``mesh.identity``). istiod's ``istio``
ConfigMap (the trust domain) and the Gateways, ServiceEntries, VirtualServices, DestinationRules,
PeerAuthentications and AuthorizationPolicies of the configured namespaces plus Istio's root namespace are added
(chaosmesh-qa's own fault objects left out), each kind oldest first across the namespaces (creation time, then name
and namespace: istiod's order, by which the oldest of several VirtualServices for one host takes effect), and every
document goes through the same validation and ``build_model`` as a mesh directory. So are the configured namespaces'
HTTPRoutes attached to a Service (mesh routing; their Service parentRefs only). ServiceEntries and HTTPRoutes that
cannot be read (a Role from before they were read) are left out; a failure then says so for ServiceEntries. Problems
are one line (``MeasurementFailed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from chaosmesh_qa.errors import ChaosMeshQAError, MeasurementFailed
from chaosmesh_qa.mesh import meshconfig, yamlfiles
from chaosmesh_qa.mesh.build import build_model
from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.loader import validate_document  # one document, as a mesh file's
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.targets.kubernetes.cluster import Cluster, NotFound
from chaosmesh_qa.targets.kubernetes.external import SERVICEENTRY, WORKLOADENTRY
from chaosmesh_qa.targets.kubernetes.objects import AUTHORIZATIONPOLICY, CONFIGMAP, MANAGED_BY, MANAGER, Kind
from chaosmesh_qa.targets.kubernetes.workloads import DESTINATIONRULE, VIRTUALSERVICE

PEERAUTHENTICATION = Kind("PeerAuthentication", "security.istio.io", "v1", "peerauthentications")
GATEWAY = Kind("Gateway", "networking.istio.io", "v1", "gateways")  # a VirtualService bound to one needs it
HTTPROUTE = Kind("HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes")  # mesh routing with a Service parent
# ServiceEntries: hosts a VirtualService may name; WorkloadEntries: the VMs of a MESH_INTERNAL one (a service)
ISTIO_KINDS = (GATEWAY, SERVICEENTRY, WORKLOADENTRY, VIRTUALSERVICE, DESTINATIONRULE, PEERAUTHENTICATION,
               AUTHORIZATIONPOLICY)
# labels a controller adds to the pods it creates: not part of the workload's template
CONTROLLER_LABELS = ("pod-template-hash", "controller-revision-hash", "statefulset.kubernetes.io/pod-name",
                     "apps.kubernetes.io/pod-index")


def declared_mesh(cluster: Cluster, namespaces: list[str], ingress_service: str | None) -> MeshModel:
    """The mesh as the API declares it, resolved like a mesh directory; problems are one line."""
    raw, unread = declared_documents(cluster, namespaces, ingress_service)
    return build_declared(raw, f"cluster {cluster.host}", unread)


def declared_documents(cluster: Cluster, namespaces: list[str], ingress_service: str | None
                       ) -> tuple[list[dict[str, Any]], list[str]]:
    """The cluster's mesh as the documents of a mesh directory (a ``Mesh`` first), and what could not be read."""
    raw: list[dict[str, Any]] = []
    unread: list[str] = []
    routes = _oldest_first([found for namespace in namespaces for found in _mesh_routes(cluster, namespace, [])])
    for namespace in namespaces:
        backends = {str(ref.get("name")) for route in routes if route["metadata"]["namespace"] == namespace
                    for rule in route["spec"].get("rules") or [] for ref in rule.get("backendRefs") or []}
        raw += workload_documents(cluster.list_services(namespace), cluster.list_pods(namespace, None), backends)
    if not any(obj["kind"] == "Service" for obj in raw):
        raise MeasurementFailed(f"cluster {cluster.host}: no Service in {', '.join(namespaces)} selects a running "
                                "pod: nothing to declare")
    config = _mesh_config(cluster)
    read = [*namespaces, _root_namespace(config)]  # the root namespace's policies are mesh-wide
    istio = [obj for kind in ISTIO_KINDS
             for obj in _oldest_first([found for namespace in dict.fromkeys(read)
                                       for found in _declared(cluster, kind, namespace, unread)])]
    # a Gateway and its VirtualServices say where the ingress sends traffic; without one, the configured service
    spec: dict[str, Any] = {}
    if not any(obj["kind"] == GATEWAY.kind for obj in istio):
        if ingress_service is None:
            raise MeasurementFailed("configuration.chaosmesh_qa_ingress_service: not set and no Gateway in "
                                    f"{', '.join(dict.fromkeys(read))} says where the "
                                    "ingress gateway sends traffic")
        spec["ingress"] = {"service": ingress_service}
    mesh = {"apiVersion": "chaosmesh-qa.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "cluster"}, "spec": spec}
    # the service accounts the pods run as exist (a pod cannot start without its own): declared, as a directory would
    accounts = sorted({(str(d["metadata"]["namespace"]), str(d["spec"]["template"]["spec"]["serviceAccountName"]))
                       for d in raw if d["kind"] == "Deployment"})
    raw += [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
            for namespace, name in accounts]
    return [mesh, *raw, *config, *istio, *routes], unread


def build_declared(raw: list[dict[str, Any]], source: str, unread: list[str] | None = None) -> MeshModel:
    """``declared_documents``' documents validated and resolved as a mesh directory's; problems are one line."""
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
        why = f" (ServiceEntries could not be read: {unread[0]})" if unread else ""
        raise MeasurementFailed(f"the declared mesh read from the API does not resolve: {problems[0]}{more}{why}")
    return model


def with_calls(raw: list[dict[str, Any]], calls: Mapping[str, list[str]]) -> list[dict[str, Any]]:
    """The documents with each service's calls (``calls``: caller -> callees, as Istio's metrics saw them) in the
    ``Mesh`` document, as a mesh directory's overlay gives the apps' behaviour the API cannot tell (the path is
    ``/``: which path an app calls, and which headers it passes on, is not in the API or the metrics)."""
    namespaces = {str(d["metadata"]["name"]): str(d["metadata"].get("namespace") or "default")
                  for d in raw if d["kind"] == "Service"}
    mesh, rest = raw[0], raw[1:]
    services = [{"name": caller, "namespace": namespaces[caller],
                 "app": {"calls": [{"service": callee, "path": "/"} for callee in callees]}}
                for caller, callees in sorted(calls.items()) if caller in namespaces and callees]
    return [{**mesh, "spec": {**mesh["spec"], "services": services}}, *rest]


def write_directory(raw: list[dict[str, Any]], directory: Path) -> None:
    """Write the documents as a mesh directory: ``mesh.yaml``, and per namespace one file per kind
    (``default/VirtualService.yaml``), each kind's objects in the order read (oldest first: istiod's order)."""
    files: dict[Path, list[dict[str, Any]]] = {}
    for obj in raw:
        meta = obj["metadata"]
        relative = Path("mesh.yaml") if obj["kind"] == "Mesh" else \
            Path(str(meta.get("namespace") or "cluster-scoped")) / f"{obj['kind']}.yaml"
        files.setdefault(relative, []).append(
            {**obj, "metadata": {k: v for k, v in meta.items() if k != "creationTimestamp"}})
    for relative, documents in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def workload_documents(services: list[dict[str, Any]], pods: list[dict[str, Any]],
                       backends: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """One namespace's Services and the Deployments their serving pods belong to, as mesh-directory documents.

    A Service whose pods another Service (earlier by name, headless ones last) already declared is left out: a
    headless twin of a Service, as Helm charts often add, selects the same pods, and the mesh model runs each
    workload under one Service.  A Service an HTTPRoute names as a backend (``backends``: a per-version Service
    such as reviews-v1) comes after the others and is kept without its pods when another one declared them: the
    mesh model reaches it as that Service's subset (``mesh.manifests``).
    """
    found: list[dict[str, Any]] = []
    claimed: set[str] = set()
    ordered = sorted(services, key=lambda s: ((s.get("spec") or {}).get("clusterIP") == "None",
                                              str(s["metadata"]["name"]) in backends, str(s["metadata"]["name"])))
    for service in ordered:
        spec = service.get("spec") or {}
        selector = spec.get("selector") or {}
        # every pod not being deleted: a Deployment's replicas count the ones starting again after a kill too
        mine = [p for p in pods if selector and not p["metadata"].get("deletionTimestamp") and _selects(selector, p)]
        names = {str(p["metadata"]["name"]) for p in mine}
        view = str(service["metadata"]["name"]) in backends and spec.get("clusterIP") != "None"
        if not mine or (names <= claimed and not view):
            continue
        meta = service["metadata"]
        ports = [{k: v for k, v in p.items() if k in ("name", "port", "targetPort")}
                 for p in spec.get("ports") or [] if p.get("port")]
        found.append({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                      "spec": {"selector": dict(selector), "ports": ports}})
        if not (view and names <= claimed):
            found += _workloads(mine, str(meta["namespace"]))
        claimed |= names
    return found


def _workloads(pods: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """One Deployment document per controller of ``pods``: the pods' labels as its template, their count."""
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        by_owner.setdefault(_owner(pod), []).append(pod)
    documents = []
    for name, owned in sorted(by_owner.items()):
        first = owned[0]
        labels = {k: str(v) for k, v in (first["metadata"].get("labels") or {}).items() if k not in CONTROLLER_LABELS}
        spec = first.get("spec") or {}
        containers = [{"name": str(c.get("name") or "app"),
                       "ports": [{k: v for k, v in p.items() if k in ("name", "containerPort")}
                                 for p in c.get("ports") or [] if p.get("containerPort")]}
                      for c in spec.get("containers") or [] if c.get("name") != "istio-proxy"]
        documents.append({"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": name, "namespace": namespace},
                          "spec": {"replicas": len(owned), "selector": {"matchLabels": labels},
                                   "template": {"metadata": {"labels": labels}, "spec": {
                                       "serviceAccountName": str(spec.get("serviceAccountName") or "default"),
                                       "containers": containers or [{"name": "app"}]}}}})
    return documents


def _owner(pod: dict[str, Any]) -> str:
    """The workload that runs ``pod``: a ReplicaSet's Deployment (its name less the template hash), a StatefulSet,
    or the pod itself when it has no controller."""
    meta = pod["metadata"]
    controller = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    if controller is None:
        return str(meta["name"])
    name = str(controller.get("name"))
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    if controller.get("kind") == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
        return name[:-len(template_hash) - 1]
    return name


def _selects(selector: dict[str, str], pod: dict[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _mesh_routes(cluster: Cluster, namespace: str, unread: list[str]) -> list[dict[str, Any]]:
    """The namespace's HTTPRoutes attached to a Service (mesh routing, GAMMA), with those parentRefs only: the
    routes of a Gateway API Gateway steer the ingress, which the verdicts do not rebuild from the API."""
    found = []
    for route in _declared(cluster, HTTPROUTE, namespace, unread):
        parents = [ref for ref in route["spec"].get("parentRefs") or []
                   if isinstance(ref, dict) and ref.get("kind") == "Service" and ref.get("group") == ""]
        if parents:
            found.append({**route, "spec": {**route["spec"], "parentRefs": parents}})
    return found


def _mesh_config(cluster: Cluster) -> list[dict[str, Any]]:
    """istiod's ``istio`` ConfigMap (the trust domain), if this runner may read it (the mesh-reader Role)."""
    try:
        found = cluster.get(CONFIGMAP, meshconfig.NAMESPACE, meshconfig.NAME)
    except ChaosMeshQAError:
        return []
    if not found:
        return []
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": meshconfig.NAME, "namespace": meshconfig.NAMESPACE}, "data": found.get("data") or {}}]


def _root_namespace(config: list[dict[str, Any]]) -> str:
    """The MeshConfig's ``rootNamespace`` (where istiod reads mesh-wide policies), else Istio's default."""
    read = meshconfig.validate(config[0], "istio-system/istio", [], []) if config else None
    return read.root_namespace if read is not None else meshconfig.DEFAULT_ROOT_NAMESPACE


def _declared(cluster: Cluster, kind: Kind, namespace: str, unread: list[str]) -> list[dict[str, Any]]:
    """The namespace's objects of ``kind`` as a mesh file would hold them (with their creation time, which the
    mesh model accepts and does not read); chaosmesh-qa's fault objects left out."""
    found = []
    try:
        listed = cluster.list_custom(kind, namespace)
    except NotFound:  # the namespace (Istio's root namespace on a cluster without one) or the kind is absent
        return []
    except ChaosMeshQAError as exc:
        if kind not in (SERVICEENTRY, WORKLOADENTRY, HTTPROUTE):
            raise
        unread.append(str(exc))  # a Role granting none of them yet (an older one): read without them
        return []
    for obj in listed:
        metadata = obj.get("metadata") or {}
        if (metadata.get("labels") or {}).get(MANAGED_BY) == MANAGER:
            continue
        found.append({"apiVersion": obj.get("apiVersion") or f"{kind.group}/{kind.version}", "kind": kind.kind,
                      "metadata": {"name": metadata.get("name"), "namespace": metadata.get("namespace", namespace),
                                   "creationTimestamp": metadata.get("creationTimestamp")},
                      "spec": obj.get("spec") or {}})
    return found


def _oldest_first(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Oldest first, as istiod orders a kind's objects (creation time, then name, then namespace): where Istio
    lets the oldest win (PeerAuthentications, VirtualServices of one host), document order decides."""
    return sorted(objects, key=lambda o: (str(o["metadata"].get("creationTimestamp") or ""),
                                          str(o["metadata"].get("name")), str(o["metadata"].get("namespace"))))
