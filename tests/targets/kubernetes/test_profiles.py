"""The Kubernetes target on cluster profiles: meshes that look like real clusters (tests/profiles/).

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

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaosmesh_qa.targets.factory import get_target
from chaosmesh_qa.targets.kubernetes.reaper import stop_local_reapers
from tests.support.kube import KubeSandbox, start
from tests.support.kuberuns import run_and_judge

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[3]
HELM = ROOT / "tests" / "profiles" / "helm-labels"
SHIPPED = ("pod-kill-failover", "latency-circuit-breaker", "partition-failover",
           "routing-canary", "mtls-strict", "tracing-complete")
# make test keeps one resilience and one mesh QA experiment (the one that reads the declared mesh, effective
# modes and the observed hops, every path that named pods by `app`); the slow suite runs all six
IN_MAKE_TEST = ("pod-kill-failover", "mtls-strict")


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    box = start(tmp_path_factory.mktemp("helm") / "state", "--mesh", str(HELM))
    try:
        yield box
    finally:
        stop_local_reapers()
        box.down()


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


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in IN_MAKE_TEST else pytest.mark.slow)
                                  for n in SHIPPED])
def test_shipped_experiment_passes_on_the_helm_labelled_profile(helm: KubeSandbox, name: str,
                                                                tmp_path: Path) -> None:
    """Issue 18 acceptance: the shipped experiments, with only the target switched, pass on the Helm-labelled
    profile (mtls-strict names every hop's caller by the canonical service of its pods, mapped back to its
    Service)."""
    run_and_judge(helm, ROOT / "experiments" / f"{name}.json", "passed", tmp_path)
