"""How the Kubernetes target reads workloads from API objects (chaosmesh_qa.targets.kubernetes.workloads).

The objects are what an API server returns for ordinary clusters (Helm-style labels, a sidecar-less pod, the
namespace's own NetworkPolicies); ``Objects`` serves them in place of the API server, as plain data.
"""

from __future__ import annotations

from typing import Any

from chaosmesh_qa.targets.kubernetes.objects import NETWORKPOLICY, Kind
from chaosmesh_qa.targets.kubernetes.workloads import (
    Workload,
    Workloads,
    caller_in_xfcc,
    mesh_config,
    mesh_trust_domain,
)

HELM = {"app.kubernetes.io/name": "reviews-api", "app.kubernetes.io/instance": "shop"}


def pod(name: str, labels: dict[str, str], sidecar: bool = True, account: str = "reviews") -> dict[str, Any]:
    containers = [{"name": "reviews", "ports": [{"name": "http", "containerPort": 9080}]}]
    if sidecar:
        containers.append({"name": "istio-proxy"})
    return {"metadata": {"name": name, "namespace": "shop", "labels": labels},
            "spec": {"serviceAccountName": account, "containers": containers},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


class Objects:
    """The few reads ``Workloads`` makes, answered from a list of objects (label selectors as the API server)."""

    def __init__(self, pods: list[dict[str, Any]], policies: list[dict[str, Any]] | None = None,
                 configmaps: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        self.pods, self.policies, self.configmaps = pods, policies or [], configmaps or {}

    def list_pods(self, namespace: str, selector: str | None) -> list[dict[str, Any]]:
        wanted = dict(part.split("=", 1) for part in selector.split(",")) if selector else {}
        return [p for p in self.pods if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())]

    def list_custom(self, kind: Kind, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        assert kind is NETWORKPOLICY
        return self.policies

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        return self.configmaps.get((namespace, name))


def workloads(source: Objects) -> Workloads:
    return Workloads(source, ["shop"])  # type: ignore[arg-type]


def test_point12_pods_without_a_sidecar_are_named() -> None:
    found = workloads(Objects([pod("reviews-0", HELM), pod("reviews-1", HELM, sidecar=False)]))
    assert found.without_sidecar(Workload("reviews", "shop", HELM), "service") == ["reviews-1"]


def test_point2_named_target_ports_resolve_through_the_pods_and_selectors_are_the_services() -> None:
    found = workloads(Objects([pod("reviews-0", HELM)]))
    assert found.target_ports(Workload("reviews", "shop", HELM, ("http", 8080))) == [8080, 9080]
    assert Workload("reviews", "shop", HELM).label_selector() == (
        "app.kubernetes.io/instance=shop,app.kubernetes.io/name=reviews-api")


def test_point3_a_service_account_shared_with_other_pods_is_found() -> None:
    web = {"app.kubernetes.io/name": "web"}
    found = workloads(Objects([pod("reviews-0", HELM, account="default"), pod("web-0", web, account="default"),
                               pod("web-1", web, account="web")]))
    assert found.sharing_identity(Workload("web", "shop", web), "source") == ["reviews-0"]


def test_point1_the_namespaces_own_networkpolicies_that_select_the_callee_are_found() -> None:
    policies = [
        {"metadata": {"name": "default-deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
        {"metadata": {"name": "egress-only"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}},
        {"metadata": {"name": "for-web"}, "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "web"}}}},
        {"metadata": {"name": "chaosmesh-qa-partition-1-to", "labels": {"app.kubernetes.io/managed-by":
                                                                         "chaosmesh-qa"}}, "spec": {"podSelector": {}}},
    ]
    found = workloads(Objects([pod("reviews-0", HELM)], policies))
    assert found.policies_selecting(Workload("reviews", "shop", HELM)) == ["default-deny"]


def test_point3_the_trust_domain_is_the_meshs() -> None:
    mesh = {"data": {"mesh": "trustDomain: prod.example.com\ndefaultConfig: {}\n"}}
    assert mesh_trust_domain(Objects([], configmaps={("istio-system", "istio"): mesh})) == "prod.example.com"  # type: ignore[arg-type]
    assert mesh_trust_domain(Objects([])) == "cluster.local"  # type: ignore[arg-type]


def test_point3_the_caller_is_in_xfcc_only_where_the_callee_sidecars_put_it_there() -> None:
    """Istio's sidecars build x-forwarded-client-cert as proxyHeaders says: the mesh's defaultConfig, or the pod's
    own proxy.istio.io/config (a ProxyConfig, which wins).  Only APPEND_FORWARD and SANITIZE_SET, with the URI,
    put the caller's SPIFFE id there."""
    sanitize = {"data": {"mesh": "defaultConfig:\n  proxyHeaders:\n    forwardedClientCert: SANITIZE\n"}}
    mesh = mesh_config(Objects([], configmaps={("istio-system", "istio"): sanitize}))  # type: ignore[arg-type]
    plain = pod("reviews-0", HELM)
    assert caller_in_xfcc(plain, mesh) == ("proxyHeaders.forwardedClientCert SANITIZE, from the mesh config "
                                           "(istio ConfigMap)")
    own = {**plain, "metadata": {**plain["metadata"], "annotations": {
        "proxy.istio.io/config": "proxyHeaders:\n  forwardedClientCert: SANITIZE_SET\n"}}}
    assert caller_in_xfcc(own, mesh) is None
    assert caller_in_xfcc(plain, mesh_config(Objects([]))) is None  # type: ignore[arg-type]
    no_uri = {**plain, "metadata": {**plain["metadata"], "annotations": {"proxy.istio.io/config": (
        "proxyHeaders:\n  setCurrentClientCertDetails: {uri: false}\n")}}}
    assert caller_in_xfcc(no_uri, mesh_config(Objects([]))) == (  # type: ignore[arg-type]
        "proxyHeaders.forwardedClientCert APPEND_FORWARD, setCurrentClientCertDetails.uri false, from pod "
        "reviews-0's proxy.istio.io/config annotation")
