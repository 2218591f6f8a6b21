"""Istio's canonical service and revision (mesh.identity): the label order Istio reads, and its fallbacks."""

from __future__ import annotations

from chaosmesh_qa.mesh.identity import canonical_revision, canonical_service


def test_the_canonical_name_prefers_istios_label_then_the_recommended_one_then_app_then_the_workload() -> None:
    helm = {"app.kubernetes.io/name": "storefront", "app": "web"}
    assert canonical_service({"service.istio.io/canonical-name": "shop", **helm}, "shop-web") == "shop"
    assert canonical_service(helm, "shop-web") == "storefront"
    assert canonical_service({"app": "web"}, "shop-web") == "web"
    assert canonical_service({"tier": "front"}, "shop-web") == "shop-web"


def test_the_canonical_revision_prefers_the_recommended_version_label_to_version_and_defaults_to_latest() -> None:
    assert canonical_revision({"service.istio.io/canonical-revision": "r7", "version": "v1"}) == "r7"
    assert canonical_revision({"app.kubernetes.io/version": "1.4.2", "version": "v1"}) == "1.4.2"
    assert canonical_revision({"version": "v1"}) == "v1"
    assert canonical_revision({}) == "latest"
