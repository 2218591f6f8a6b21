"""Workloads from Kubernetes manifests: Deployment, StatefulSet, Service, ServiceAccount, Namespace.

``loader`` calls ``validate`` for each document of one of those kinds (and ``ignored`` for the
Kubernetes kinds that do not shape the mesh); ``build`` calls ``workloads`` to turn the validated
documents into one ``Workload`` per Service (its namespace, port, service account and one
version per Deployment, StatefulSet or Rollout pod set it selects: ``rollouts.expand`` turns an Argo Rollout
into ``PodSet`` documents first), and ``check_overlay`` to make sure the
``Mesh`` document's entry for a manifest-defined service gives only behaviour.  Only the fields
listed in docs/reference/mesh.md are read; images, resources, env, volumes and probes are not
used (the pod runs the overlay's demo app or command).  Problems are one line each, appended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field

from chaosmesh_qa.mesh import schema
from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.httproutes import HTTPRouteSpec
from chaosmesh_qa.mesh.identity import DEFAULT_REVISION, canonical_revision
from chaosmesh_qa.mesh.model import ServiceView
from chaosmesh_qa.mesh.values import LabelMap, Name, show

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Rollout")  # a Rollout: its pod sets (rollouts.expand)
KINDS: dict[str, str] = {  # kind -> its apiVersion
    "Deployment": "apps/v1", "StatefulSet": "apps/v1",
    "Service": "v1", "ServiceAccount": "v1", "Namespace": "v1",
}
# API groups of Kubernetes itself: a kind of theirs we do not use is listed once as ignored
_KUBERNETES_GROUPS = frozenset({
    "", "apps", "extensions", "batch", "autoscaling", "policy", "rbac.authorization.k8s.io", "networking.k8s.io",
    "storage.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "node.k8s.io",
    "apiextensions.k8s.io", "admissionregistration.k8s.io", "certificates.k8s.io", "events.k8s.io",
    "flowcontrol.apiserver.k8s.io", "monitoring.coreos.com",
})
# Kubernetes kinds that run pods or shape traffic: ignoring them would change what the mesh does
_REFUSED = {
    "Pod": "a bare Pod is not run: the sandbox builds workloads from Deployments and StatefulSets",
    "ReplicaSet": "not run: the sandbox builds workloads from Deployments and StatefulSets",
    "DaemonSet": "not run: the sandbox builds workloads from Deployments and StatefulSets",
}
_WARNED = {
    "NetworkPolicy": "not enforced by the local target's sandbox: traffic it would block still flows (the "
                     "Kubernetes API emulation enforces it)",
    "Ingress": "not served: the sandbox's ingress is driven by an Istio or Gateway API Gateway",
}
DEFAULT_VERSION = DEFAULT_REVISION  # Istio's canonical revision of a pod without a version label
_OVERLAY_FIELDS = "app, command, healthPath, readyTimeout and versions[].app"


class Selector(schema.Spec):
    match_labels: LabelMap = Field(default_factory=dict)


class ContainerPort(schema.Spec):
    name: str = ""
    container_port: Annotated[int, Field(ge=1, le=65535)]


class Container(schema.Spec):
    name: str = ""
    ports: list[ContainerPort] = Field(default_factory=list)


class PodSpec(schema.Spec):
    service_account_name: Name | None = None
    service_account: Name | None = None  # the deprecated spelling, still read by Kubernetes
    containers: list[Container] = Field(min_length=1)


class TemplateMeta(schema.Spec):
    labels: LabelMap = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PodTemplate(schema.Spec):
    metadata: TemplateMeta = Field(default_factory=TemplateMeta)
    spec: PodSpec


class WorkloadSpec(schema.Spec):
    replicas: Annotated[int, Field(ge=0, le=20)] = 1
    selector: Selector
    template: PodTemplate
    service_name: str | None = None  # a StatefulSet's governing (headless) Service: per-pod DNS, not modelled


class PodSet(WorkloadSpec):
    """Pods a controller runs from a template (an Argo Rollout's stable or canary ReplicaSet, ``rollouts``):
    made by the loader, never read from YAML.  ``version`` names them where their labels alone do not (two
    ReplicaSets of one template); empty, the version is their canonical revision, as a Deployment's."""

    version: str = ""


class ServicePort(schema.Spec):
    name: str = ""
    port: Annotated[int, Field(ge=1, le=65535)]
    target_port: Annotated[int, Field(ge=1, le=65535)] | str | None = None  # a number, or a container port's name


class ServiceSpec(schema.Spec):
    selector: LabelMap | None = None
    ports: list[ServicePort] = Field(default_factory=list)
    type: str = "ClusterIP"
    cluster_ip: str | None = Field(default=None, alias="clusterIP")  # "None": headless (DNS names the pods)


class Empty(schema.Spec):
    """ServiceAccount: only its name matters."""


class NamespaceSpec(schema.Spec):
    """A Namespace's labels (``loader`` passes them as its spec): they decide sidecar injection."""

    labels: dict[str, str] = Field(default_factory=dict)


class K8sDoc(schema.Spec):
    api_version: str
    kind: str
    metadata: schema.Metadata
    spec: dict[str, Any] = Field(default_factory=dict)


SPECS: dict[str, type[schema.Spec]] = {
    "Deployment": WorkloadSpec, "StatefulSet": WorkloadSpec, "Service": ServiceSpec,
    "ServiceAccount": Empty, "Namespace": NamespaceSpec,
}


def kubernetes_kind(raw: dict[str, Any]) -> str | None:
    """How ``loader`` treats a document of a Kubernetes API group: ``"read"`` (one of ``KINDS``),
    ``"ignored"``, ``"warned"``, ``"refused"``, or None (not Kubernetes' own)."""
    kind, api_version = raw.get("kind"), raw.get("apiVersion")
    if kind in KINDS:
        return "read"  # a wrong apiVersion is then named as such, not as an unknown kind
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    if group not in _KUBERNETES_GROUPS:
        return None
    if kind in KINDS:
        return "read"
    return "refused" if kind in _REFUSED else "warned" if kind in _WARNED else "ignored"


def refusal(kind: str) -> str:
    return _REFUSED[kind]


def warning(kind: str) -> str:
    return _WARNED[kind]


def problem_in_version(kind: str, api_version: object) -> str | None:
    expected = KINDS[kind]
    if api_version != expected:
        return f"apiVersion: {show(api_version)} is not a {kind} API version (expected {expected})"
    return None


@dataclass(frozen=True)
class WorkloadVersion:
    name: str
    replicas: int
    labels: dict[str, str]  # the pod template's labels, as the manifest gives them
    where: str
    workload: str = ""  # the Deployment's or StatefulSet's name
    kind: str = "Deployment"  # which of the two: a StatefulSet's pods are named by ordinal and keep their names


@dataclass
class Workload:
    """A Service and the Deployments/StatefulSets it selects."""

    name: str
    namespace: str
    port: int
    service_account: str
    where: str
    versions: list[WorkloadVersion] = field(default_factory=list)
    target_port: int | None = None  # the pods' port, when the Service's targetPort differs from its port
    selector: dict[str, str] = field(default_factory=dict)  # the Service's spec.selector
    # per-version Services an HTTPRoute names as backends, selecting some of these pods (model.ServiceView)
    views: dict[str, ServiceView] = field(default_factory=dict)


def workloads(documents: list[Document], problems: list[str], warnings: list[str]) -> dict[str, Workload]:
    """One ``Workload`` per Service that selects at least one Deployment or StatefulSet."""
    pods = [d for d in documents if d.kind in WORKLOAD_KINDS]
    accounts = {(d.namespace, d.name) for d in documents if d.kind == "ServiceAccount"}
    for doc in pods:
        spec: WorkloadSpec = doc.spec  # type: ignore[assignment]
        labels = spec.template.metadata.labels
        if not spec.selector.match_labels or any(labels.get(k) != v for k, v in spec.selector.match_labels.items()):
            problems.append(f"{doc.where}: spec.selector.matchLabels: does not match spec.template.metadata."
                            "labels (Kubernetes refuses such a workload)")
    _injection_warnings(documents, pods, warnings)
    owner: dict[int, Document] = {}
    found: dict[str, Workload] = {}
    # headless Services last: a StatefulSet's governing Service (or a Helm chart's headless twin) selects pods a
    # routed Service already runs; the sandbox runs them under that one
    # an HTTPRoute's backend Services after the others: a per-version one (Bookinfo's reviews-v1) may select some
    # of the pods of a Service that runs them (reviews); it becomes that Service's view (``_view``)
    backends = {(d.namespace, ref.name) for d in documents
                if d.kind == "HTTPRoute" and isinstance(d.spec, HTTPRouteSpec)
                for rule in d.spec.rules for ref in rule.backend_refs}
    services = sorted((d for d in documents if d.kind == "Service"),
                      key=lambda d: (_headless(d), (d.namespace, d.name) in backends))
    for svc in services:
        sspec: ServiceSpec = svc.spec  # type: ignore[assignment]
        if not sspec.selector:
            warnings.append(f"{svc.where}: spec.selector: none: no pods are run for this Service")
            continue
        chosen = [d for d in pods if d.namespace == svc.namespace and all(
            d.spec.template.metadata.labels.get(k) == v for k, v in sspec.selector.items())]  # type: ignore[attr-defined]
        if not chosen:
            warnings.append(f"{svc.where}: spec.selector: selects no Deployment or StatefulSet: no pods are run "
                            "for this Service (calls to it fail)")
            continue
        if _headless(svc) and all(id(d) in owner for d in chosen):
            runs = {owner[id(d)].name for d in chosen}
            warnings.append(f"{svc.where}: spec.clusterIP: None (headless) selects the pods of Service "
                            f"{', '.join(sorted(runs))}: the sandbox calls them through that Service (the per-pod "
                            "DNS names of a headless Service are not modelled)")
            continue
        if (svc.namespace, svc.name) in backends and _view(svc, sspec, chosen, owner, found):
            continue
        if svc.name in found:
            problems.append(f"{svc.where}: metadata.name: a second Service named {svc.name!r} (service names are "
                            f"unique across the sandbox's mesh; the first is {found[svc.name].where})")
            continue
        workload = _workload(svc, sspec, chosen, accounts, owner, problems, warnings)
        if workload is not None:
            found[svc.name] = workload
    for doc in pods:
        if id(doc) not in owner:
            warnings.append(f"{doc.where}: spec.template.metadata.labels: no Service selects these pods: they are "
                            "not run (nothing could call them)")
    return found


def _view(svc: Document, spec: ServiceSpec, chosen: list[Document], owner: dict[int, Document],
          found: dict[str, Workload]) -> bool:
    """Record ``svc`` as a view of the one Service that already runs every pod it selects, with a selector no
    wider than its own (Kubernetes lets several Services select one pod; the sandbox runs each pod once)."""
    owners = {owner[id(d)].name for d in chosen if id(d) in owner}
    parent = found.get(next(iter(owners))) if len(owners) == 1 and all(id(d) in owner for d in chosen) else None
    if parent is None or not spec.ports or svc.name in found or any(
            (spec.selector or {}).get(k) != v for k, v in parent.selector.items()):
        return False
    port = next((p for p in spec.ports if p.name == "http" or p.name.startswith("http-")), spec.ports[0])
    parent.views[svc.name] = ServiceView(svc.name, svc.namespace, port.port, dict(spec.selector or {}), parent.name,
                                         svc.where)
    return True


def _headless(doc: Document) -> bool:
    return doc.spec.cluster_ip == "None"  # type: ignore[attr-defined]


def _injection_warnings(documents: list[Document], pods: list[Document], warnings: list[str]) -> None:
    """Pods Istio would start without a sidecar: the sandbox gives every pod one, so say so."""
    namespaces = {d.name: d for d in documents if d.kind == "Namespace"}
    for name, doc in namespaces.items():
        labels = doc.spec.labels  # type: ignore[attr-defined]
        if labels.get("istio-injection") != "enabled" and "istio.io/rev" not in labels and any(
                p.namespace == name for p in pods):
            warnings.append(f"{doc.where}: metadata.labels: no istio-injection=enabled (or istio.io/rev): Istio "
                            "would start its pods without a sidecar; the sandbox gives every pod one")
    for doc in pods:
        meta = doc.spec.template.metadata  # type: ignore[attr-defined]
        if "false" in (meta.labels.get("sidecar.istio.io/inject"), meta.annotations.get("sidecar.istio.io/inject")):
            warnings.append(f"{doc.where}: spec.template.metadata: sidecar.istio.io/inject is 'false': Istio would "
                            "start these pods without a sidecar; the sandbox gives every pod one")


def _workload(svc: Document, spec: ServiceSpec, chosen: list[Document], accounts: set[tuple[str, str]],
              owner: dict[int, Document], problems: list[str], warnings: list[str]) -> Workload | None:
    if not spec.ports:
        problems.append(f"{svc.where}: spec.ports: at least one port is needed for the pods to be called")
        return None
    port = next((p for p in spec.ports if p.name == "http" or p.name.startswith("http-")), spec.ports[0])
    if len(spec.ports) > 1:
        warnings.append(f"{svc.where}: spec.ports: only port {port.port} is served (the sandbox runs one HTTP "
                        "port per service); calls to the others fail")
    versions: dict[str, WorkloadVersion] = {}
    account_of: dict[str, str] = {}
    for doc in chosen:
        if id(doc) in owner:
            problems.append(f"{svc.where}: spec.selector: selects {doc.kind}/{doc.name}, which "
                            f"{owner[id(doc)].where} selects too (the sandbox runs each pod under one Service)")
            continue
        owner[id(doc)] = svc
        wspec: WorkloadSpec = doc.spec  # type: ignore[assignment]
        labels = dict(wspec.template.metadata.labels)
        # what Istio's telemetry calls the version (mesh.identity); a Rollout's two ReplicaSets: their roles
        version = wspec.version if isinstance(wspec, PodSet) and wspec.version else canonical_revision(labels)
        if version in versions:
            problems.append(f"{doc.where}: spec.template.metadata.labels.version: {version!r} is also the version "
                            f"of {versions[version].where} (each version of Service/{svc.name} is one workload)")
            continue
        versions[version] = WorkloadVersion(version, wspec.replicas, labels, doc.where, doc.name, doc.kind)
        pod = wspec.template.spec
        account_of[doc.where] = pod.service_account_name or pod.service_account or "default"
    if not versions:
        return None
    names = sorted(set(account_of.values()))
    if len(names) > 1:
        problems.append(f"{svc.where}: spec.selector: its pods run as different service accounts "
                        f"({', '.join(names)}); the sandbox gives a service one identity")
        return None
    account = names[0]
    if account != "default" and (svc.namespace, account) not in accounts:
        warnings.append(f"{svc.where}: ServiceAccount {account!r} is not in the mesh directory (kubectl "
                        "would start no pod until it exists; the sandbox uses its identity anyway)")
    target = _target_port(svc, port, chosen, problems)
    return Workload(svc.name, svc.namespace, port.port, account, svc.where, list(versions.values()),
                    target if target != port.port else None, dict(spec.selector or {}))


def _target_port(svc: Document, port: ServicePort, chosen: list[Document], problems: list[str]) -> int | None:
    """The Service port's ``targetPort``: a number, or a name the selected pods' containers give a port."""
    if port.target_port is None or isinstance(port.target_port, int):
        return port.target_port
    named = {p.container_port for doc in chosen for c in doc.spec.template.spec.containers  # type: ignore[attr-defined]
             for p in c.ports if p.name == port.target_port}
    if len(named) != 1:
        problems.append(f"{svc.where}: spec.ports: targetPort {port.target_port!r} names "
                        f"{'no container port' if not named else 'different ports'} of the pods it selects")
        return None
    return named.pop()


def check_overlay(workload: Workload, entry: schema.ServiceDef, where: str, problems: list[str]) -> None:
    """The ``Mesh`` entry for a manifest-defined service may give only behaviour, for versions it has."""
    given = entry.model_fields_set
    for key, alias in (("port", "port"), ("service_account", "serviceAccount")):
        if key in given:
            problems.append(f"{where}.{alias}: set by {workload.where}; the Mesh overlay gives only "
                            f"{_OVERLAY_FIELDS}")
    if "namespace" in given and entry.namespace != workload.namespace:
        problems.append(f"{where}.namespace: {entry.namespace!r}, but {workload.where} is in namespace "
                        f"{workload.namespace!r}")
    known = [v.name for v in workload.versions]
    for j, version in enumerate(entry.versions):
        if version.name not in known:
            problems.append(f"{where}.versions[{j}].name: service {workload.name!r} has no version "
                            f"{version.name!r} (its workloads' versions: {', '.join(known)})")
        for key in ("replicas", "labels"):
            if key in version.model_fields_set:
                problems.append(f"{where}.versions[{j}].{key}: set by the Deployment or StatefulSet; the Mesh "
                                f"overlay gives only {_OVERLAY_FIELDS}")
