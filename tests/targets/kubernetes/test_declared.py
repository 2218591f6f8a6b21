"""The declared mesh rebuilt from API objects (targets.kubernetes.declared): manifests as they are, no `app`."""

from __future__ import annotations

from typing import Any

from chaosmesh_qa.targets.kubernetes.declared import workload_documents

HELM = {"app.kubernetes.io/name": "storefront", "app.kubernetes.io/instance": "shop"}


def service(name: str, selector: dict[str, str], headless: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop"},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                     **({"clusterIP": "None"} if headless else {})}}


def pod(name: str, labels: dict[str, str], owner: tuple[str, str] | None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "shop", "labels": labels}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = "2026-12-06T00:00:00Z"
    return {"metadata": meta, "spec": {"serviceAccountName": "web", "containers": [
        {"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}, {"name": "istio-proxy"}]}}


def test_point2_a_service_named_unlike_its_pods_declares_their_deployment_with_their_own_labels() -> None:
    labels = {**HELM, "app.kubernetes.io/version": "1.4.2", "pod-template-hash": "5d9f"}
    pods = [pod("shop-storefront-5d9f-a", labels, ("ReplicaSet", "shop-storefront-5d9f")),
            pod("shop-storefront-5d9f-b", labels, ("ReplicaSet", "shop-storefront-5d9f")),
            pod("shop-storefront-5d9f-c", labels, ("ReplicaSet", "shop-storefront-5d9f"), deleting=True)]
    svc, deployment = workload_documents([service("frontend", HELM)], pods)
    assert svc["metadata"]["name"] == "frontend" and svc["spec"]["selector"] == HELM
    assert deployment["metadata"]["name"] == "shop-storefront"  # the ReplicaSet's name less the template hash
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"] == {**HELM, "app.kubernetes.io/version": "1.4.2"}  # no hash, no app
    assert deployment["spec"]["replicas"] == 2  # the pod being deleted is not a replica
    assert template["spec"]["containers"] == [{"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}]


def test_point2_a_headless_twin_selecting_the_same_pods_is_left_out_and_statefulset_pods_keep_their_owner() -> None:
    pods = [pod("db-0", {"app.kubernetes.io/name": "db", "statefulset.kubernetes.io/pod-name": "db-0"},
                ("StatefulSet", "db"))]
    docs = workload_documents([service("db-headless", {"app.kubernetes.io/name": "db"}, headless=True),
                               service("db", {"app.kubernetes.io/name": "db"})], pods)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [("Service", "db"), ("Deployment", "db")]
    assert docs[1]["spec"]["template"]["metadata"]["labels"] == {"app.kubernetes.io/name": "db"}


def test_issue21_a_per_version_service_an_httproute_names_is_kept_without_its_pods() -> None:
    """Bookinfo's per-version Services (GAMMA backends) select pods the reviews Service declares: kept as Services
    (the mesh model reaches them as reviews' subsets), the pods declared once, under reviews; a Service no
    HTTPRoute names that selects only declared pods is still left out."""
    pods = [pod(f"reviews-{v}-5d9f-a", {"app": "reviews", "version": v, "pod-template-hash": "5d9f"},
                ("ReplicaSet", f"reviews-{v}-5d9f"))
            for v in ("v1", "v2")]
    services = [service("a-reviews-v1", {"app": "reviews", "version": "v1"}), service("reviews", {"app": "reviews"}),
                service("reviews-all", {"app": "reviews"})]
    docs = workload_documents(services, pods, {"a-reviews-v1"})
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Service", "reviews"), ("Deployment", "reviews-v1"), ("Deployment", "reviews-v2"), ("Service", "a-reviews-v1")]
