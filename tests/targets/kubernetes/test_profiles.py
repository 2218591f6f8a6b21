"""The Kubernetes target on cluster profiles: meshes that look like real clusters (tests/profiles/).

custom-trust-domain: the default mesh on an Istio whose trust domain is prod.example.com (istiod's `istio`
ConfigMap, served by the emulation): identities, the target's per-caller match in x-forwarded-client-cert, and the
mTLS verdict's principals are in that domain (issue 18 point 3 and build item 1, "mesh settings a real cluster
has").

helm-labels: the default mesh's services as a Helm chart deploys them: pods carry only the Kubernetes recommended
labels (``app.kubernetes.io/name``, ``/instance``, ``/version``), never ``app`` or ``version``; the frontend
Service is named unlike its pods (``storefront``); DestinationRule subsets and the AuthorizationPolicy select by
those labels.  The emulation serves the pods with the manifests' labels as they are and the Services with their
own selectors (issue 18, build item 1: nothing invents ``app``), so the target must find workloads the way
Kubernetes and Istio do (point 2: by the Service's selector; versions by Istio's canonical revision; callers by
their canonical service in Istio's metrics).  Before this, the emulation labelled every pod ``app=<service>``
and the target's verdicts listed pods by ``app``: on this profile mtls-strict read no hop at all.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaosmesh_qa.targets.factory import get_target
from tests.support.kube import KubeSandbox, running
from tests.support.kuberuns import run_and_judge

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[3]
HELM = ROOT / "tests" / "profiles" / "helm-labels"
CUSTOM_TRUST_DOMAIN = ROOT / "tests" / "profiles" / "custom-trust-domain"
SHIPPED = ("pod-kill-failover", "latency-circuit-breaker", "partition-failover",
           "routing-canary", "mtls-strict", "tracing-complete", "authz-enforced")
# make test keeps one resilience and one mesh QA experiment (the one that reads the declared mesh, effective
# modes and the observed hops, every path that named pods by `app`); the slow suite runs all seven
# make test keeps helm-labels' mtls-strict (point 2 end to end: workloads, versions and callers found by the labels
# a Helm chart writes); on custom-trust-domain the identities in that domain are checked in make test by
# test_point3_identities_are_in_the_clusters_trust_domain, and a per-caller fault's data-plane match by the
# locked-down profile's per-edge abort, so its runs are all in the slow suite
IN_MAKE_TEST: dict[str, tuple[str, ...]] = {"helm-labels": ("mtls-strict",), "custom-trust-domain": ()}


def _profile(work: Path, mesh: Path) -> contextlib.AbstractContextManager[KubeSandbox]:
    """A sandbox serving the Kubernetes API emulation over the profile ``mesh``, stopped (reapers too) after."""
    return running(work / "state", "--mesh", str(mesh))


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    with _profile(tmp_path_factory.mktemp("helm"), HELM) as box:
        yield box


def test_point2_the_emulation_serves_the_manifests_labels_and_selectors_as_they_are(helm: KubeSandbox) -> None:
    pods = json.loads(helm.kubectl("get", "pods", "-o", "json").stdout)["items"]
    assert pods and not any("app" in p["metadata"]["labels"] or "version" in p["metadata"]["labels"] for p in pods)
    storefront = json.loads(helm.kubectl("get", "pods", "-l", "app.kubernetes.io/name=storefront",
                                         "-o", "json").stdout)["items"]
    assert len(storefront) == 1
    meta = storefront[0]["metadata"]
    # what Istio's injector adds (mesh.identity) and the ReplicaSet of the manifest's Deployment
    assert meta["labels"]["service.istio.io/canonical-name"] == "storefront"
    assert meta["ownerReferences"][0]["name"].startswith("shop-storefront-")
    service = json.loads(helm.kubectl("get", "service", "frontend", "-o", "json").stdout)
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "storefront", "app.kubernetes.io/instance": "shop"}


def test_point2_the_target_finds_services_versions_and_callers_as_istio_does(helm: KubeSandbox) -> None:
    target = get_target(helm.configuration())
    described = target.describe()
    assert described["services"]["frontend"]["canonical_service"] == "storefront"
    assert described["services"]["reviews"]["versions"] == ["v1", "v2"]
    model = target.declared_mesh()
    assert sorted(model.services) == ["catalog", "frontend", "inventory", "reviews"]
    assert model.services["frontend"].selector == {"app.kubernetes.io/name": "storefront",
                                                   "app.kubernetes.io/instance": "shop"}
    assert [(v.name, v.replicas) for v in model.services["reviews"].versions] == [("v1", 2), ("v2", 1)]
    assert sorted(model.subsets["reviews"]) == ["v1", "v2"]  # subsets select app.kubernetes.io/version
    assert model.mtls_mode("inventory", "v1") == "STRICT"
    # a version is its canonical revision (app.kubernetes.io/version): the v2 pod alone is chosen
    record = target.kill_pods("reviews", count=1, percent=None, version="v2", restart_after_s=2.0,
                              owner="test-profiles")
    try:
        assert record["changes"]["killed_pods"] and record["changes"]["killed_pods"][0].startswith("reviews-v2-")
        assert record["changes"]["replacement_ready"] is True
    finally:
        target.heal(None, "test-profiles")


@pytest.fixture(scope="module")
def custom_trust_domain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    with _profile(tmp_path_factory.mktemp("trust-domain"), CUSTOM_TRUST_DOMAIN) as box:
        yield box


def _cases(profile: str) -> list[object]:
    return [pytest.param(n, marks=() if n in IN_MAKE_TEST[profile] else pytest.mark.slow) for n in SHIPPED]


@pytest.mark.parametrize("name", _cases("helm-labels"))
def test_shipped_experiment_passes_on_the_helm_labelled_profile(helm: KubeSandbox, name: str,
                                                                tmp_path: Path) -> None:
    """Issue 18 acceptance: the shipped experiments, with only the target switched, pass on the Helm-labelled
    profile (mtls-strict names every hop's caller by the canonical service of its pods, mapped back to its
    Service)."""
    run_and_judge(helm, ROOT / "experiments" / f"{name}.json", "passed", tmp_path)


@pytest.mark.parametrize("name", _cases("custom-trust-domain"))
def test_shipped_experiment_passes_on_the_custom_trust_domain_profile(custom_trust_domain: KubeSandbox, name: str,
                                                                      tmp_path: Path) -> None:
    """Issue 18 acceptance: the shipped experiments pass where the mesh's trust domain is not cluster.local."""
    run_and_judge(custom_trust_domain, ROOT / "experiments" / f"{name}.json", "passed", tmp_path)


