"""Argo Rollouts in the sandbox: both shapes of Argo's Istio integration come up and route as the directory writes.

One sandbox for the module, started with ``chaosmesh-qa up --mesh DIR``: ``front`` (the ingress service) calls
``reviews`` and ``ratings`` on every request.  ``reviews`` is host-level splitting (a Rollout with a canary and a
stable Service, a VirtualService for the stable host sending 90 to it and 10 to the canary Service); ``ratings``
is subset-level splitting (a Rollout, one Service, a DestinationRule with stable and canary subsets, a
VirtualService 80/20 between them).  1,000 requests measure both splits within 5 points; the pods are those Argo
runs at those weights.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from tests.support.client import get_many, hops
from tests.support.corpus import write
from tests.support.sandbox import Served, serve

pytestmark = pytest.mark.processes

MESH = """apiVersion: chaosmesh-qa.io/v1alpha1
kind: Mesh
metadata: {name: rollouts}
spec:
  ingress: {service: front}
  services:
  - name: front
    versions: [{name: v1}]
    app: {calls: [{service: reviews, path: /}, {service: ratings, path: /}]}
"""


def _rollout(name: str, replicas: int, canary: str) -> str:
    return f"""apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - {{name: {name}, image: example.invalid/{name}:2, ports: [{{name: http, containerPort: 8080}}]}}
  strategy:
    canary:
{canary}      steps: [{{setWeight: 10}}, {{pause: {{}}}}]
"""


def _service(name: str, app: str) -> str:
    return f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {app}}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"""


HOST_SPLIT = _rollout("reviews", 2, """      canaryService: reviews-canary
      stableService: reviews
      trafficRouting:
        istio:
          virtualService: {name: reviews, routes: [primary]}
""") + _service("reviews", "reviews") + _service("reviews-canary", "reviews") + """---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: primary
    route:
    - {destination: {host: reviews}, weight: 90}
    - {destination: {host: reviews-canary}, weight: 10}
"""
SUBSET_SPLIT = _rollout("ratings", 1, """      trafficRouting:
        istio:
          virtualService: {name: ratings-vsvc, routes: [primary]}
          destinationRule: {name: ratings-destrule, canarySubsetName: canary, stableSubsetName: stable}
""") + _service("ratings", "ratings") + """---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: ratings-vsvc}
spec:
  hosts: [ratings]
  http:
  - name: primary
    route:
    - {destination: {host: ratings, subset: stable}, weight: 80}
    - {destination: {host: ratings, subset: canary}, weight: 20}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: ratings-destrule}
spec:
  host: ratings
  subsets:
  - {name: stable, labels: {app: ratings}}
  - {name: canary, labels: {app: ratings}}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("rollouts")
    mesh = write(root / "mesh", {"mesh.yaml": MESH, "reviews.yaml": HOST_SPLIT, "ratings.yaml": SUBSET_SPLIT})
    yield from serve(mesh, root / "state")


def test_both_rollout_shapes_come_up_with_the_pods_argo_runs_at_the_written_weights(served: Served) -> None:
    pods = Counter((p["service"], p["version"], p["labels"]["rollouts-pod-template-hash"])
                   for p in served.status()["pods"] if p["service"] != "front")
    assert pods == {("reviews", "stable", "stable"): 2, ("reviews-canary", "canary", "canary"): 1,
                    ("ratings", "stable", "stable"): 1, ("ratings", "canary", "canary"): 1}


def test_host_and_subset_splits_route_as_written(served: Served) -> None:
    results = get_many(served.url + "/", 1000)
    assert Counter(code for code, _ in results) == {200: 1000}
    called = [hop for _, tree in results for hop in hops(tree)[1:]]
    host = Counter(hop["service"] for hop in called if hop["service"].startswith("reviews"))
    subset = Counter(hop["version"] for hop in called if hop["service"] == "ratings")
    assert sum(host.values()) == sum(subset.values()) == 1000
    assert abs(host["reviews-canary"] / 10 - 10) <= 5, host  # percent of 1,000 requests
    assert abs(subset["canary"] / 10 - 20) <= 5, subset
