"""Argo Rollouts read as workloads, in the state the mesh directory writes (``chaosmesh_qa.mesh.rollouts``).

The shapes are those of Argo Rollouts' Istio integration: host-level splitting (a canary and a stable Service,
a VirtualService between them), subset-level splitting (one Service, a DestinationRule's canary and stable
subsets), ``workloadRef`` to a Deployment, blue-green; each is loaded and the model checked: the pods Argo runs
at the directory's weights, the selectors and subsets as its controller sets them, the routes as written.  Bad
input is one line naming the Rollout's field.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaosmesh_qa.mesh.loader import LoadedMesh
from tests.support.corpus import Case, judge

HASH = "rollouts-pod-template-hash"
MESH = """apiVersion: chaosmesh-qa.io/v1alpha1
kind: Mesh
metadata: {name: shop}
spec:
  ingress: {service: front}
  services:
  - name: front
    app: {calls: [{service: reviews, path: /}]}
"""
FRONT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: front}
spec:
  selector: {matchLabels: {app: front}}
  template:
    metadata: {labels: {app: front}}
    spec: {containers: [{name: front, image: front:1}]}
---
apiVersion: v1
kind: Service
metadata: {name: front}
spec:
  selector: {app: front}
  ports: [{name: http, port: 8080}]
"""


def rollout(strategy: str, replicas: int = 4, head: str = "", body: str | None = None) -> str:
    template = body if body is not None else """  selector:
    matchLabels: {app: reviews}
  template:
    metadata:
      labels: {app: reviews, version: v2}
    spec:
      containers:
      - name: reviews
        image: reviews:2
        ports: [{name: http, containerPort: 9080}]
"""
    return f"""apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: reviews}}
spec:
  replicas: {replicas}
{head}{template}  strategy:
{strategy}"""


def svc(name: str, selector: str = "{app: reviews}") -> str:
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {selector}
  ports: [{{name: http, port: 9080, targetPort: http}}]
"""


HOST_STRATEGY = """    canary:
      canaryService: reviews-canary
      stableService: reviews
      trafficRouting:
        istio:
          virtualService: {name: reviews, routes: [primary]}
      steps: [{setWeight: 10}, {pause: {}}]
"""


def host_vs(stable: int, canary: int, name: str = "primary") -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - name: {name}
    route:
    - {{destination: {{host: reviews}}, weight: {stable}}}
    - {{destination: {{host: reviews-canary.default.svc.cluster.local}}, weight: {canary}}}
"""


SUBSET_STRATEGY = """    canary:
      trafficRouting:
        istio:
          virtualService: {name: reviews}
          destinationRule: {name: reviews, canarySubsetName: canary, stableSubsetName: stable}
      steps: [{setWeight: 20}, {pause: {}}]
"""
SUBSET_DR = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: stable, labels: {app: reviews}}
  - {name: canary, labels: {app: reviews}}
"""


def subset_vs(stable: int, canary: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route:
    - {{destination: {{host: reviews, subset: stable}}, weight: {stable}}}
    - {{destination: {{host: reviews, subset: canary}}, weight: {canary}}}
"""


def host_split(files: dict[str, str] | None = None) -> dict[str, str]:
    return {"mesh.yaml": MESH, "front.yaml": FRONT,
            "reviews.yaml": "---\n".join([rollout(HOST_STRATEGY), svc("reviews"), svc("reviews-canary")]),
            "istio.yaml": host_vs(90, 10), **(files or {})}


def subset_split(stable: int, canary: int, replicas: int = 5) -> dict[str, str]:
    return {"mesh.yaml": MESH, "front.yaml": FRONT,
            "reviews.yaml": rollout(SUBSET_STRATEGY, replicas) + "---\n" + svc("reviews"),
            "istio.yaml": SUBSET_DR + "---\n" + subset_vs(stable, canary)}