def test_point3_identities_are_in_the_clusters_trust_domain(custom_trust_domain: KubeSandbox) -> None:
    target = get_target(custom_trust_domain.configuration())
    model = target.declared_mesh()  # istiod's ConfigMap read from the API
    assert model.trust_domains.local == "prod.example.com"
    assert model.services["catalog"].spiffe_id == "spiffe://prod.example.com/ns/default/sa/catalog"
    target.inject_abort("inventory", 503, 100, "catalog", 30.0, "test-profiles")
    try:
        filters = json.loads(custom_trust_domain.kubectl("get", "envoyfilters", "-l",
                                                         "app.kubernetes.io/managed-by=chaosmesh-qa", "-o",
                                                         "json").stdout)
        matched = [text for text in _strings(filters) if "/ns/default/sa/catalog" in text]
        assert matched and all(r"spiffe://prod\.example\.com/" in text for text in matched), matched
    finally:
        target.heal(None, "test-profiles")


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_point7_bookinfo_with_its_gateway_virtualservice_resolves_from_the_api(tmp_path: Path) -> None:
    """Issue 18 point 7: bookinfo as shipped (examples/bookinfo: manifests and Istio YAML in subdirectories, the
    gateway-bound VirtualService of its Gateway).  The emulation serves every Istio object of the mesh directory,
    subdirectories included, and Istio's Gateway among them; the target reads Gateways, so the declared mesh
    resolves (it failed on the VirtualService bound to a Gateway it had not read)."""
    with _profile(tmp_path, ROOT / "examples" / "bookinfo" / "mesh") as box:
        listed = box.kubectl("get", "gateways,virtualservices,destinationrules", "-o", "name").stdout.split()
        assert "gateway.networking.istio.io/bookinfo-gateway" in listed, listed
        assert any(name.startswith("virtualservice.networking.istio.io/") for name in listed), listed
        model = get_target(box.configuration()).declared_mesh()  # no ingress service: the Gateway says it
        assert {"productpage", "details", "reviews", "ratings"} <= set(model.services)
        assert model.gateway_hosts, "the Gateway and its VirtualService were read"
        assert sorted(model.subsets["reviews"]) == ["v1", "v2", "v3"]
