"""Workloads found the way Istio finds them: a Service's selector, the ``app`` and ``version`` pod labels.

``KubernetesTarget`` asks this module which namespace a service lives in, which of its pods run, which
identities (SPIFFE principals of the pods' service accounts) a caller has, and for ``describe()``.
Bad names are one line each: a namespace that does not exist, a service that does not exist, a service
with no running pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chaosmesh_qa.errors import FaultRejected, InvalidArgument
from chaosmesh_qa.targets.kubernetes.cluster import Cluster
from chaosmesh_qa.targets.kubernetes.objects import Kind, spiffe_principal
from chaosmesh_qa.targets.policy import select_pods

DESTINATIONRULE = Kind("DestinationRule", "networking.istio.io", "v1", "destinationrules")
VIRTUALSERVICE = Kind("VirtualService", "networking.istio.io", "v1", "virtualservices")


@dataclass(frozen=True)
class Workload:
    name: str
    namespace: str
    selector: dict[str, str]  # the Service's spec.selector

    @property
    def app(self) -> str:
        return self.selector.get("app", self.name)

    def label_selector(self, version: str | None = None) -> str:
        labels = {**self.selector, **({"version": version} if version else {})}
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class Workloads:
    def __init__(self, cluster: Cluster, namespaces: list[str]) -> None:
        self.cluster = cluster
        self.namespaces = namespaces
        self._found: dict[str, Workload] = {}

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
            self._found[name] = Workload(name, namespace, dict(selector))
            return self._found[name]
        for namespace in self.namespaces:
            if not self.cluster.namespace_exists(namespace):
                raise InvalidArgument(f"configuration.chaosmesh_qa_namespace: namespace {namespace!r} does not exist")
        raise FaultRejected(f"{argument}: no Service {name!r} in namespace(s) {', '.join(self.namespaces)}")

    def running_pods(self, workload: Workload, version: str | None = None,
                     argument: str = "service") -> list[dict[str, Any]]:
        """Running, ready, not-terminating pods of ``workload``, by name; none is an error naming it."""
        pods = sorted((p for p in self.cluster.list_pods(workload.namespace, workload.label_selector(version))
                       if is_serving(p)), key=lambda p: str(p["metadata"]["name"]))
        if not pods:
            what = f"{workload.name!r}" + (f" version {version!r}" if version else "")
            raise FaultRejected(f"{argument}: {what} has no running pod in namespace {workload.namespace!r}")
        return pods

    def pick(self, workload: Workload, count: int | None, percent: float | None,
             version: str | None, argument: str = "service") -> list[dict[str, Any]]:
        """The running pods ``count``/``percent`` choose (``targets.policy.select_pods``)."""
        return select_pods(self.running_pods(workload, version, argument), count, percent, workload.name, version)

    def principals(self, workload: Workload, argument: str) -> list[str]:
        """SPIFFE identities (without scheme) of the workload's running pods: what mTLS shows its callees."""
        accounts = {str((p.get("spec") or {}).get("serviceAccountName") or "default")
                    for p in self.running_pods(workload, argument=argument)}
        return sorted(spiffe_principal(workload.namespace, sa, with_scheme=False) for sa in accounts)

    def describe(self) -> dict[str, Any]:
        services: dict[str, Any] = {}
        pods: list[dict[str, Any]] = []
        ingress: str | None = None
        for namespace in self.namespaces:
            subsets = self._subsets(namespace)
            namespace_pods = self.cluster.list_pods(namespace, "app")
            for service in self.cluster.list_services(namespace):
                name = service["metadata"]["name"]
                selector = (service.get("spec") or {}).get("selector") or {}
                if not selector or name in services:
                    continue
                mine = [p for p in namespace_pods if _matches(p, selector)]
                services[name] = {"namespace": namespace, "selector": selector,
                                  "versions": sorted({_label(p, "version") for p in mine} - {""}),
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
            "version": _label(pod, "version"), "state": "ready" if is_serving(pod) else
            str((pod.get("status") or {}).get("phase", "unknown")).lower(),
            "restarts": sum(int(s.get("restartCount") or 0) for s in statuses),
            "ip": (pod.get("status") or {}).get("podIP")}


def _label(pod: dict[str, Any], key: str) -> str:
    return str((pod["metadata"].get("labels") or {}).get(key, ""))


def _matches(pod: dict[str, Any], selector: dict[str, str]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())