def pods(loaded: LoadedMesh, service: str) -> list[tuple[str, int, str | None]]:
    return [(v.name, v.replicas, v.labels.get(HASH)) for v in loaded.model.services[service].versions]


def host_split_runs_stable_and_canary_pods_under_their_services(loaded: LoadedMesh) -> None:
    model = loaded.model
    assert pods(loaded, "reviews") == [("stable", 4, "stable")]
    assert pods(loaded, "reviews-canary") == [("canary", 1, "canary")]  # ceil(4 x 10 / 100), as Argo scales it
    assert model.services["reviews"].selector == {"app": "reviews", HASH: "stable"}
    assert model.services["reviews-canary"].selector == {"app": "reviews", HASH: "canary"}
    canary = model.services["reviews-canary"].version("canary")
    assert (canary.workload, canary.workload_kind) == ("reviews", "Rollout")
    assert canary.labels == {"app": "reviews", "version": "v2", HASH: "canary"}
    assert [(d.service, d.weight) for d in model.routes_for("reviews")[0].destinations] == [
        ("reviews", 90), ("reviews-canary", 10)]


def subset_split_runs_two_pod_sets_under_one_service(loaded: LoadedMesh) -> None:
    model = loaded.model
    assert pods(loaded, "reviews") == [("stable", 5, "stable"), ("canary", 1, "canary")]
    assert model.services["reviews"].selector == {"app": "reviews"}  # Argo leaves this Service alone
    subsets = model.subsets["reviews"]
    assert subsets["stable"].labels == {"app": "reviews", HASH: "stable"}
    assert subsets["canary"].labels == {"app": "reviews", HASH: "canary"}
    assert [(d.subset, d.weight) for d in model.routes_for("reviews")[0].destinations] == [("stable", 80),
                                                                                          ("canary", 20)]


def subset_split_at_rest_has_no_canary_pods(loaded: LoadedMesh) -> None:
    assert pods(loaded, "reviews") == [("v2", 5, "stable")]  # one ReplicaSet: its version is the template's
    subsets = loaded.model.subsets["reviews"]
    assert subsets["canary"].labels == subsets["stable"].labels == {"app": "reviews", HASH: "stable"}


def dynamic_stable_scale_shrinks_the_stable_pods(loaded: LoadedMesh) -> None:
    assert pods(loaded, "reviews") == [("stable", 3, "stable"), ("canary", 2, "canary")]  # ceil(2.8), ceil(1.2)


def canary_service_at_weight_zero_gets_one_pod(loaded: LoadedMesh) -> None:
    assert pods(loaded, "reviews-canary") == [("canary", 1, "canary")]
    assert pods(loaded, "reviews") == [("stable", 4, "stable")]


def overlay_slows_the_canary(loaded: LoadedMesh) -> None:
    services = loaded.model.services
    assert services["reviews-canary"].version("canary").behaviour.latency_ms == 300
    assert services["reviews"].version("stable").behaviour.latency_ms == 0


def workload_ref_takes_the_deployments_template(loaded: LoadedMesh) -> None:
    assert pods(loaded, "reviews") == [("stable", 4, "stable")]
    assert pods(loaded, "reviews-canary") == [("canary", 1, "canary")]
    assert loaded.model.services["reviews"].version("stable").workload == "reviews"


def blue_green_runs_active_and_preview_pods(loaded: LoadedMesh) -> None:
    assert pods(loaded, "reviews") == [("active", 4, "active")]
    assert pods(loaded, "reviews-preview") == [("preview", 2, "preview")]


def plain_rollout_is_a_deployment(loaded: LoadedMesh) -> None:
    assert pods(loaded, "reviews") == [("v2", 4, "stable")]
    assert loaded.model.services["reviews"].selector == {"app": "reviews"}


REF_BODY = """  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: reviews-template%s}
"""
TEMPLATE_DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-template}
spec:
  replicas: %d
  selector: {matchLabels: {app: reviews}}
  template:
    metadata: {labels: {app: reviews, version: v2}}
    spec: {containers: [{name: reviews, image: reviews:2, ports: [{name: http, containerPort: 9080}]}]}
