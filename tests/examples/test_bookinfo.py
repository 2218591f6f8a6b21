"""Bookinfo (examples/bookinfo) reproduces the behaviour of Istio's traffic-management tasks, measured.

One sandbox for the module, started from the example's Kubernetes manifests, overlay and Gateway.
The sandbox cannot swap VirtualServices while it runs, so the tasks' successive routing steps
are all present at once, each selected by a request header that productpage and reviews
forward (``end-user``, as bookinfo does, and the test's own ``x-shift``/``x-fault``):

* no header: all traffic to reviews v1 (the task's "route all to v1");
* ``end-user: jason``: reviews v2 (user-based routing), and an HTTP 500 abort on ratings for
  jason only;
* ``x-shift: 50`` / ``x-shift: 80``: the 50/50 and 80/20 shifts between reviews v1 and v3,
  measured within ±5 percentage points over 1,000 requests each;
* ``end-user: jason`` + ``x-fault: delay``: the delay on ratings for jason, scaled from the
  task's 7 s to 700 ms to keep the test short;
* a mesh-wide PeerAuthentication STRICT: every sidecar refuses plaintext, while all of the
  above (gateway to productpage included) runs over mTLS.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaosmesh_qa.targets.local.verify import plaintext_refused
from tests.support.sandbox import Served, serve

pytestmark = pytest.mark.processes

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bookinfo" / "mesh"
REQUESTS = 1000
DELAY_S = 0.7
REVIEWS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{headers: {x-shift: {exact: "50"}}}]
    route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v3}, weight: 50}
  - match: [{headers: {x-shift: {exact: "80"}}}]
    route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v3}, weight: 20}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{headers: {end-user: {exact: jason}, x-fault: {exact: delay}}}]
    fault: {delay: {fixedDelay: 700ms, percentage: {value: 100}}}
    route: [{destination: {host: ratings, subset: v1}}]
  - match: [{headers: {end-user: {exact: jason}}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 100}}}
    route: [{destination: {host: ratings, subset: v1}}]
  - route: [{destination: {host: ratings, subset: v1}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("bookinfo")
    mesh = work / "mesh"
    shutil.copytree(EXAMPLE, mesh)
    overlay = mesh / "overlay.yaml"
    text = overlay.read_text()
    assert text.count("propagateHeaders: [end-user]") == 4
    overlay.write_text(text.replace("propagateHeaders: [end-user]", "propagateHeaders: [end-user, x-shift, x-fault]"))
    routes = mesh / "istio" / "virtual-service-all-v1.yaml"
    kept = [doc for doc in routes.read_text().split("---\n")
            if "name: reviews}" not in doc and "name: ratings}" not in doc]
    routes.write_text("---\n".join([*kept, REVIEWS]))
    yield from serve(mesh, work / "state")


def _pages(box: Served, count: int, headers: dict[str, str] | None = None) -> list[tuple[int, dict[str, Any]]]:
    """``count`` requests for /productpage, 8 at a time; (status, call tree) each."""
    with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=8)) as client:
        def one(_: int) -> tuple[int, dict[str, Any]]:
            response = client.get(box.url + "/productpage", headers=headers or {})
            return response.status_code, response.json()
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(one, range(count)))


def _reviews(tree: dict[str, Any]) -> dict[str, Any]:
    return next(u for u in tree["upstreams"] if u["service"] == "reviews")


def test_all_traffic_to_v1_by_default(box: Served) -> None:
    pages = _pages(box, 100)
    assert Counter((status, _reviews(tree)["version"]) for status, tree in pages) == Counter({(200, "v1"): 100})
    assert all(_reviews(tree)["upstreams"] == [] for _, tree in pages)  # v1 shows no stars: no ratings call


def test_jason_goes_to_v2_and_gets_the_ratings_abort(box: Served) -> None:
    pages = _pages(box, 100, {"end-user": "jason"})
    assert {_reviews(tree)["version"] for _, tree in pages} == {"v2"}
    ratings = Counter(_reviews(tree)["upstreams"][0]["status"] for _, tree in pages)
    assert ratings == Counter({500: 100}) and {status for status, _ in pages} == {502}


def test_the_abort_is_for_jason_only(box: Served) -> None:
    pages = _pages(box, 200, {"end-user": "someone-else", "x-shift": "50"})
    v3 = [tree for _, tree in pages if _reviews(tree)["version"] == "v3"]
    assert len(v3) > 50 and {_reviews(t)["upstreams"][0]["status"] for t in v3} == {200}
    assert {status for status, _ in pages} == {200}


@pytest.mark.parametrize("shift,v1_share", [("50", 0.5), ("80", 0.8)])
def test_weighted_shift_within_5_points(box: Served, shift: str, v1_share: float) -> None:
    pages = _pages(box, REQUESTS, {"x-shift": shift})
    versions = Counter(_reviews(tree)["version"] for status, tree in pages if status == 200)
    assert sum(versions.values()) == REQUESTS and set(versions) <= {"v1", "v3"}
    assert abs(versions["v1"] / REQUESTS - v1_share) <= 0.05, versions


def test_delay_for_jason_only_scaled(box: Served) -> None:
    with httpx.Client(timeout=10) as client:
        def elapsed(headers: dict[str, str]) -> float:
            start = time.monotonic()
            response = client.get(box.url + "/productpage", headers=headers)
            assert response.status_code == 200
            return time.monotonic() - start
        delayed = [elapsed({"end-user": "jason", "x-fault": "delay"}) for _ in range(3)]
        others = [elapsed({"x-shift": "50", "x-fault": "delay"}) for _ in range(6)]
    assert min(delayed) >= DELAY_S and max(delayed) < DELAY_S + 2.0
    assert max(others) < DELAY_S  # the same header without end-user: jason is not delayed


def test_strict_mtls_refuses_plaintext(box: Served) -> None:
    status = box.status()
    for service in ("productpage", "details", "reviews", "ratings"):
        records = plaintext_refused(status, service)
        assert records and all(r["refused"] for r in records), records
