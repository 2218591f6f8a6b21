"""Workloads found the way Kubernetes and Istio find them: a Service's selector, Istio's canonical revision.

``KubernetesTarget`` asks this module which namespace a service lives in, which of its pods run, which
identities (SPIFFE principals of the pods' service accounts) a caller has, and for ``describe()``.
Bad names are one line each: a namespace that does not exist, a service that does not exist, a service
with no running pod.

A service of the mesh may also be a ``MESH_INTERNAL`` ServiceEntry whose ``workloadSelector`` picks WorkloadEntries
(VMs), named as the mesh model names it (``mesh.workloadentries``: after the entry): its ``Workload`` selects the
entries' labels (what istiod matches an EnvoyFilter's ``workloadSelector`` against on the VMs' proxies) and lists
them in ``entries``.  It has no pods: what needs pods (a kill, a partition, a zone) is refused in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from chaosmesh_qa.errors import ChaosMeshQAError, FaultRejected, InvalidArgument
from chaosmesh_qa.mesh import meshconfig
from chaosmesh_qa.mesh.identity import canonical_revision, canonical_service
from chaosmesh_qa.mesh.localities import Locality, from_labels
from chaosmesh_qa.mesh.meshconfig import MeshConfig
from chaosmesh_qa.targets.kubernetes.cluster import Cluster
from chaosmesh_qa.targets.kubernetes.external import SERVICEENTRY, WORKLOADENTRY
from chaosmesh_qa.targets.kubernetes.objects import (
    CONFIGMAP,
    MANAGED_BY,
    MANAGER,
    NETWORKPOLICY,
    Kind,
    spiffe_principal,
)
from chaosmesh_qa.targets.policy import in_zone, select_pods

PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"  # a pod's own ProxyConfig, over the mesh's defaultConfig

DESTINATIONRULE = Kind("DestinationRule", "networking.istio.io", "v1", "destinationrules")
VIRTUALSERVICE = Kind("VirtualService", "networking.istio.io", "v1", "virtualservices")


@dataclass(frozen=True)
class Workload:
    name: str
    namespace: str
    selector: dict[str, str]  # the Service's spec.selector
    target_ports: tuple[int | str, ...] = ()  # the Service's spec.ports[].targetPort (a number, or a port's name)
    entries: tuple[str, ...] = ()  # a MESH_INTERNAL ServiceEntry's WorkloadEntries (VMs, no pods): their names

    def label_selector(self) -> str:
        """The Service's selector as a label selector: what lists and watches its pods."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.selector.items()))

    @staticmethod
    def runs(pod: dict[str, Any], version: str | None) -> bool:
        """Whether ``pod`` is of ``version`` (any, for None): Istio's canonical revision of its labels
        (``version``, or a Helm chart's ``app.kubernetes.io/version``: ``chaosmesh_qa.mesh.identity``)."""
        return version is None or canonical_revision(pod["metadata"].get("labels") or {}) == version