"""
BLUE_GREEN = """    blueGreen:
      activeService: reviews
      previewService: reviews-preview
      previewReplicaCount: 2
      autoPromotionEnabled: false
"""
ANALYSIS = """apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  metrics: [{name: success-rate, provider: {prometheus: {query: up}}}]
"""

CASES = [
    Case("host-split-as-argos-istio-guide", host_split(),
         check=host_split_runs_stable_and_canary_pods_under_their_services),
    Case("subset-split-mid-rollout", subset_split(80, 20), check=subset_split_runs_two_pod_sets_under_one_service),
    Case("subset-split-at-rest", subset_split(100, 0), check=subset_split_at_rest_has_no_canary_pods),
    Case("dynamic-stable-scale",
         {**subset_split(70, 30, replicas=4), "reviews.yaml": rollout(SUBSET_STRATEGY.replace(
             "      steps:", "      dynamicStableScale: true\n      steps:"), 4) + "---\n" + svc("reviews")},
         check=dynamic_stable_scale_shrinks_the_stable_pods),
    Case("canary-service-at-weight-zero", host_split({"istio.yaml": host_vs(100, 0)}),
         check=canary_service_at_weight_zero_gets_one_pod),
    Case("overlay-gives-the-canary-its-behaviour",
         host_split({"mesh.yaml": MESH + "  - name: reviews-canary\n    versions:\n    - name: canary\n"
                                         "      app: {latencyMs: 300}\n"}), check=overlay_slows_the_canary),
    Case("workload-ref-to-a-scaled-down-deployment",
         host_split({"reviews.yaml": "---\n".join([
             rollout(HOST_STRATEGY, body=REF_BODY % ", scaleDown: onsuccess"), TEMPLATE_DEPLOYMENT % 0,
             svc("reviews"), svc("reviews-canary")])}), check=workload_ref_takes_the_deployments_template),
    Case("workload-ref-deployment-still-running",
         host_split({"reviews.yaml": "---\n".join([
             rollout(HOST_STRATEGY, body=REF_BODY % ""), TEMPLATE_DEPLOYMENT % 3, svc("reviews"),
             svc("reviews-canary")])}),
         warnings=("Deployment/reviews-template: spec.replicas: 3 pods of its own would keep running next to "
                   "Rollout/reviews's (workloadRef scaleDown: never); the sandbox runs only the Rollout's",),
         check=workload_ref_takes_the_deployments_template),
    Case("blue-green", {"mesh.yaml": MESH, "front.yaml": FRONT, "reviews.yaml": "---\n".join([
        rollout(BLUE_GREEN), svc("reviews"), svc("reviews-preview")])}, check=blue_green_runs_active_and_preview_pods),
    Case("plain-rollout-and-analysis-template",
         {"mesh.yaml": MESH, "front.yaml": FRONT, "analysis.yaml": ANALYSIS,
          "reviews.yaml": rollout("    canary:\n      steps: [{setWeight: 50}]\n") + "---\n" + svc("reviews")},
         notes=("ignored, they do not shape the mesh: AnalysisTemplate",), check=plain_rollout_is_a_deployment),
    Case("experiment-warned",
         {**subset_split(100, 0), "experiment.yaml": "apiVersion: argoproj.io/v1alpha1\nkind: Experiment\n"
          "metadata: {name: trial}\nspec: {templates: []}\n"},
         warnings=("experiment.yaml: Experiment/trial: kind: Experiment is not run",)),
    # refused, one line naming the Rollout's field
    Case("wrong-api-version", host_split({"reviews.yaml": rollout(HOST_STRATEGY).replace(
        "argoproj.io/v1alpha1", "apps/v1")}),
         error=("reviews.yaml: Rollout/reviews: apiVersion: 'apps/v1' is not a Rollout API version",)),
    Case("template-and-workload-ref", host_split({"reviews.yaml": rollout(HOST_STRATEGY, head=REF_BODY % "")}),
         error=("Rollout/reviews: spec: template: must be empty with workloadRef",)),
    Case("no-strategy", host_split({"reviews.yaml": rollout("    {}\n")}),
         error=("Rollout/reviews: spec.strategy: exactly one of canary and blueGreen",)),
    Case("selector-not-matching-template", host_split({"reviews.yaml": "---\n".join([rollout(
        HOST_STRATEGY).replace("matchLabels: {app: reviews}", "matchLabels: {app: ratings}"), svc("reviews"),
        svc("reviews-canary")])}), error=("Rollout/reviews: spec.selector.matchLabels: does not match",)),
    Case("workload-ref-missing", host_split({"reviews.yaml": "---\n".join([
        rollout(HOST_STRATEGY, body=REF_BODY % ""), svc("reviews"), svc("reviews-canary")])}),
         error=("Rollout/reviews: spec.workloadRef.name: no Deployment 'reviews-template' in namespace 'default'",)),
    Case("virtual-service-missing", host_split({"istio.yaml": host_vs(90, 10).replace(
        "name: reviews}", "name: reviews-vs}")}),
         error=("Rollout/reviews: spec.strategy.canary.trafficRouting.istio.virtualService.name: no VirtualService "
                "'reviews'",)),
    Case("route-name-missing", host_split({"istio.yaml": host_vs(90, 10, name="main")}),
         error=("Rollout/reviews: spec.strategy.canary.trafficRouting.istio.virtualService.routes:",
                "has no HTTP route named 'primary'")),
    Case("route-without-canary", host_split({"istio.yaml": host_vs(90, 10).replace("reviews-canary.", "ratings.")}),
         error=("virtualService.routes: route 'primary' of", "no destination for the canary Service "
                "'reviews-canary'")),
    Case("canary-service-missing", host_split({"reviews.yaml": rollout(HOST_STRATEGY) + "---\n" + svc("reviews")}),
         error=("Rollout/reviews: spec.strategy.canary.canaryService: no Service 'reviews-canary'",)),
    Case("canary-service-selecting-other-pods", host_split({"reviews.yaml": "---\n".join([
        rollout(HOST_STRATEGY), svc("reviews"), svc("reviews-canary", "{app: ratings}")])}),
         error=("spec.strategy.canary.canaryService:", "Service/reviews-canary: spec.selector: 'app' does not match "
                "the Rollout's pod labels")),
    Case("one-service-for-both", host_split({"reviews.yaml": "---\n".join([
        rollout(HOST_STRATEGY.replace("canaryService: reviews-canary", "canaryService: reviews")),
        svc("reviews")])}), error=("spec.strategy.canary.stableService: the same Service as canaryService",)),
    Case("istio-routing-without-services", host_split({"reviews.yaml": "---\n".join([
        rollout(HOST_STRATEGY.replace("      canaryService: reviews-canary\n", "")), svc("reviews"),
        svc("reviews-canary")])}),
         error=("Rollout/reviews: spec.strategy.canary: canaryService and stableService are required",)),
    Case("subset-missing", {**subset_split(80, 20), "istio.yaml": SUBSET_DR.replace("name: canary,", "name: beta,")
                            + "---\n" + subset_vs(80, 20)},
         error=("destinationRule.canarySubsetName:", "DestinationRule/reviews has no subset 'canary'")),
    Case("a-third-service-selecting-the-rollout", host_split({"reviews.yaml": "---\n".join([
        rollout(HOST_STRATEGY), svc("reviews"), svc("reviews-canary"), svc("reviews-all")])}),
         error=("Service/reviews-all: spec.selector: selects Rollout/reviews, which", "selects too")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rollout_corpus(case: Case, tmp_path: Path) -> None:
    judge(case, tmp_path / "mesh")
