"""A kustomize overlay comes up in the sandbox with its changes in force: ``chaosmesh-qa up --mesh <overlay>``.

The base (``tests.support.kustomize``) runs one ``reviews-v2`` pod and sends it 0 of reviews' traffic; the staging
overlay patches it to 2 replicas and the VirtualService to 50/50.  ``status --json`` shows the overlay's pods and
1,000 requests through the ingress measure its split within 5 points.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from tests.support.client import get_many, hops
from tests.support.kustomize import base_and_overlay
from tests.support.sandbox import Served, serve

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("kustomize")
    yield from serve(base_and_overlay(root / "mesh"), root / "state")


def test_the_overlays_replicas_run(served: Served) -> None:
    pods = Counter((p["service"], p["version"]) for p in served.status()["pods"])
    assert pods == {("front", "latest"): 1, ("reviews", "v1"): 1, ("reviews", "v2"): 2}


def test_the_overlays_weights_route(served: Served) -> None:
    results = get_many(served.url + "/", 1000)
    assert Counter(code for code, _ in results) == {200: 1000}
    versions = Counter(hop["version"] for _, tree in results for hop in hops(tree) if hop["service"] == "reviews")
    assert abs(versions["v2"] / 10 - 50) <= 5, versions  # percent of 1,000 requests; the base sends v2 none