class Workloads:
    def __init__(self, cluster: Cluster, namespaces: list[str]) -> None:
        self.cluster = cluster
        self.namespaces = namespaces
        self._found: dict[str, Workload] = {}
        self._nodes: dict[str, Locality] = {}

    def service(self, name: str, argument: str = "service") -> Workload:
        if name in self._found:
            return self._found[name]
        for namespace in self.namespaces:
            service = self.cluster.get_service(namespace, name)
            if service is None:
                continue
            selector = (service.get("spec") or {}).get("selector") or {}
            if not selector:
                raise FaultRejected(f"{argument}: Service {namespace}/{name} has no selector, so it has no pods "
                                    "to fault")
            ports = tuple(p.get("targetPort", p.get("port")) for p in (service.get("spec") or {}).get("ports") or [])
            self._found[name] = Workload(name, namespace, dict(selector), tuple(p for p in ports if p is not None))
            return self._found[name]
        vms = self._mesh_internal_entry(name, argument)
        if vms is not None:
            self._found[name] = vms
            return vms
        for namespace in self.namespaces:
            if not self.cluster.namespace_exists(namespace):
                raise InvalidArgument(f"configuration.chaosmesh_qa_namespace: namespace {namespace!r} does not exist")
        raise FaultRejected(f"{argument}: no Service {name!r} in namespace(s) {', '.join(self.namespaces)}")

    def _mesh_internal_entry(self, name: str, argument: str) -> Workload | None:
        """The MESH_INTERNAL ServiceEntry ``name`` as a workload of its WorkloadEntries; None when no ServiceEntry
        of the namespaces is so named (or they cannot be listed: the caller's "no Service" line stands)."""
        for namespace in self.namespaces:
            try:
                found = [e for e in self.cluster.list_custom(SERVICEENTRY, namespace) if e["metadata"]["name"] == name]
            except ChaosMeshQAError:
                return None
            if not found:
                continue
            spec = found[0].get("spec") or {}
            selector = {str(k): str(v) for k, v in ((spec.get("workloadSelector") or {}).get("labels") or {}).items()}
            where = f"ServiceEntry {namespace}/{name}"
            if spec.get("location") != "MESH_INTERNAL" or not selector:
                raise FaultRejected(f"{argument}: {name!r} is no Service, and {where} is no MESH_INTERNAL entry with a "
                                    "workloadSelector: fault one of its hosts instead (the fault goes to its callers)")
            entries = [e for e in self.cluster.list_custom(WORKLOADENTRY, namespace)
                       if all(((e.get("spec") or {}).get("labels") or {}).get(k) == v for k, v in selector.items())]
            if not entries:
                raise FaultRejected(f"{argument}: {where} (MESH_INTERNAL) selects no WorkloadEntry: nothing serves it")
            port = next((p for p in spec.get("ports") or [] if str(p.get("protocol", "")).upper().startswith("HTTP")),
                        None) or {}
            own = ((entries[0].get("spec") or {}).get("ports") or {}).get(port.get("name"))  # the entry's override
            target = own or port.get("targetPort") or port.get("number")
            return Workload(name, namespace, selector, (int(target),) if target else (),
                            tuple(sorted(str(e["metadata"]["name"]) for e in entries)))
        return None

    def running_pods(self, workload: Workload, version: str | None = None,
                     argument: str = "service") -> list[dict[str, Any]]:
        """Running, ready, not-terminating pods of ``workload``, by name; none is an error naming it."""
        if workload.entries:
            raise FaultRejected(f"{argument}: {workload.name!r} runs on WorkloadEntries ({', '.join(workload.entries)}"
                                "): VMs, not pods, which this fault needs; latency and aborts on it go to its "
                                "sidecars (inject_latency, inject_abort)")
        pods = sorted((p for p in self.cluster.list_pods(workload.namespace, workload.label_selector())
                       if is_serving(p) and workload.runs(p, version)), key=lambda p: str(p["metadata"]["name"]))
        if not pods:
            what = f"{workload.name!r}" + (f" version {version!r}" if version else "")
            raise FaultRejected(f"{argument}: {what} has no running pod in namespace {workload.namespace!r}")
        return pods

    def pick(self, workload: Workload, count: int | None, percent: float | None,
             version: str | None, argument: str = "service", zone: str | None = None) -> list[dict[str, Any]]:
        """The running pods ``count``/``percent`` choose (``targets.policy.select_pods``), of those in ``zone``
        (``targets.policy.in_zone``) when one is given."""
        pods = self.running_pods(workload, version, argument)
        if zone is not None:
            pods = in_zone(pods, zone, self.locality, workload.name, self.localities().values())
        return select_pods(pods, count, percent, workload.name, version)

    def locality(self, pod: dict[str, Any]) -> str:
        """A pod's locality (``region/zone/subzone``, '' for none) as istiod gives it to the pod's sidecar: its
        ``istio-locality`` label, else its node's topology labels (``topology.kubernetes.io/region``, ``zone``,
        ``topology.istio.io/subzone``).  Topology labels on the pod itself are not read: istiod does not."""
        labels = pod["metadata"].get("labels") or {}
        if labels.get("istio-locality"):
            return str(from_labels({"istio-locality": labels["istio-locality"]}))
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        if not node:
            return ""  # not scheduled yet
        if node not in self._nodes:
            found = self.cluster.get_node(node)
            self._nodes[node] = from_labels((found or {}).get("metadata", {}).get("labels") or {}) or Locality()
        return str(self._nodes[node])

    def localities(self) -> dict[str, str]:
        """Every pod of the target's namespaces (``namespace/name``) -> its locality (``locality``)."""
        return {f"{p['metadata'].get('namespace')}/{p['metadata']['name']}": self.locality(p)
                for namespace in self.namespaces for p in self.cluster.list_pods(namespace, None)}

    def principals(self, workload: Workload, argument: str, trust_domain: str) -> list[str]:
        """SPIFFE identities (without scheme) of the workload's running pods: what mTLS shows its callees."""
        return sorted(spiffe_principal(workload.namespace, sa, False, trust_domain)
                      for sa in self.service_accounts(workload, argument))

    def service_accounts(self, workload: Workload, argument: str) -> set[str]:
        return {_service_account(p) for p in self.running_pods(workload, argument=argument)}

    def sharing_identity(self, workload: Workload, argument: str) -> list[str]:
        """Running pods outside ``workload`` that run as one of its service accounts (so have its mTLS identity)."""
        accounts = self.service_accounts(workload, argument)
        return sorted(p["metadata"]["name"] for p in self.cluster.list_pods(workload.namespace, None)
                      if is_serving(p) and _service_account(p) in accounts and not _matches(p, workload.selector))

    def without_sidecar(self, workload: Workload, argument: str) -> list[str]:
        """Running pods of ``workload`` with no Istio sidecar (no ``istio-proxy`` container, nor a native-sidecar
        init container): ``sidecar.istio.io/inject: "false"``, an uninjected namespace, or ambient mode."""
        return [p["metadata"]["name"] for p in self.running_pods(workload, argument=argument)
                if not any(c.get("name") == "istio-proxy" for part in ("containers", "initContainers")
                           for c in (p.get("spec") or {}).get(part) or [])]

    def policies_selecting(self, workload: Workload) -> list[str]:
        """NetworkPolicies (not chaosmesh-qa's) with ingress rules that select a running pod of ``workload``."""
        pods = self.running_pods(workload)
        found = []
        for item in self.cluster.list_custom(NETWORKPOLICY, workload.namespace):
            metadata, spec = item.get("metadata") or {}, item.get("spec") or {}
            if (metadata.get("labels") or {}).get(MANAGED_BY) == MANAGER:
                continue
            if "Ingress" not in (spec.get("policyTypes") or ["Ingress"]):
                continue
            if any(selector_matches(spec.get("podSelector") or {}, p["metadata"].get("labels") or {}) for p in pods):
                found.append(str(metadata.get("name")))
        return sorted(found)

    def target_ports(self, workload: Workload) -> list[int]:
        """The container ports the Service sends to: numeric targetPorts, and named ones as the pods name them."""
        numbers = [p for p in workload.target_ports if isinstance(p, int)]
        names = {p for p in workload.target_ports if isinstance(p, str)}
        if names:
            for pod in self.running_pods(workload):
                for container in (pod.get("spec") or {}).get("containers") or []:
                    numbers += [int(p["containerPort"]) for p in container.get("ports") or []
                                if p.get("name") in names and "containerPort" in p]
        return sorted(set(numbers))

    # ------------------------------------------------------------------ what a fault needs of a workload

    def require_sidecars(self, workload: Workload, argument: str) -> None:
        """Refuse a fault that lives in the sidecar when a running pod has none (it would change nothing)."""
        bare = self.without_sidecar(workload, argument)
        if bare:
            raise FaultRejected(f"{argument}: pod(s) {', '.join(bare[:3])}{', ...' if len(bare) > 3 else ''} of "
                                f"{workload.name!r} run without an Istio sidecar (no istio-proxy container: "
                                "sidecar.istio.io/inject is false, the namespace is not injected, or it runs in "
                                "ambient mode): a fault in the sidecar would change nothing there")

    def require_no_policy_selecting(self, workload: Workload) -> None:
        """Refuse a drop partition's NetworkPolicy where another one selects the callee (they only allow)."""
        existing = self.policies_selecting(workload)
        if existing:
            raise FaultRejected(
                f"mode: 'drop' adds a NetworkPolicy, and NetworkPolicies only allow: NetworkPolicy "
                f"{', '.join(existing)} in {workload.namespace!r} already selects the pods of {workload.name!r}, so "
                "what it allows stays allowed (and a default-deny would be opened to every other pod); use "
                "mode='reject'")

    def caller_principals(self, caller: Workload, argument: str, trust_domain: str) -> list[str | None]:
        """The caller's SPIFFE ids, for faults that tell callers apart by their mTLS identity: refused when the
        caller has no sidecar (no client certificate) or shares its service account with other pods."""
        self.require_sidecars(caller, argument)
        shared = self.sharing_identity(caller, argument)
        if shared:
            raise FaultRejected(
                f"{argument}: the pods of {caller.name!r} run as service account(s) "
                f"{', '.join(sorted(self.service_accounts(caller, argument)))}, which {len(shared)} other pod(s) "
                f"use too ({', '.join(shared[:3])}{', ...' if len(shared) > 3 else ''}): a per-caller fault tells "
                "callers apart by their mTLS identity, so it would hit those callers as well; give "
                f"{caller.name!r} its own service account")
        return list(self.principals(caller, argument, trust_domain))

    def require_caller_in_xfcc(self, callee: Workload, argument: str, mesh: MeshConfig) -> None:
        """Refuse a per-caller fault where the callee's sidecars do not name the caller in XFCC (it would match
        no request, yet change their listeners and look applied)."""
        for pod in self.running_pods(callee, argument=argument):
            why = caller_in_xfcc(pod, mesh)
            if why is not None:
                raise FaultRejected(
                    f"{argument}: a per-caller fault tells callers apart by the client certificate the callee's "
                    f"sidecar puts in x-forwarded-client-cert, and the sidecars of {callee.name!r} do not ({why}): "
                    "it would fault no request; use a fault on every caller (no source), or give those pods "
                    "APPEND_FORWARD")

    def inbound_ports(self, callee: Workload) -> list[int]:
        """The ports of the callee's inbound listeners a fault patches: its Service's target ports."""
        ports = self.target_ports(callee)
        if not ports:
            raise FaultRejected(f"service: Service {callee.namespace}/{callee.name} names no port its pods serve "
                                "(spec.ports[].targetPort), so no inbound listener to fault")
        return ports

    def describe(self) -> dict[str, Any]:
        services: dict[str, Any] = {}
        pods: list[dict[str, Any]] = []
        ingress: str | None = None
        for namespace in self.namespaces:
            subsets = self._subsets(namespace)
            namespace_pods = self.cluster.list_pods(namespace, None)
            for service in self.cluster.list_services(namespace):
                name = service["metadata"]["name"]
                selector = (service.get("spec") or {}).get("selector") or {}
                if not selector or name in services:
                    continue
                mine = [p for p in namespace_pods if _matches(p, selector)]
                canonical = {canonical_service(p["metadata"].get("labels") or {}, name) for p in mine}
                services[name] = {"namespace": namespace, "selector": selector,
                                  "canonical_service": canonical.pop() if len(canonical) == 1 else name,
                                  "versions": sorted({_version(p) for p in mine}),
                                  "subsets": sorted(subsets.get(name, [])), "callers": [], "callees": []}
                pods += [describe_pod(p, name) for p in mine]
            ingress = ingress or self._ingress_service(namespace)
        return {"services": services, "pods": sorted(pods, key=lambda p: p["name"]), "ingress_service": ingress}

    def _subsets(self, namespace: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for rule in self.cluster.list_custom(DESTINATIONRULE, namespace):
            host = str((rule.get("spec") or {}).get("host", "")).split(".")[0]
            found.setdefault(host, []).extend(str(s.get("name")) for s in (rule["spec"].get("subsets") or []))
        return found

    def _ingress_service(self, namespace: str) -> str | None:
        """The service a gateway-bound VirtualService routes to first: the mesh's front door."""
        for service in self.cluster.list_custom(VIRTUALSERVICE, namespace):
            spec = service.get("spec") or {}
            if any(g != "mesh" for g in spec.get("gateways") or []):
                for route in spec.get("http") or []:
                    for destination in route.get("route") or []:
                        return str(destination["destination"]["host"]).split(".")[0]
        return None


def is_serving(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return status.get("phase") == "Running" and ready and not pod["metadata"].get("deletionTimestamp")


def describe_pod(pod: dict[str, Any], service: str) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return {"name": pod["metadata"]["name"], "namespace": pod["metadata"].get("namespace"), "service": service,
            "version": _version(pod), "state": "ready" if is_serving(pod) else
            str((pod.get("status") or {}).get("phase", "unknown")).lower(),
            "restarts": sum(int(s.get("restartCount") or 0) for s in statuses),
            "ip": (pod.get("status") or {}).get("podIP")}


def _version(pod: dict[str, Any]) -> str:
    return canonical_revision(pod["metadata"].get("labels") or {})


def _matches(pod: dict[str, Any], selector: dict[str, str]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _service_account(pod: dict[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("serviceAccountName") or "default")


def mesh_trust_domain(cluster: Cluster) -> str:
    """``meshConfig.trustDomain`` of the ``istio`` ConfigMap in ``istio-system`` (its ``mesh`` key, YAML), or
    Istio's default ``cluster.local`` when the ConfigMap, the key or the field is absent or cannot be read."""
    return mesh_config(cluster).local


def mesh_config(cluster: Cluster) -> MeshConfig:
    """The MeshConfig settings the target reads (trust domain, proxy headers) from the ``istio`` ConfigMap in
    ``istio-system``, where istiod reads them; Istio's defaults where it, or a setting, is absent or unreadable."""
    try:
        found = cluster.get(CONFIGMAP, meshconfig.NAMESPACE, meshconfig.NAME)
    except ChaosMeshQAError:
        return MeshConfig()  # a Role without read access to istio-system: chaosmesh_qa_trust_domain says it
    if found is None:
        return MeshConfig()
    problems: list[str] = []
    read = meshconfig.validate(found, "istio-system/istio", problems, [])
    return read if read is not None else MeshConfig()


def caller_in_xfcc(pod: dict[str, Any], mesh: MeshConfig) -> str | None:
    """None when ``pod``'s sidecar puts its caller's SPIFFE id in ``x-forwarded-client-cert`` (proxyHeaders
    ``APPEND_FORWARD`` or ``SANITIZE_SET`` with the URI), else where the setting that stops it comes from: the
    pod's ``proxy.istio.io/config`` annotation (a ProxyConfig, which wins) or the mesh's default."""
    forwarded, uri, where = mesh.forwarded_client_cert, mesh.xfcc_uri, "the mesh config (istio ConfigMap)"
    annotation = (pod["metadata"].get("annotations") or {}).get(PROXY_CONFIG_ANNOTATION)
    if annotation:
        try:
            own = yaml.safe_load(annotation)
        except yaml.YAMLError:
            own = None
        if isinstance(own, dict) and isinstance(own.get("proxyHeaders"), dict):
            forwarded, uri = meshconfig.proxy_headers({"defaultConfig": {"proxyHeaders": own["proxyHeaders"]}}, "",
                                                      [], [])
            where = f"pod {pod['metadata']['name']}'s {PROXY_CONFIG_ANNOTATION} annotation"
    if forwarded in meshconfig.SETS_CURRENT_CERT and uri:
        return None
    return f"proxyHeaders.forwardedClientCert {forwarded}" + ("" if uri else ", setCurrentClientCertDetails.uri "
                                                              "false") + f", from {where}"


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (``matchLabels`` and ``matchExpressions``: In, NotIn, Exists, DoesNotExist) on
    ``labels``; the empty selector selects everything."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True
